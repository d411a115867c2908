//! The network between a fleet host in a network namespace of its own and
//! the server on this machine's 127.0.0.1.
//!
//! Inside the host's namespace, 127.0.0.1:PORT is a listening socket of
//! this test process (made by a thread that entered the namespace with
//! setns(2) just to bind it; a socket stays in the namespace it was made
//! in). Every connection to it is joined to a connection to the server's
//! 127.0.0.1:PORT here. The host's link is its own loopback: taking it down
//! (`ip link set lo down` in the namespace) cuts the host off as a pulled
//! cable does: packets are dropped, connections hang, new ones fail; the
//! relay and the server never notice. Nothing of the machine's own network
//! configuration changes, and no veth pair or address is needed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A relay into one host's namespace; stops on drop.
pub struct Relay {
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

/// Makes a TCP listener on 127.0.0.1:`port` inside the network namespace of
/// process `pid`.
fn listen_in(pid: u32, port: u16) -> TcpListener {
    std::thread::spawn(move || {
        let target = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("the host's netns");
        // SAFETY: setns on a thread of our own, with a namespace fd we hold
        // open; this thread does nothing else and ends right after.
        let rc = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        TcpListener::bind(("127.0.0.1", port)).expect("listen in the host's netns")
    })
    .join()
    .expect("the thread entering the namespace")
}

impl Relay {
    /// Starts relaying 127.0.0.1:`port` in the namespace of `pid` to
    /// 127.0.0.1:`port` here.
    pub fn start(pid: u32, port: u16) -> Relay {
        let listener = listen_in(pid, port);
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (stopping, held) = (Arc::clone(&stop), Arc::clone(&streams));
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let inner = match listener.accept() {
                    Ok((inner, _)) => inner,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(_) => continue,
                };
                let _ = inner.set_nonblocking(false);
                let Ok(outer) = TcpStream::connect(("127.0.0.1", port)) else {
                    // The server is down: the host sees a closed connection.
                    continue;
                };
                let mut list = held.lock().unwrap();
                list.retain(|s| s.peer_addr().is_ok());
                for s in [&inner, &outer] {
                    if let Ok(clone) = s.try_clone() {
                        list.push(clone);
                    }
                }
                drop(list);
                join(inner, outer);
            }
        });
        Relay { stop, streams }
    }
}

/// Copies both ways until either side ends.
fn join(a: TcpStream, b: TcpStream) {
    for (mut from, mut to) in [
        (a.try_clone().expect("clone"), b.try_clone().expect("clone")),
        (b, a),
    ] {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Write);
            let _ = from.shutdown(Shutdown::Read);
        });
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
