//! Scanning one HTTP message: its target, its headers and its body, fed in
//! arbitrary chunks, with a bounded budget and bounded memory.
//!
//! The body goes through a pipeline:
//!
//! ```text
//! wire bytes ─▶ Content-Encoding decoder ─▶ multipart decoder ─▶ segments ─▶ views ─▶ rules
//! ```
//!
//! Segments are [`SEGMENT_BYTES`] long and overlap by at least
//! [`OVERLAP_BYTES`], so a match split across two network reads, or across
//! two segments, is still found, and found once: a match is reported by the
//! segment it starts in, and a segment reports only matches that start
//! before its cut point (the overlap belongs to the next segment).
//!
//! Each segment is matched as one view: the text with percent, JSON and
//! HTML escapes decoded when it has any, or the raw text when it has none.
//! Base64 blobs in that view are decoded (one level) and matched as views of
//! their own. Snippets come from the view the match was found in.
//!
//! At most `max_scan_bytes` decoded body bytes are matched per message. Once
//! the budget is spent, further bytes are counted as unscanned and dropped:
//! they are never buffered.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;

use crate::decode::{
    ContentDecoder, DecodeLimits, MultipartDecoder, base64, boundary_from_content_type, normalize,
    parse_content_encoding,
};
use crate::engine::{Engine, RuleMatch};
use crate::finding::{Direction, Finding, Platform, Protocol, RuleId, SchemaVersion, Severity};
use crate::target;
use crate::timestamp::Timestamp;

/// Body bytes matched as one view.
pub const SEGMENT_BYTES: usize = 64 * 1024;
/// The least overlap between consecutive segments: longer than any match
/// has to be to be recognised.
pub const OVERLAP_BYTES: usize = 2 * 1024;
/// How far the cut point moves back so that a base64 blob crossing it is
/// decoded whole by the next segment.
const BLOB_CARRY_BYTES: usize = 16 * 1024;
/// The shortest base64 run decoded as a blob.
const MIN_BLOB_CHARS: usize = 32;
/// Header values and targets longer than this are scanned only up to it.
const MAX_HEAD_FIELD_BYTES: usize = 64 * 1024;
/// Findings one message can report individually; beyond this they are
/// counted in the outcome's notes.
const MAX_FINDINGS_PER_MESSAGE: usize = 512;
/// The `location` of findings in the request target.
const URL_LOCATION: &str = "url";

/// Where a message came from and where it went: copied into its findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// Outbound for requests, inbound for responses.
    pub direction: Direction,
    /// How the message reached the guardian.
    pub protocol: Protocol,
    /// The client address (`ip:port`), or an input name offline.
    pub source: String,
    /// The destination as `host:port`.
    pub dest: String,
    /// The runtime the traffic belongs to.
    pub runtime: Option<String>,
    /// Names the flow.
    pub flow_id: Option<String>,
    /// The request method.
    pub method: Option<String>,
    /// The request target, redacted before it is stored in any finding.
    pub target: Option<String>,
}

impl MessageMeta {
    /// Metadata for a plain-HTTP message.
    pub fn new(
        direction: Direction,
        source: impl Into<String>,
        dest: impl Into<String>,
    ) -> MessageMeta {
        MessageMeta {
            direction,
            protocol: Protocol::Http,
            source: source.into(),
            dest: dest.into(),
            runtime: None,
            flow_id: None,
            method: None,
            target: None,
        }
    }

    /// Sets the protocol.
    pub fn with_protocol(mut self, protocol: Protocol) -> MessageMeta {
        self.protocol = protocol;
        self
    }

    /// Sets the runtime.
    pub fn with_runtime(mut self, runtime: impl Into<String>) -> MessageMeta {
        self.runtime = Some(runtime.into());
        self
    }

    /// Sets the flow id.
    pub fn with_flow_id(mut self, flow_id: impl Into<String>) -> MessageMeta {
        self.flow_id = Some(flow_id.into());
        self
    }

