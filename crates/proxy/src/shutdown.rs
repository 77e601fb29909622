//! Graceful shutdown: a signal to stop accepting and drain, and trackers
//! that say when every connection and every pending scan has finished.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

/// Counts live things (connections, unfinished scans) and wakes a waiter
/// when the count reaches zero.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker {
    inner: Arc<TrackerInner>,
}

#[derive(Debug, Default)]
struct TrackerInner {
    count: AtomicUsize,
    zero: Notify,
}

/// Held while a tracked thing lives.
#[derive(Debug)]
pub(crate) struct TrackGuard {
    inner: Arc<TrackerInner>,
}

impl Tracker {
    pub(crate) fn track(&self) -> TrackGuard {
        self.inner.count.fetch_add(1, Ordering::SeqCst);
        TrackGuard {
            inner: self.inner.clone(),
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.inner.count.load(Ordering::SeqCst)
    }

    /// Returns once nothing tracked is alive.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.inner.zero.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        if self.inner.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.zero.notify_waiters();
        }
    }
}

/// The shutdown phases every connection task watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Serving.
    Running,
    /// Stop accepting; let in-flight exchanges finish, then close.
    Draining,
    /// The drain deadline passed: cut whatever is left.
    Cut,
}

/// Sends phase changes.
#[derive(Debug)]
pub(crate) struct ShutdownSignal {
    tx: watch::Sender<Phase>,
}

impl ShutdownSignal {
    pub(crate) fn new() -> ShutdownSignal {
        ShutdownSignal {
            tx: watch::Sender::new(Phase::Running),
        }
    }

    pub(crate) fn set(&self, phase: Phase) {
        self.tx.send_replace(phase);
    }

    pub(crate) fn watcher(&self) -> PhaseWatch {
        PhaseWatch {
            rx: self.tx.subscribe(),
        }
    }
}

/// Watches phase changes.
#[derive(Debug, Clone)]
pub(crate) struct PhaseWatch {
    rx: watch::Receiver<Phase>,
}

impl PhaseWatch {
    /// Returns once the phase is at least `phase`.
    pub(crate) async fn reached(&mut self, phase: Phase) {
        // An error means the sender is gone: the proxy is being dropped,
        // which is as final as a cut.
        let _ = self.rx.wait_for(|p| *p >= phase).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tracker_waits_for_the_last_guard() {
        let tracker = Tracker::default();
        tracker.wait_idle().await;
        let a = tracker.track();
        let b = tracker.track();
        let waiter = tokio::spawn({
            let tracker = tracker.clone();
            async move { tracker.wait_idle().await }
        });
        drop(a);
        assert_eq!(tracker.count(), 1);
        assert!(!waiter.is_finished());
        drop(b);
        waiter.await.unwrap();
        assert_eq!(tracker.count(), 0);
    }
}
