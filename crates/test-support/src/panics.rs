//! Counts panics per thread, so a test can tell that nothing it drove
//! panicked, even where the panic was caught: a panic in a spawned tokio
//! task only ends that task, and a peer just sees a closed connection.
//!
//! The hook is installed once for the process and chains to the one it
//! replaces, so panics are still printed. On a current-thread runtime
//! every task a test spawns runs on the test's own thread, which is what a
//! [`PanicWatch`] looks at.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::thread::ThreadId;

fn counts() -> &'static Mutex<HashMap<ThreadId, usize>> {
    static COUNTS: OnceLock<Mutex<HashMap<ThreadId, usize>>> = OnceLock::new();
    COUNTS.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(mut counts) = counts().lock() {
                *counts.entry(std::thread::current().id()).or_default() += 1;
            }
            previous(info);
        }));
        Mutex::new(HashMap::new())
    })
}

fn count_on(thread: ThreadId) -> usize {
    let counts = counts().lock().unwrap_or_else(|p| p.into_inner());
    counts.get(&thread).copied().unwrap_or(0)
}

/// Panics on the thread that made it, from the moment it was made.
#[derive(Debug)]
pub struct PanicWatch {
    thread: ThreadId,
    before: usize,
}

impl PanicWatch {
    /// Starts counting panics on the current thread.
    pub fn new() -> PanicWatch {
        let thread = std::thread::current().id();
        PanicWatch {
            thread,
            before: count_on(thread),
        }
    }

    /// Panics on the watched thread since the watch was made.
    pub fn count(&self) -> usize {
        count_on(self.thread) - self.before
    }
}

impl Default for PanicWatch {
    fn default() -> PanicWatch {
        PanicWatch::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_a_spawned_task_is_counted_on_its_thread() {
        let watch = PanicWatch::new();
        let other = std::thread::spawn(PanicWatch::new).join().unwrap();
        let task = tokio::spawn(async { panic!("deliberate") });
        assert!(task.await.unwrap_err().is_panic());
        assert_eq!(watch.count(), 1);
        assert_eq!(other.count(), 0);
    }
}