    /// Sets the request method.
    pub fn with_method(mut self, method: impl Into<String>) -> MessageMeta {
        self.method = Some(method.into());
        self
    }

    /// Sets the request target, so that findings in a response can say
    /// which (redacted) path delivered them.
    pub fn with_target(mut self, target: impl Into<String>) -> MessageMeta {
        self.target = Some(target.into());
        self
    }
}

/// What scanning one message produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Redacted findings, at most one per rule id and matched value.
    pub findings: Vec<Finding>,
    /// Decoded body bytes that went through the rules.
    pub scanned_bytes: u64,
    /// Wire body bytes that arrived after the budget was spent, or that
    /// could not be decoded.
    pub unscanned_bytes: u64,
    /// Problems met on the way (a corrupt gzip body, a decompression bomb,
    /// findings beyond the per-message cap). Never contains message bytes.
    pub notes: Vec<String>,
}

/// Scans one message. Create it with [`Engine::message`], feed it, finish it.
#[derive(Debug)]
pub struct MessageScanner {
    pipeline: Pipeline,
    body: Body,
    collector: Collector,
}

#[derive(Debug, Default)]
struct Pipeline {
    started: bool,
    content: Option<ContentDecoder>,
    multipart: Option<MultipartDecoder>,
    /// Decoding failed: further wire bytes cannot be scanned.
    broken: bool,
    label: String,
}

#[derive(Debug)]
struct Body {
    segment: Vec<u8>,
    budget_left: usize,
    scanned: u64,
    unscanned: u64,
}

#[derive(Debug)]
struct Collector {
    engine: Engine,
    meta: MessageMeta,
    host: String,
    path: Option<String>,
    findings: Vec<Finding>,
    seen: HashSet<(&'static str, u64)>,
    overflow: u64,
    notes: Vec<String>,
    scratch: Scratch,
}

#[derive(Debug, Default)]
struct Scratch {
    windows: Vec<(usize, usize, usize)>,
    matches: Vec<RuleMatch>,
    masks: Vec<Range<usize>>,
    head: Vec<u8>,
    tail: Vec<u8>,
    view: Vec<u8>,
    blobs: Vec<Range<usize>>,
    decoded: Vec<u8>,
}

impl MessageScanner {
    pub(crate) fn new(engine: Engine, meta: MessageMeta) -> MessageScanner {
        let budget = engine.config().max_scan_bytes;
        let host = host_of(&meta.dest);
        let path = meta
            .target
            .as_deref()
            .map(|t| target::redacted_path(&engine, t));
        MessageScanner {
            pipeline: Pipeline::default(),
            body: Body {
                segment: Vec::new(),
                budget_left: budget,
                scanned: 0,
                unscanned: 0,
            },
            collector: Collector {
                engine,
                meta,
                host,
                path,
                findings: Vec::new(),
                seen: HashSet::new(),
                overflow: 0,
                notes: Vec::new(),
                scratch: Scratch::default(),
            },
        }
    }

    /// Scans the request target (absolute URL or path and query) and
    /// remembers its redacted form as the `path` of every finding.
    pub fn scan_target(&mut self, target: &str) {
        let c = &mut self.collector;
        let bytes = &target.as_bytes()[..target.len().min(MAX_HEAD_FIELD_BYTES)];
        c.path = Some(target::redacted_path(&c.engine, target));
        c.scan_text(bytes, bytes.len(), URL_LOCATION, "");
    }

    /// Scans one header. `Proxy-Authorization` is never scanned: it belongs
    /// to the proxy hop and may be passed upstream, but never into a finding.
    pub fn scan_header(&mut self, name: &str, value: &[u8]) {
        if name.eq_ignore_ascii_case("proxy-authorization") {
            return;
        }
        let location = format!("header:{}", name.to_ascii_lowercase());
        let value = &value[..value.len().min(MAX_HEAD_FIELD_BYTES)];
        self.collector.scan_text(value, value.len(), &location, "");
    }

