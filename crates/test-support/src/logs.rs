//! Captures every log line of one test while other tests of the same binary
//! run beside it, in other threads of the same process.
//!
//! One process-wide subscriber is installed the first time a capture is
//! made, and never replaced. It formats an event only when the thread that
//! emits it belongs to a live capture; every other event is skipped before
//! it is formatted. A capture owns the threads of a current-thread tokio
//! runtime it builds: the test's own thread while the runtime runs, and
//! every blocking-pool thread of that runtime. Everything the code under
//! test spawns on that runtime therefore logs into this capture and no
//! other.
//!
//! A global subscriber rather than a thread-scoped default: a scoped one
//! races the callsite interest cache with the tests running beside it and
//! can miss lines.

use std::cell::RefCell;
use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::filter::DynFilterFn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

type Buffer = Arc<Mutex<Vec<u8>>>;

thread_local! {
    /// The capture this thread logs into, if any.
    static CAPTURE: RefCell<Option<Buffer>> = const { RefCell::new(None) };
}

fn current() -> Option<Buffer> {
    CAPTURE.with(|c| c.borrow().clone())
}

fn capturing() -> bool {
    CAPTURE.with(|c| c.borrow().is_some())
}

/// Makes `buffer` this thread's log target until dropped.
struct Marked {
    previous: Option<Buffer>,
}

impl Marked {
    fn new(buffer: &Buffer) -> Marked {
        let previous = CAPTURE.with(|c| c.replace(Some(buffer.clone())));
        Marked { previous }
    }
}

impl Drop for Marked {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CAPTURE.with(|c| *c.borrow_mut() = previous);
    }
}

/// Writes a formatted event into the emitting thread's capture.
#[derive(Clone, Copy)]
struct ThreadWriter;

/// One event's bytes, appended to its capture in one piece.
struct EventWriter {
    buffer: Option<Buffer>,
    line: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if let Some(buffer) = &self.buffer {
            let mut buffer = buffer.lock().unwrap_or_else(|p| p.into_inner());
            buffer.extend_from_slice(&self.line);
        }
    }
}

impl<'a> MakeWriter<'a> for ThreadWriter {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> EventWriter {
        EventWriter {
            buffer: current(),
            line: Vec::new(),
        }
    }
}

fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Every level, every crate (hyper, h2 and rustls included), but
        // only on threads that belong to a capture.
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(ThreadWriter)
            .with_filter(DynFilterFn::new(|_, _| capturing()));
        let subscriber = Registry::default().with(layer);
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global log subscriber in a test binary that captures logs");
    });
}

/// The log lines of one test.
#[derive(Debug, Default)]
pub struct LogCapture {
    buffer: Buffer,
}

impl LogCapture {
    /// A new, empty capture (installs the process-wide subscriber once).
    pub fn new() -> LogCapture {
        install();
        LogCapture::default()
    }

    /// Runs `future` to completion on a new current-thread runtime whose
    /// threads all log into this capture, then shuts the runtime down.
    pub fn run<F: Future>(&self, future: F) -> F::Output {
        let _marked = Marked::new(&self.buffer);
        let buffer = self.buffer.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            // The runtime's blocking-pool threads.
            .on_thread_start(move || CAPTURE.with(|c| *c.borrow_mut() = Some(buffer.clone())))
            .on_thread_stop(|| CAPTURE.with(|c| *c.borrow_mut() = None))
            .build()
            .expect("build a tokio runtime");
        let output = runtime.block_on(future);
        drop(runtime);
        output
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        let buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_capture_sees_only_its_own_threads() {
        let a = LogCapture::new();
        let b = LogCapture::new();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                a.run(async {
                    tracing::info!("from a");
                    tokio::task::spawn_blocking(|| tracing::debug!("a, blocking"))
                        .await
                        .unwrap();
                })
            });
            scope.spawn(|| b.run(async { tracing::trace!("from b") }));
            tracing::error!("from no capture");
        });
        let (a, b) = (a.text(), b.text());
        assert!(a.contains("from a") && a.contains("a, blocking"), "{a}");
        assert!(b.contains("from b"), "{b}");
        assert!(!a.contains("from b") && !a.contains("no capture"), "{a}");
        assert!(!b.contains("from a") && !b.contains("no capture"), "{b}");
    }
}
