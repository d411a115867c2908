//! The lab's certificate authority, host bundles, and the server's TLS.
//!
//! `hosthog-server ca init` makes a CA and a server certificate signed by
//! it in one directory (root-only). `hosthog-server host add NAME` issues a
//! client certificate for the host NAME and writes a bundle, one file the
//! admin copies to that host: its certificate and key, and the CA that
//! vouches for the server. The server asks every client for a certificate
//! but lets people and scripts in without one (they bring a bearer token);
//! the agent API accepts only a host certificate whose SHA-256 is the one
//! the calendar holds for that host, so issuing a new bundle or revoking a
//! host makes the old certificate worthless at once.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Files of the CA directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";

/// How long issued certificates are valid, in days.
const VALID_DAYS: i64 = 3650;

/// Why a certificate could not be made or read.
#[derive(Debug)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn err(what: &str, e: impl std::fmt::Display) -> TlsError {
    TlsError(format!("{what}: {e}"))
}

/// The SHA-256 of a certificate (DER), lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `bytes` to a new file only root can read, replacing none.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err(&format!("cannot create {}", path.display()), e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| err(&format!("cannot write {}", path.display()), e))
}

/// Valid from yesterday (clocks differ) for [`VALID_DAYS`].
fn validity(params: &mut CertificateParams, today: jiff::civil::Date) {
    let ymd = |d: jiff::civil::Date| {
        rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    let from = today.yesterday().unwrap_or(today);
    let until = today
        .checked_add(jiff::Span::new().days(VALID_DAYS))
        .unwrap_or(today);
    params.not_before = ymd(from);
    params.not_after = ymd(until);
}

/// The CA's parameters. They are fixed, so the CA certificate can be
/// rebuilt from its key alone to sign with: the issuer name and the key
/// identifier of what it signs are those of the certificate on disk.
fn ca_params(today: jiff::civil::Date) -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "hosthog lab CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, today);
    params
}

/// The CA of `dir`, ready to sign.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn load_ca(dir: &Path, today: jiff::civil::Date) -> Result<Ca, TlsError> {
    let path = dir.join(CA_KEY);
    let pem = fs::read_to_string(&path).map_err(|e| {
        err(
            &format!(
                "cannot read {} (run hosthog-server ca init first)",
                path.display()
            ),
            e,
        )
    })?;
    let key = KeyPair::from_pem(&pem).map_err(|e| err(&format!("{}", path.display()), e))?;
    let cert = ca_params(today)
        .self_signed(&key)
        .map_err(|e| err("cannot rebuild the CA", e))?;
    Ok(Ca { cert, key })
}

/// Makes the lab CA and the server's certificate (for `names`: DNS names
/// or IP addresses clients use to reach the server) in `dir`, which must
/// not hold them yet. Returns the files written.
///
/// # Errors
/// A file already exists, or cannot be written.
pub fn ca_init(
    dir: &Path,
    names: &[String],
    today: jiff::civil::Date,
) -> Result<Vec<PathBuf>, TlsError> {
    if names.is_empty() {
        return Err(TlsError(
            "name the server: --name HOST (as the hosts will reach it; repeatable)".into(),
        ));
    }
    fs::create_dir_all(dir).map_err(|e| err(&format!("cannot create {}", dir.display()), e))?;
    if dir.join(CA_KEY).exists() {
        return Err(TlsError(format!(
            "{} already holds a CA; remove it first to make a new one (every host then needs a new bundle)",
            dir.display()
        )));
    }
    let ca_key = KeyPair::generate().map_err(|e| err("cannot make a key", e))?;
    let ca_cert = ca_params(today)
        .self_signed(&ca_key)
        .map_err(|e| err("cannot make the CA", e))?;
    let server_key = KeyPair::generate().map_err(|e| err("cannot make a key", e))?;
    let mut params =
        CertificateParams::new(names.to_vec()).map_err(|e| err("a server name is not valid", e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].as_str());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, today);
    let server_cert = params
        .signed_by(&server_key, &ca_cert, &ca_key)
        .map_err(|e| err("cannot sign the server certificate", e))?;
    let files = [
        (CA_KEY, ca_key.serialize_pem()),
        (CA_CERT, ca_cert.pem()),
        (SERVER_KEY, server_key.serialize_pem()),
        (SERVER_CERT, server_cert.pem()),
    ];
    let mut written = Vec::new();
    for (name, pem) in files {
        let path = dir.join(name);
        write_private(&path, pem.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// A host's client certificate and key, and what the calendar records of it.
pub struct HostBundle {
    /// The bundle file's text: the host's certificate and key, the CA.
    pub pem: String,
    /// The SHA-256 of the host's certificate.
    pub fingerprint: String,
}

/// Issues a client certificate for host `name` from the CA in `dir`.
///
/// # Errors
/// No CA in `dir`, or signing fails.
pub fn issue_host(
    dir: &Path,
    name: &str,
    today: jiff::civil::Date,
) -> Result<HostBundle, TlsError> {
    let ca = load_ca(dir, today)?;
    let ca_pem = fs::read_to_string(dir.join(CA_CERT))
        .map_err(|e| err(&format!("cannot read {}", dir.join(CA_CERT).display()), e))?;
    let key = KeyPair::generate().map_err(|e| err("cannot make a key", e))?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, today);
    let cert = params
        .signed_by(&key, &ca.cert, &ca.key)
        .map_err(|e| err("cannot sign the host certificate", e))?;
    Ok(HostBundle {
        pem: format!("{}{}{ca_pem}", cert.pem(), key.serialize_pem()),
        fingerprint: fingerprint(cert.der()),
    })
}

/// Writes a host bundle to `path` (a new file, mode 0600).
///
/// # Errors
/// The file exists or cannot be written.
pub fn write_bundle(path: &Path, bundle: &HostBundle) -> Result<(), TlsError> {
    write_private(path, bundle.pem.as_bytes())
}

/// The server's TLS configuration from the CA directory: its own
/// certificate, and client certificates asked for, checked against the
/// lab CA when given, and optional (people use bearer tokens).
///
/// # Errors
/// A file is missing or unreadable.
pub fn server_config(dir: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let read_certs = |name: &str| -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let path = dir.join(name);
        CertificateDer::pem_file_iter(&path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| err(&format!("cannot read {}", path.display()), e))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(CA_CERT)? {
        roots
            .add(cert)
            .map_err(|e| err("the CA certificate is not usable", e))?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .allow_unauthenticated()
            .build()
            .map_err(|e| err("cannot check client certificates", e))?;
    let key_path = dir.join(SERVER_KEY);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| err(&format!("cannot read {}", key_path.display()), e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| err("TLS", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(SERVER_CERT)?, key)
        .map_err(|e| err("the server certificate is not usable", e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