    /// Prepares body decoding from the message's `Content-Encoding` and
    /// `Content-Type`. Call once, before [`feed`](Self::feed); a body fed
    /// without it is scanned as it comes.
    pub fn begin_body(&mut self, content_encoding: Option<&str>, content_type: Option<&str>) {
        let pipeline = &mut self.pipeline;
        if pipeline.started {
            return;
        }
        pipeline.started = true;
        let mut labels: Vec<&str> = Vec::new();
        if let Some(header) = content_encoding {
            match parse_content_encoding(header) {
                Ok(codings) if codings.is_empty() => {}
                Ok(codings) => {
                    labels.extend(codings.iter().rev().map(|c| c.as_str()));
                    let limits = DecodeLimits {
                        max_output: self.body.budget_left as u64,
                        max_ratio: self.collector.engine.config().max_decode_ratio,
                    };
                    pipeline.content = Some(ContentDecoder::new(&codings, limits));
                }
                Err(err) => {
                    self.collector
                        .notes
                        .push(format!("body not scanned: {err}"));
                    pipeline.broken = true;
                }
            }
        }
        if let Some(boundary) = content_type.and_then(boundary_from_content_type) {
            pipeline.multipart = Some(MultipartDecoder::new(&boundary));
            labels.push("multipart");
        }
        pipeline.label = labels.join("+");
    }

    /// Feeds the next piece of the body, exactly as it came off the wire.
    pub fn feed(&mut self, chunk: &[u8]) {
        if !self.pipeline.started {
            self.begin_body(None, None);
        }
        let Self {
            pipeline,
            body,
            collector,
        } = self;
        if pipeline.broken || body.budget_left == 0 {
            body.unscanned += chunk.len() as u64;
            return;
        }
        // Taken out for the call so the decoders can borrow the pipeline.
        let label = std::mem::take(&mut pipeline.label);
        let result = match (&mut pipeline.content, &mut pipeline.multipart) {
            (Some(content), Some(multipart)) => content.push(chunk, &mut |decoded| {
                multipart.push(decoded, &mut |part| {
                    body.push(part, collector, &label);
                });
            }),
            (Some(content), None) => content.push(chunk, &mut |decoded| {
                body.push(decoded, collector, &label);
            }),
            (None, Some(multipart)) => {
                multipart.push(chunk, &mut |part| {
                    body.push(part, collector, &label);
                });
                Ok(())
            }
            (None, None) => {
                let taken = body.push(chunk, collector, &label);
                body.unscanned += (chunk.len() - taken) as u64;
                Ok(())
            }
        };
        pipeline.label = label;
        if let Err(err) = result {
            collector.notes.push(format!("body scan stopped: {err}"));
            pipeline.broken = true;
        }
    }

    /// Whether the scan budget of this message is spent: feeding more only
    /// counts unscanned bytes, so a caller may stop copying and finish.
    pub fn budget_spent(&self) -> bool {
        self.body.budget_left == 0 || self.pipeline.broken
    }

