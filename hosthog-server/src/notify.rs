//! Hearing about changes at once: one connection of its own LISTENs on
//! [`CHANNEL`](crate::calendar::CHANNEL), on which every committed booking
//! or change names the hosts it touched, and every notification bumps a
//! counter that waiting long-polls watch. The notification carries host
//! names only; a woken long-poll reads the host's version and window from
//! the database, so nothing depends on notifications arriving or arriving
//! in order. While the connection is down (it reconnects with backoff),
//! long-polls still look every second.

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use crate::calendar::CHANNEL;

/// Starts listening; the receiver's value changes with every notification.
pub fn listen(config: tokio_postgres::Config) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        loop {
            match config.connect(tokio_postgres::NoTls).await {
                Ok((client, mut connection)) => {
                    let notices = tx.clone();
                    let driver = tokio::spawn(async move {
                        while let Some(message) =
                            std::future::poll_fn(|cx| connection.poll_message(cx)).await
                        {
                            match message {
                                Ok(AsyncMessage::Notification(_)) => {
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
                            // Whatever changed while we were not listening.
                            tx.send_modify(|n| *n = n.wrapping_add(1));
                            let _ = driver.await;
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
    rx
}
