//! A small HTTPS/1.1 client for the fleet tests and benchmarks: one TLS
//! connection (rustls), kept alive across requests, with or without a
//! host's client certificate, trusting only the lab CA. It also sends raw
//! bytes, slowly if asked, for the hostile-client tests; curl cannot hold
//! a thousand connections or trickle headers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

/// The name the test server's certificate carries.
const SERVER_NAME: &str = "localhost";

/// TLS settings for connections: the CA to trust and, for the agent API,
/// the client certificate to present.
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
}

impl Tls {
    /// Trusts the CA in `ca_pem`; presents the first certificate and the
    /// key of `bundle` (a host bundle from `hosthog-server host add`).
    pub fn new(ca_pem: &Path, bundle: Option<&Path>) -> Tls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_pem).expect("read the CA") {
            roots.add(cert.expect("a CA certificate")).expect("add CA");
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots);
        let config = match bundle {
            None => builder.with_no_client_auth(),
            Some(bundle) => {
                let cert = CertificateDer::pem_file_iter(bundle)
                    .expect("read the bundle")
                    .next()
                    .expect("a certificate in the bundle")
                    .expect("a valid certificate");
                let key = PrivateKeyDer::from_pem_file(bundle).expect("a key in the bundle");
                builder
                    .with_client_auth_cert(vec![cert], key)
                    .expect("a usable client certificate")
            }
        };
        Tls {
            config: Arc::new(config),
        }
    }

    /// A new connection to 127.0.0.1:`port` (the handshake completes
    /// before this returns).
    ///
    /// # Errors
    /// The connection or the handshake fails.
    pub fn connect(&self, port: u16) -> std::io::Result<Connection> {
        let tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_secs(120)))?;
        let name = ServerName::try_from(SERVER_NAME).expect("a server name");
        let tls = rustls::ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(std::io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(tls, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Connection {
            stream,
            buffer: Vec::new(),
        })
    }
}

/// An answer: status, headers (names lowercase) and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One TLS connection to the server.
pub struct Connection {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buffer: Vec<u8>,
}

impl Connection {
    /// Sends one request and reads its answer. `token` adds a bearer
    /// token; `body` is sent as JSON.
    ///
    /// # Errors
    /// The connection fails or the answer is not HTTP.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\n");
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        self.send_raw(&bytes)?;
        self.read_response()
    }

    /// Sends `bytes` as they are.
    ///
    /// # Errors
    /// The connection fails.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Sets how long a read may block.
    ///
    /// # Errors
    /// The socket refuses.
    pub fn set_read_timeout(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.stream.sock.set_read_timeout(Some(timeout))
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = match self.stream.read(&mut chunk) {
            Ok(n) => n,
            // The server closed without close_notify: the same as EOF here.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e),
        };
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Whether the server has closed the connection (reads EOF).
    ///
    /// # Errors
    /// The connection fails otherwise.
    pub fn closed_by_server(&mut self) -> std::io::Result<bool> {
        Ok(self.fill()? == 0)
    }

    /// Reads one answer.
    ///
    /// # Errors
    /// The connection fails or closes first, or the answer is not HTTP.
    pub fn read_response(&mut self) -> std::io::Result<Response> {
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let end = loop {
            if let Some(i) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if self.fill()? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection before answering",
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
        self.buffer.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let body = if let Some(length) = find("content-length") {
            let length: usize = length.parse().map_err(|_| bad("content-length"))?;
            while self.buffer.len() < length {
                if self.fill()? == 0 {
                    return Err(bad("the body was cut short"));
                }
            }
            self.buffer.drain(..length).collect()
        } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    if self.fill()? == 0 {
                        return Err(bad("a chunk was cut short"));
                    }
                };
                let size_text = String::from_utf8_lossy(&self.buffer[..line_end]).into_owned();
                let size =
                    usize::from_str_radix(size_text.trim(), 16).map_err(|_| bad("a chunk size"))?;
                self.buffer.drain(..line_end + 2);
                while self.buffer.len() < size + 2 {
                    if self.fill()? == 0 {
                        return Err(bad("a chunk was cut short"));
                    }
                }
                body.extend(self.buffer.drain(..size));
                self.buffer.drain(..2);
                if size == 0 {
                    break body;
                }
            }
        } else {
            while self.fill()? > 0 {}
            std::mem::take(&mut self.buffer)
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}