    /// Ends the message: scans what is left and returns the findings.
    pub fn finish(mut self) -> ScanOutcome {
        let Self {
            pipeline,
            body,
            collector,
        } = &mut self;
        let label = pipeline.label.clone();
        if !pipeline.broken {
            let result = match (&mut pipeline.content, &mut pipeline.multipart) {
                (Some(content), Some(multipart)) => {
                    let result = content.finish(&mut |decoded| {
                        multipart.push(decoded, &mut |part| {
                            body.push(part, collector, &label);
                        });
                    });
                    multipart.finish(&mut |part| {
                        body.push(part, collector, &label);
                    });
                    result
                }
                (Some(content), None) => content.finish(&mut |decoded| {
                    body.push(decoded, collector, &label);
                }),
                (None, Some(multipart)) => {
                    multipart.finish(&mut |part| {
                        body.push(part, collector, &label);
                    });
                    Ok(())
                }
                (None, None) => Ok(()),
            };
            if let Err(err) = result {
                collector.notes.push(format!("body scan incomplete: {err}"));
            }
        }
        body.flush(collector, &label);
        if collector.overflow > 0 {
            collector.notes.push(format!(
                "{} further findings in this message were over the cap of {MAX_FINDINGS_PER_MESSAGE} and not reported individually",
                collector.overflow
            ));
        }
        ScanOutcome {
            findings: std::mem::take(&mut collector.findings),
            scanned_bytes: body.scanned,
            unscanned_bytes: body.unscanned,
            notes: std::mem::take(&mut collector.notes),
        }
    }
}

impl Body {
    /// Appends decoded bytes within the budget, scanning full segments.
    /// Returns how many bytes were taken.
    fn push(&mut self, bytes: &[u8], collector: &mut Collector, label: &str) -> usize {
        let take = bytes.len().min(self.budget_left);
        let mut rest = &bytes[..take];
        self.budget_left -= take;
        self.scanned += take as u64;
        while !rest.is_empty() {
            let room = SEGMENT_BYTES.saturating_sub(self.segment.len()).max(1);
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.segment.extend_from_slice(now);
            rest = later;
            if self.segment.len() >= SEGMENT_BYTES {
                let cut = cut_point(&self.segment);
                collector.scan_text(&self.segment, cut, "body", label);
                self.segment.drain(..cut);
            }
        }
        take
    }

    /// Scans the last, partial segment.
    fn flush(&mut self, collector: &mut Collector, label: &str) {
        if !self.segment.is_empty() {
            let len = self.segment.len();
            collector.scan_text(&self.segment, len, "body", label);
            self.segment.clear();
        }
    }
}

/// Where to cut a full segment: [`OVERLAP_BYTES`] before its end, moved back
/// so that no escape sequence and no base64 blob of up to
/// [`BLOB_CARRY_BYTES`] is split.
fn cut_point(segment: &[u8]) -> usize {
    let mut cut = segment.len().saturating_sub(OVERLAP_BYTES);
    let look = cut.saturating_sub(12);
    if let Some(at) = memchr::memrchr3(b'%', b'\\', b'&', &segment[look..cut]) {
        cut = look + at;
    }
    let mut start = cut;
    while start > 0 && cut - start < BLOB_CARRY_BYTES && is_blob_byte(segment[start - 1]) {
        start -= 1;
    }
    if start < cut
        && cut - start < BLOB_CARRY_BYTES
        && (start == 0 || !is_blob_byte(segment[start - 1]))
    {
        cut = start;
    }
    cut.max(1)
}

fn is_blob_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-' | b'\r' | b'\n')
}

impl Collector {
    /// Matches `raw` as one view and reports matches starting before
    /// `boundary` (the rest belong to the next segment).
    fn scan_text(&mut self, raw: &[u8], boundary: usize, location: &str, label: &str) {
        let scratch = &mut self.scratch;
        let head_changed = normalize(&raw[..boundary], &mut scratch.head);
        let tail_changed = normalize(&raw[boundary..], &mut scratch.tail);
        let mut view = std::mem::take(&mut scratch.view);
        view.clear();
        let (view_ref, view_boundary, unescaped): (&[u8], usize, bool) =
            if head_changed || tail_changed {
                view.extend_from_slice(if head_changed {
                    &scratch.head
                } else {
                    &raw[..boundary]
                });
                let split = view.len();
                view.extend_from_slice(if tail_changed {
                    &scratch.tail
                } else {
                    &raw[boundary..]
                });
                (&view, split, true)
            } else {
                (raw, boundary, false)
            };
        let encoding = join_label(label, unescaped.then_some("unescape"));
        self.scan_view(view_ref, view_boundary, location, &encoding);

        // Base64 blobs in the view, one level deep.
        let mut blobs = std::mem::take(&mut self.scratch.blobs);
        let mut decoded = std::mem::take(&mut self.scratch.decoded);
        base64::find_blobs(view_ref, MIN_BLOB_CHARS, &mut blobs);
        let blob_encoding = join_label(&encoding, Some("base64"));
        for blob in blobs.iter().filter(|b| b.start < view_boundary) {
            if base64::decode_blob(&view_ref[blob.clone()], &mut decoded, SEGMENT_BYTES) {
                self.scan_view(&decoded, decoded.len(), location, &blob_encoding);
            }
        }
        self.scratch.blobs = blobs;
        self.scratch.decoded = decoded;
        self.scratch.view = view;
    }

