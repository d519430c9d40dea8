//! A supervisor's command inbox: a queue and a wake-up.
//!
//! Thousands of devices each hold one and almost never use it, so it must cost little
//! while empty: an unbounded tokio channel allocates a 32-slot block and cache-padded
//! state up front, about 1.5 KiB per device; this costs a few dozen bytes until the first
//! command arrives.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

struct Shared<T> {
    queue: Mutex<VecDeque<T>>,
    closed: AtomicBool,
    wake: Notify,
}

/// The owner's end; dropping it closes the inbox once the queue is drained.
pub struct Sender<T>(Arc<Shared<T>>);

/// The supervisor's end.
pub struct Receiver<T>(Arc<Shared<T>>);

pub fn inbox<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        closed: AtomicBool::new(false),
        wake: Notify::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    pub fn send(&self, item: T) {
        self.0
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(item);
        // Stores a permit when the receiver is not waiting yet, so no wake-up is lost.
        self.0.wake.notify_one();
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }
}

impl<T> Receiver<T> {
    /// The next command in order; `None` once the sender is gone and the queue empty.
    /// Cancel-safe: a command is only taken from the queue when it is returned.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            if let Some(item) = self
                .0
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front()
            {
                return Some(item);
            }
            if self.0.closed.load(Ordering::Acquire) {
                return None;
            }
            self.0.wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn delivers_in_order_then_closes_after_draining() {
        let (tx, mut rx) = inbox();
        tx.send(1);
        tx.send(2);
        drop(tx);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn wakes_a_waiting_receiver() {
        let (tx, mut rx) = inbox();
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send("update");
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(got, Ok(Ok(Some("update")))), "{got:?}");
    }

    #[tokio::test]
    async fn a_cancelled_wait_loses_nothing() {
        let (tx, mut rx) = inbox();
        // Cancel a wait (as `select!` does when the poll timer fires first).
        let cancelled = tokio::time::timeout(Duration::from_millis(10), rx.recv()).await;
        assert!(cancelled.is_err());
        tx.send(7);
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(got.ok().flatten(), Some(7));
    }

    #[tokio::test]
    async fn a_dropped_sender_wakes_a_waiting_receiver() {
        let (tx, mut rx) = inbox::<u8>();
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(tx);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(got, Ok(Ok(None))), "{got:?}");
    }
}
