//! Hearing about changes at once: one connection of its own LISTENs on
//! [`CHANNEL`](crate::calendar::CHANNEL), on which every committed change
//! names the hosts it touched. Each notification bumps a counter per host
//! named, and a counter of all, which waiting long-polls watch: a poll
//! waiting for gpu1 sleeps through changes of other hosts without asking
//! the database anything, so a booking wakes only the agents of its hosts.
//!
//! Notifications carry host names only; a woken long-poll reads the host's
//! version and window from the database, so nothing depends on a
//! notification's content beyond "look again". While the connection is
//! down (it reconnects with backoff), and after every reconnect (what
//! changed meanwhile was not heard), long-polls look every second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use crate::calendar::CHANNEL;

/// What the LISTEN connection heard, shared with every long-poll.
#[derive(Clone)]
pub struct Changes {
    /// Changes with every notification and every (re)connect.
    any: watch::Receiver<u64>,
    heard: Arc<Heard>,
}

#[derive(Default)]
struct Heard {
    /// Notifications per host name.
    per_host: Mutex<HashMap<String, u64>>,
    /// Bumped by every (re)connect and loss of the connection.
    epoch: AtomicU64,
    /// The LISTEN connection is up: a host without notifications has not
    /// changed.
    listening: AtomicBool,
}

/// Where a long-poll stands: compare with a later mark to know whether
/// its host may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    host: u64,
    epoch: u64,
}

impl Changes {
    /// Changes of a server that does not listen (the fuzz target's router,
    /// over a database that cannot be reached): every waiting poll looks
    /// every second.
    pub fn silent() -> Changes {
        let (_, any) = watch::channel(0u64);
        Changes {
            any,
            heard: Arc::default(),
        }
    }

    /// Where `host` stands now.
    pub fn mark(&self, host: &str) -> Mark {
        let per_host = self
            .heard
            .per_host
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Mark {
            host: per_host.get(host).copied().unwrap_or(0),
            epoch: self.heard.epoch.load(Ordering::SeqCst),
        }
    }

    /// Whether `host` may have changed since `mark`: a notification named
    /// it, or the connection was (re)made or is down.
    pub fn may_have_changed(&self, host: &str, mark: Mark) -> bool {
        !self.heard.listening.load(Ordering::SeqCst) || self.mark(host) != mark
    }

    /// Waits until anything is heard (or the connection comes or goes).
    pub async fn changed(&mut self) {
        if self.any.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Marks what was heard so far as seen (call before reading).
    pub fn seen(&mut self) {
        self.any.borrow_and_update();
    }
}

/// Starts listening.
pub fn listen(config: tokio_postgres::Config) -> Changes {
    let (tx, any) = watch::channel(0u64);
    let heard = Arc::new(Heard::default());
    let changes = Changes {
        any,
        heard: Arc::clone(&heard),
    };
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        loop {
            match config.connect(tokio_postgres::NoTls).await {
                Ok((client, mut connection)) => {
                    let notices = tx.clone();
                    let on_notice = Arc::clone(&heard);
                    let driver = tokio::spawn(async move {
                        while let Some(message) =
                            std::future::poll_fn(|cx| connection.poll_message(cx)).await
                        {
                            match message {
                                Ok(AsyncMessage::Notification(n)) => {
                                    {
                                        let mut per_host = on_notice
                                            .per_host
                                            .lock()
                                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                                        for host in n.payload().split(',') {
                                            let count =
                                                per_host.entry(host.to_string()).or_insert(0);
                                            *count = count.wrapping_add(1);
                                        }
                                    }
                                    notices.send_modify(|n| *n = n.wrapping_add(1));
                                }
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                    });
                    match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                        Ok(()) => {
                            backoff = Duration::from_millis(250);
                            // Whatever changed while we were not listening:
                            // every waiting poll looks once.
                            heard.epoch.fetch_add(1, Ordering::SeqCst);
                            heard.listening.store(true, Ordering::SeqCst);
                            tx.send_modify(|n| *n = n.wrapping_add(1));
                            let _ = driver.await;
                            heard.listening.store(false, Ordering::SeqCst);
                            heard.epoch.fetch_add(1, Ordering::SeqCst);
                            tx.send_modify(|n| *n = n.wrapping_add(1));
                            eprintln!("hosthog-server: lost the LISTEN connection; reconnecting");
                        }
                        Err(e) => {
                            eprintln!("hosthog-server: cannot LISTEN: {e}");
                            driver.abort();
                        }
                    }
                }
                Err(e) => eprintln!("hosthog-server: cannot connect to LISTEN: {e}"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    });
    changes
}