    /// Runs the rules over one view and turns matches into findings.
    fn scan_view(&mut self, view: &[u8], boundary: usize, location: &str, encoding: &str) {
        let mut matches = std::mem::take(&mut self.scratch.matches);
        let mut masks = std::mem::take(&mut self.scratch.masks);
        matches.clear();
        self.engine.find(
            view,
            self.meta.direction,
            &mut self.scratch.windows,
            &mut matches,
        );
        masks.clear();
        masks.extend(matches.iter().flat_map(|m| m.masks.iter().cloned()));
        for m in matches.iter().filter(|m| m.span.start < boundary) {
            self.report(view, m, &masks, location, encoding);
        }
        self.scratch.matches = matches;
        self.scratch.masks = masks;
    }

    fn report(
        &mut self,
        view: &[u8],
        m: &RuleMatch,
        masks: &[Range<usize>],
        location: &str,
        encoding: &str,
    ) {
        let rule = self.engine.rule(m.rule);
        let value = view.get(m.value.clone()).unwrap_or_default();
        let mut hasher = DefaultHasher::new();
        value.hash(&mut hasher);
        if !self.seen.insert((rule.id, hasher.finish())) {
            return;
        }
        if self.findings.len() >= MAX_FINDINGS_PER_MESSAGE {
            self.overflow += 1;
            return;
        }
        let expected = location != "body"
            && rule.expected_hosts.iter().any(|h| {
                self.host == *h
                    || self
                        .host
                        .strip_suffix(h)
                        .is_some_and(|rest| rest.ends_with('.'))
            });
        let severity = if expected {
            Severity::Low
        } else {
            rule.severity
        };
        // A URL's userinfo and other query values never show as context.
        let url_masks;
        let masks = if location == URL_LOCATION {
            url_masks = [masks, &target::url_context_masks(view, &m.span)].concat();
            &url_masks[..]
        } else {
            masks
        };
        let meta = &self.meta;
        self.findings.push(Finding {
            schema_version: SchemaVersion,
            platform: Platform,
            direction: meta.direction,
            protocol: meta.protocol,
            threat_type: rule.threat_type,
            pattern: RuleId::new(rule.id),
            severity,
            source: meta.source.clone(),
            dest: meta.dest.clone(),
            snippet: self.engine.redactor().snippet(view, m.span.clone(), masks),
            timestamp: Timestamp::now(),
            runtime: meta.runtime.clone(),
            flow_id: meta.flow_id.clone(),
            method: meta.method.clone(),
            path: self.path.clone(),
            location: Some(location.to_owned()),
            encoding: (!encoding.is_empty()).then(|| encoding.to_owned()),
            count: 1,
            fingerprint: self
                .engine
                .fingerprinter()
                .map(|f| f.fingerprint(rule.id, value)),
        });
    }
}

fn join_label(label: &str, extra: Option<&str>) -> String {
    match (label.is_empty(), extra) {
        (_, None) => label.to_owned(),
        (true, Some(extra)) => extra.to_owned(),
        (false, Some(extra)) => format!("{label}+{extra}"),
    }
}

/// The host part of `host:port`, lowercased, without IPv6 brackets.
fn host_of(dest: &str) -> String {
    let host = if let Some(rest) = dest.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        match dest.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => dest,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
