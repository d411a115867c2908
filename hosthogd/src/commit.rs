//! Group commit: write requests that arrive while the table is being written
//! wait for the next write and share it.
//!
//! A table write costs the same for one change as for twenty (encode the
//! table, fsync it, rename, fsync the directory), and writes are serialized
//! by the table lock. So the first request to arrive becomes the leader: it
//! takes every queued request, applies them in arrival order to one state,
//! writes once, and hands each its own answer; requests that arrive
//! meanwhile form the next batch. Each request is still decided on the state
//! left by the ones before it, exactly as if they had been written one by
//! one, and none is answered before the write that holds it is on disk.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use hosthog_booking::policy::Caller;
use hosthog_booking::protocol::{Failure, FailureKind, Op, Reply};

/// One write request waiting for its answer.
#[derive(Debug)]
pub struct Pending {
    pub caller: Caller,
    pub op: Op,
    /// When the request was received (UTC seconds).
    pub now: i64,
    answer: Mutex<Option<Result<Reply, Failure>>>,
    answered: Condvar,
}

impl Pending {
    /// Gives the request its answer (the first answer wins).
    pub fn finish(&self, answer: Result<Reply, Failure>) {
        let mut slot = lock(&self.answer);
        if slot.is_none() {
            *slot = Some(answer);
            self.answered.notify_all();
        }
    }

    fn wait(&self) -> Result<Reply, Failure> {
        let mut slot = lock(&self.answer);
        loop {
            if let Some(answer) = slot.take() {
                return answer;
            }
            slot = self.answered.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The queue of write requests and whether a leader is writing.
#[derive(Debug, Default)]
pub struct Queue {
    state: Mutex<QueueState>,
}

#[derive(Debug, Default)]
struct QueueState {
    pending: Vec<Arc<Pending>>,
    leader: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Queue {
    /// Queues a write request and returns its answer once the write that
    /// carries it is done. If no batch is being written, the calling thread
    /// writes batches with `write_batch` until the queue is empty.
    pub fn submit(
        &self,
        caller: &Caller,
        op: &Op,
        now: i64,
        mut write_batch: impl FnMut(&[Arc<Pending>]),
    ) -> Result<Reply, Failure> {
        let me = Arc::new(Pending {
            caller: caller.clone(),
            op: op.clone(),
            now,
            answer: Mutex::new(None),
            answered: Condvar::new(),
        });
        {
            let mut queue = lock(&self.state);
            queue.pending.push(Arc::clone(&me));
            if queue.leader {
                drop(queue);
                return me.wait();
            }
            queue.leader = true;
        }
        let _leader = Leader(self);
        loop {
            let batch = {
                let mut queue = lock(&self.state);
                if queue.pending.is_empty() {
                    queue.leader = false;
                    break;
                }
                std::mem::take(&mut queue.pending)
            };
            let unanswered = Unanswered(&batch);
            write_batch(&batch);
            drop(unanswered);
        }
        me.wait()
    }
}

/// If the leader unwinds: answers the requests queued behind it and clears
/// the leader flag, so nobody waits for a leader that is gone.
struct Leader<'q>(&'q Queue);

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let queued = {
                let mut queue = lock(&self.0.state);
                queue.leader = false;
                std::mem::take(&mut queue.pending)
            };
            drop(Unanswered(&queued));
        }
    }
}

/// Answers every request of a batch that `write_batch` left unanswered (it
/// should answer all; this keeps a bug from hanging its clients).
struct Unanswered<'b>(&'b [Arc<Pending>]);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        for p in self.0 {
            p.finish(Err(Failure::new(
                FailureKind::Internal,
                "hosthogd failed while writing this request; nothing was changed by it",
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn caller() -> Caller {
        Caller {
            uid: 1000,
            name: "alice".into(),
            admin: false,
        }
    }

    #[test]
    fn concurrent_requests_share_writes_and_each_gets_its_answer() {
        let queue = Arc::new(Queue::default());
        let writes = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let queue = Arc::clone(&queue);
                let writes = Arc::clone(&writes);
                std::thread::spawn(move || {
                    queue.submit(&caller(), &Op::Whoami, i, |batch| {
                        writes.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        for p in batch {
                            p.finish(Err(Failure::new(
                                FailureKind::Invalid,
                                format!("answer {}", p.now),
                            )));
                        }
                    })
                })
            })
            .collect();
        for (i, t) in threads.into_iter().enumerate() {
            let answer = t.join().unwrap();
            assert_eq!(answer.unwrap_err().message, format!("answer {i}"));
        }
        let writes = writes.load(Ordering::SeqCst);
        assert!(
            (1..16).contains(&writes),
            "16 requests took {writes} writes"
        );
    }

    #[test]
    fn a_batch_left_unanswered_is_answered_with_an_error() {
        let queue = Queue::default();
        let answer = queue.submit(&caller(), &Op::Whoami, 0, |_| {});
        assert_eq!(
            answer.unwrap_err().message,
            "hosthogd failed while writing this request; nothing was changed by it"
        );
    }

    #[test]
    fn a_leader_that_panics_leaves_no_one_waiting() {
        let queue = Arc::new(Queue::default());
        let started = Arc::new(std::sync::Barrier::new(2));
        let leader = {
            let queue = Arc::clone(&queue);
            let started = Arc::clone(&started);
            std::thread::spawn(move || {
                queue.submit(&caller(), &Op::Whoami, 1, |_| {
                    started.wait();
                    // Die only once the second request is queued behind us.
                    while lock(&queue.state).pending.is_empty() {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    panic!("injected");
                })
            })
        };
        started.wait();
        // Queued behind the leader while it writes; answered when it dies.
        let answer = queue.submit(&caller(), &Op::Whoami, 2, |_| panic!("not the leader"));
        assert!(leader.join().is_err());
        assert_eq!(
            answer.unwrap_err().message,
            "hosthogd failed while writing this request; nothing was changed by it"
        );
        // And the next request finds no stale leader.
        let next = queue.submit(&caller(), &Op::Whoami, 3, |batch| {
            batch
                .iter()
                .for_each(|p| p.finish(Err(Failure::new(FailureKind::Invalid, "ok"))))
        });
        assert_eq!(next.unwrap_err().message, "ok");
    }
}
