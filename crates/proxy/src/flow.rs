//! One flow (an HTTP exchange or a tunnel): its scanners, byte counts, and
//! the record and findings it hands to the sink when it ends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use traffic_guardian_core::{Direction, Protocol};

use crate::shutdown::{TrackGuard, Tracker};
use crate::sink::{FindingSink, FlowHandling, FlowRecord};
use crate::stats::{Stats, add};
use traffic_guardian_core::{Engine, MessageMeta, MessageScanner, ScanOutcome};

/// Scans at most this many body bytes inline when a message ends; larger
/// scans finish on the blocking pool so they never hold up a worker.
const INLINE_FINISH_BYTES: u64 = 64 * 1024;

/// What every flow needs from the proxy.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) sink: Arc<dyn FindingSink>,
    pub(crate) stats: Arc<Stats>,
    /// Live flows and unfinished scans; shutdown waits for them.
    pub(crate) scans: Tracker,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The fixed facts of a flow.
#[derive(Debug, Clone)]
pub(crate) struct FlowMeta {
    pub(crate) id: String,
    pub(crate) runtime: String,
    pub(crate) protocol: Protocol,
    pub(crate) handling: FlowHandling,
    pub(crate) client: SocketAddr,
    pub(crate) dest: String,
    pub(crate) method: String,
}

#[derive(Debug, Default)]
struct Outcome {
    status: Option<u16>,
    error: Option<String>,
    /// A body that was dropped before its end: the flow's error unless a
    /// more precise one was recorded (a failed upstream exchange drops its
    /// request body on the way out).
    cut_short: Option<String>,
    /// Why the request body could not be read from the client, if it
    /// could not: then a failed exchange is the client's doing.
    request_body_failure: Option<String>,
    /// Set when the flow ended up handled otherwise than planned (a
    /// CONNECT meant for inspection that carried no TLS).
    handling: Option<FlowHandling>,
}

/// A live flow. Shared by its request and response bodies (and any scan
/// still finishing); when the last holder lets go, the flow record is sent.
pub(crate) struct Flow {
    meta: FlowMeta,
    shared: Arc<Shared>,
    started: Instant,
    bytes_out: AtomicU64,
    bytes_in: AtomicU64,
    scanned: AtomicU64,
    outcome: Mutex<Outcome>,
    _live: TrackGuard,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("id", &self.meta.id)
            .finish_non_exhaustive()
    }
}

impl Flow {
    pub(crate) fn new(meta: FlowMeta, shared: &Arc<Shared>) -> Arc<Flow> {
        Arc::new(Flow {
            meta,
            _live: shared.scans.track(),
            shared: shared.clone(),
            started: Instant::now(),
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            scanned: AtomicU64::new(0),
            outcome: Mutex::new(Outcome::default()),
        })
    }

    pub(crate) fn meta(&self) -> &FlowMeta {
        &self.meta
    }

    /// Opens a scanner for one message of this flow. `target` is the
    /// request target, so response findings can name their (redacted) path.
    pub(crate) fn scanner(&self, direction: Direction, target: Option<&str>) -> MessageScanner {
        let mut meta = MessageMeta::new(
            direction,
            self.meta.client.to_string(),
            self.meta.dest.clone(),
        )
        .with_protocol(self.meta.protocol)
        .with_runtime(self.meta.runtime.clone())
        .with_flow_id(self.meta.id.clone())
        .with_method(self.meta.method.clone());
        if let Some(target) = target {
            meta = meta.with_target(target);
        }
        self.shared.engine.message(meta)
    }

    pub(crate) fn set_status(&self, status: u16) {
        if let Ok(mut outcome) = self.outcome.lock() {
            outcome.status = Some(status);
        }
    }

    /// Records that the flow was handled otherwise than planned.
    pub(crate) fn set_handling(&self, handling: FlowHandling) {
        if let Ok(mut outcome) = self.outcome.lock() {
            outcome.handling = Some(handling);
        }
    }

    pub(crate) fn set_error(&self, error: String) {
        if let Ok(mut outcome) = self.outcome.lock() {
            outcome.error.get_or_insert(error);
        }
    }

    /// Records that the body in `direction` failed while it was read;
    /// `reason` says why.
    pub(crate) fn set_body_failed(&self, direction: Direction, reason: &str) {
        if let Ok(mut outcome) = self.outcome.lock() {
            outcome
                .error
                .get_or_insert_with(|| format!("{direction} body failed: {reason}"));
            if direction == Direction::Outbound {
                outcome
                    .request_body_failure
                    .get_or_insert_with(|| reason.to_owned());
            }
        }
    }

    /// Why the request body could not be read from the client, if so.
    pub(crate) fn request_body_failure(&self) -> Option<String> {
        let outcome = self.outcome.lock().ok()?;
        outcome.request_body_failure.clone()
    }

    /// Records that a body in `direction` was dropped before its end (the
    /// peer reading it went away, or the exchange was abandoned).
    pub(crate) fn set_cut_short(&self, direction: Direction) {
        if let Ok(mut outcome) = self.outcome.lock() {
            outcome
                .cut_short
                .get_or_insert_with(|| format!("{direction} body cut short before its end"));
        }
    }

    /// Counts bytes that passed in `direction`.
    pub(crate) fn add_bytes(&self, direction: Direction, n: u64) {
        match direction {
            Direction::Outbound => self.bytes_out.fetch_add(n, Ordering::Relaxed),
            Direction::Inbound => self.bytes_in.fetch_add(n, Ordering::Relaxed),
        };
    }

    /// Finishes a scanner, inline when it read little, on the blocking pool
    /// otherwise, and hands its findings to the sink. The flow stays alive
    /// until that is done.
    pub(crate) fn finish_scan(self: &Arc<Self>, scanner: MessageScanner, fed: u64) {
        let flow = self.clone();
        let run = move || flow.deliver(scanner.finish());
        if fed <= INLINE_FINISH_BYTES {
            run();
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(run);
            }
            Err(_) => run(),
        }
    }

    fn deliver(&self, outcome: ScanOutcome) {
        self.scanned
            .fetch_add(outcome.scanned_bytes, Ordering::Relaxed);
        if !outcome.notes.is_empty() {
            tracing::debug!(flow = %self.meta.id, notes = ?outcome.notes, "scan notes");
        }
        if !outcome.findings.is_empty() {
            let stats = &self.shared.stats;
            add(&stats.findings, outcome.findings.len() as u64);
            for finding in &outcome.findings {
                tracing::info!(
                    flow = %self.meta.id,
                    runtime = %self.meta.runtime,
                    dest = %self.meta.dest,
                    direction = %finding.direction,
                    pattern = %finding.pattern,
                    severity = %finding.severity,
                    "finding"
                );
            }
            self.shared.sink.record(outcome.findings);
        }
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        let outcome = match self.outcome.lock() {
            Ok(mut outcome) => std::mem::take(&mut *outcome),
            Err(_) => Outcome::default(),
        };
        let bytes_out = *self.bytes_out.get_mut();
        let bytes_in = *self.bytes_in.get_mut();
        let scanned = *self.scanned.get_mut();
        let unscanned = (bytes_out + bytes_in).saturating_sub(scanned);
        let stats = &self.shared.stats;
        add(&stats.bytes_out, bytes_out);
        add(&stats.bytes_in, bytes_in);
        add(&stats.scanned_bytes, scanned);
        add(&stats.unscanned_bytes, unscanned);
        let handling = outcome.handling.unwrap_or(self.meta.handling);
        match (handling, self.meta.protocol) {
            (FlowHandling::Tunnelled, _) => add(&stats.flows_tunnelled, 1),
            // The CONNECT that opens an inspected session: its exchanges
            // are the inspected flows.
            (FlowHandling::Inspected, Protocol::Connect) => {}
            (FlowHandling::Forwarded | FlowHandling::Inspected, _) => {
                add(&stats.flows_inspected, 1)
            }
        }
        let meta = &self.meta;
        let record = FlowRecord {
            flow_id: meta.id.clone(),
            runtime: meta.runtime.clone(),
            protocol: meta.protocol,
            handling,
            client: meta.client,
            dest: meta.dest.clone(),
            method: meta.method.clone(),
            status: outcome.status,
            bytes_out,
            bytes_in,
            scanned_bytes: scanned,
            unscanned_bytes: unscanned,
            duration: self.started.elapsed(),
            error: outcome.error.or(outcome.cut_short),
        };
        tracing::debug!(
            flow = %record.flow_id,
            runtime = %record.runtime,
            protocol = %record.protocol,
            dest = %record.dest,
            method = %record.method,
            status = record.status,
            bytes_out,
            bytes_in,
            "flow done"
        );
        self.shared.sink.flow(&record);
    }
}
