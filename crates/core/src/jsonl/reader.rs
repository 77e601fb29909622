//! The reader side: yields the findings stored in a log folder, oldest file first.

use std::cmp::Reverse;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::FILE_NAME;
use crate::error::Error;
use crate::finding::Finding;

/// The default cap on one line: 1 MiB. Longer lines are skipped.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Every finding read from a log folder, and how many lines were skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// The findings, oldest file first, in file order.
    pub findings: Vec<Finding>,
    /// Lines that could not be read as findings.
    pub skipped_lines: u64,
}

/// Reads every finding in `dir`: the rotated files from the oldest
/// (`findings.jsonl.<N>`) to `findings.jsonl.1`, then `findings.jsonl`.
///
/// Fails only on I/O errors other than a missing folder or file. This holds
/// every finding in memory; [`FindingQuery::run`](super::FindingQuery::run)
/// keeps only what it returns.
pub fn read_all(dir: &Path) -> Result<ReadReport, Error> {
    let mut reader = FindingReader::open(dir)?;
    let mut findings = Vec::new();
    for finding in &mut reader {
        findings.push(finding?);
    }
    Ok(ReadReport {
        findings,
        skipped_lines: reader.skipped(),
    })
}

/// Yields the findings of a log folder one at a time, oldest file first.
///
/// The reader never trusts the files. A line that is not a valid
/// `clawsec-traffic-finding/v1` object (a torn last line, invalid JSON, a
/// different `schema_version`, binary garbage, or a line longer than the
/// line cap) is skipped and counted, never a panic and never an error.
/// Memory stays bounded: a line is read into a buffer of at most the line
/// cap, and the rest of an overlong line is discarded as it streams past.
/// Blank lines are ignored without being counted.
///
/// A missing folder or file is no findings, not an error. Reading while the
/// sink rotates may see a file twice or miss one; the files are listed when
/// the reader opens.
///
/// Items are `Err` only for I/O errors; the reader then moves on to the next
/// file. Unreadable lines are counted in [`FindingReader::skipped`].
#[derive(Debug)]
pub struct FindingReader {
    /// Files still to read, in reading order.
    pending: std::vec::IntoIter<PathBuf>,
    /// The file being read.
    current: Option<(PathBuf, BufReader<File>)>,
    /// The line being read; never longer than `max_line`.
    line: Vec<u8>,
    max_line: usize,
    skipped: u64,
}

impl FindingReader {
    /// Lists the findings files in `dir`, oldest first. A missing folder
    /// gives a reader that yields nothing.
    pub fn open(dir: &Path) -> Result<FindingReader, Error> {
        Ok(FindingReader {
            pending: list_files(dir)?.into_iter(),
            current: None,
            line: Vec::new(),
            max_line: MAX_LINE_BYTES,
            skipped: 0,
        })
    }

    /// Sets the cap on one line (default [`MAX_LINE_BYTES`]). Longer lines
    /// are skipped and counted.
    pub fn with_max_line_bytes(mut self, max_line: usize) -> FindingReader {
        self.max_line = max_line;
        self
    }

    /// How many lines have been skipped so far because they were not
    /// readable findings.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

impl Iterator for FindingReader {
    type Item = Result<Finding, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some((path, reader)) = &mut self.current else {
                let path = self.pending.next()?;
                match File::open(&path) {
                    Ok(file) => self.current = Some((path, BufReader::new(file))),
                    // Rotated away since the listing: nothing to read.
                    Err(source) if source.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => return Some(Err(Error::io("open", path, source))),
                }
                continue;
            };
            match read_capped_line(reader, &mut self.line, self.max_line) {
                Ok(Line::End) => self.current = None,
                Ok(Line::TooLong) => self.skipped += 1,
                Ok(Line::Read) => {
                    if self.line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match serde_json::from_slice::<Finding>(&self.line) {
                        Ok(finding) => return Some(Ok(finding)),
                        Err(_) => self.skipped += 1,
                    }
                }
                Err(source) => {
                    let path = path.clone();
                    self.current = None;
                    return Some(Err(Error::io("read", path, source)));
                }
            }
        }
    }
}

/// The findings files in `dir`, in reading order: rotated files from the
/// highest number down, then the current file. Names that are not
/// `findings.jsonl` or `findings.jsonl.<n>` (n ≥ 1) are ignored.
fn list_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(source) if source.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::io("list", dir, source)),
    };
    let mut rotated: Vec<(u64, PathBuf)> = Vec::new();
    let mut current = None;
    for entry in entries {
        let entry = entry.map_err(|source| Error::io("list", dir, source))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name == FILE_NAME {
            current = Some(entry.path());
        } else if let Some(n) = name
            .strip_prefix(FILE_NAME)
            .and_then(|rest| rest.strip_prefix('.'))
            .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u64>().ok())
            .filter(|n| *n >= 1)
        {
            rotated.push((n, entry.path()));
        }
    }
    rotated.sort_by_key(|(n, _)| Reverse(*n));
    Ok(rotated
        .into_iter()
        .map(|(_, path)| path)
        .chain(current)
        .collect())
}

/// What [`read_capped_line`] found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line (terminated or the unterminated last one) is in the buffer.
    Read,
    /// A line longer than the cap was consumed and discarded.
    TooLong,
    /// The end of the file.
    End,
}

/// Reads one line into `buf` (without its `\n`), holding at most `max`
/// bytes. A longer line is consumed up to its newline and reported as
/// [`Line::TooLong`]; memory never grows past `max` plus the reader's own
/// buffer.
fn read_capped_line(reader: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    buf.clear();
    let mut seen_any = false;
    let mut too_long = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if available.is_empty() {
            return Ok(match (seen_any, too_long) {
                (false, _) => Line::End,
                (true, true) => Line::TooLong,
                (true, false) => Line::Read,
            });
        }
        seen_any = true;
        let (chunk, used, ended) = match memchr::memchr(b'\n', available) {
            Some(at) => (&available[..at], at + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long {
            let wanted = buf.len().saturating_add(chunk.len());
            if wanted > max {
                too_long = true;
                buf.clear();
            } else {
                if wanted > buf.capacity() {
                    // Grow geometrically, but never past the cap.
                    let target = wanted.max(buf.capacity().saturating_mul(2)).min(max);
                    buf.reserve_exact(target - buf.len());
                }
                buf.extend_from_slice(chunk);
            }
        }
        reader.consume(used);
        if ended {
            return Ok(if too_long { Line::TooLong } else { Line::Read });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use super::super::rotated_path;
    use super::super::tests::finding;
    use super::*;

    /// Writes `content` as `findings.jsonl` in a fresh folder and checks the
    /// snippets read back and the number of skipped lines.
    #[track_caller]
    fn check(content: &[u8], snippets: &[&str], skipped: u64) {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(FILE_NAME), content).unwrap();
        let report = read_all(tmp.path()).unwrap();
        let got: Vec<&str> = report.findings.iter().map(|f| f.snippet.as_str()).collect();
        assert_eq!(got, snippets);
        assert_eq!(report.skipped_lines, skipped);
    }

    fn line(snippet: &str) -> String {
        format!("{}\n", finding(snippet, 0).to_json_line())
    }

    #[test]
    fn skips_and_counts_unreadable_lines() {
        let a = line("a");
        let b = line("b");
        let torn = &line("t")[..30];
        let other_schema = line("v9").replace("finding/v1", "finding/v9");
        let missing_field = line("m").replace(r#""severity":"high","#, "");
        check(b"", &[], 0);
        check(a.as_bytes(), &["a"], 0);
        check(format!("{a}{b}").as_bytes(), &["a", "b"], 0);
        check(format!("{a}\n  \n{b}").as_bytes(), &["a", "b"], 0);
        check(format!("{a}{torn}").as_bytes(), &["a"], 1);
        check(format!("{a}{}", a.trim_end()).as_bytes(), &["a", "a"], 0);
        check(format!("{a}not json\n{b}").as_bytes(), &["a", "b"], 1);
        check(format!("{other_schema}{a}").as_bytes(), &["a"], 1);
        check(format!("{missing_field}{a}").as_bytes(), &["a"], 1);
        check(format!("[1,2]\n{{}}\nnull\n{a}").as_bytes(), &["a"], 3);
        let mut garbage = b"\x00\xff\xfe{\"\x1b[2J\x80\n".to_vec();
        garbage.extend_from_slice(a.as_bytes());
        check(&garbage, &["a"], 1);
        let mut bad_utf8 = a.clone().into_bytes();
        let at = bad_utf8.iter().position(|&c| c == b'a').unwrap();
        bad_utf8[at] = 0xff;
        check(&bad_utf8, &[], 1);
    }

    #[test]
    fn reads_rotated_files_oldest_first_and_ignores_other_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::write(dir.join(FILE_NAME), line("current")).unwrap();
        fs::write(rotated_path(dir, 1), line("r1")).unwrap();
        fs::write(rotated_path(dir, 2), line("r2")).unwrap();
        fs::write(rotated_path(dir, 10), line("r10")).unwrap();
        for other in [
            "findings.jsonl.0",
            "findings.jsonl.x",
            "findings.jsonl.1.gz",
            "findings.jsonl.+3",
            "other.jsonl",
        ] {
            fs::write(dir.join(other), line(other)).unwrap();
        }
        let report = read_all(dir).unwrap();
        let got: Vec<&str> = report.findings.iter().map(|f| f.snippet.as_str()).collect();
        assert_eq!(got, ["r10", "r2", "r1", "current"]);
    }

    #[test]
    fn missing_folder_or_file_is_no_findings() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            read_all(&tmp.path().join("absent")).unwrap(),
            ReadReport::default()
        );
        assert_eq!(read_all(tmp.path()).unwrap(), ReadReport::default());
    }

    #[test]
    fn overlong_lines_are_skipped_with_bounded_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(FILE_NAME);
        let mut file = File::create(&path).unwrap();
        file.write_all(line("a").as_bytes()).unwrap();
        // 2 MiB of garbage with a newline, then 2 MiB without one.
        let garbage = vec![b'z'; 2 * 1024 * 1024];
        file.write_all(&garbage).unwrap();
        file.write_all(b"\n").unwrap();
        file.write_all(line("b").as_bytes()).unwrap();
        file.write_all(&garbage).unwrap();
        drop(file);

        let mut reader = FindingReader::open(tmp.path()).unwrap();
        let mut got = Vec::new();
        while let Some(finding) = reader.next() {
            got.push(finding.unwrap().snippet);
            // Checked between items, while `reader` is not borrowed.
            assert!(reader.line.capacity() <= MAX_LINE_BYTES);
        }
        assert!(reader.line.capacity() <= MAX_LINE_BYTES);
        assert_eq!(got, ["a", "b"]);
        assert_eq!(reader.skipped(), 2);
    }

    #[test]
    fn line_cap_is_configurable() {
        let tmp = tempfile::tempdir().unwrap();
        let short = line("a");
        let long = line(&"x".repeat(200));
        fs::write(tmp.path().join(FILE_NAME), format!("{short}{long}")).unwrap();
        let cap = short.len() + 10;
        let mut reader = FindingReader::open(tmp.path())
            .unwrap()
            .with_max_line_bytes(cap);
        assert_eq!(reader.next().unwrap().unwrap().snippet, "a");
        assert!(reader.next().is_none());
        assert_eq!(reader.skipped(), 1);
    }

    #[track_caller]
    fn check_capped(input: &[u8], max: usize, expected: &[(Line, &[u8])]) {
        // A tiny BufReader capacity makes lines span many fills.
        let mut reader = BufReader::with_capacity(3, Cursor::new(input));
        let mut buf = Vec::new();
        for (i, (kind, content)) in expected.iter().enumerate() {
            let got = read_capped_line(&mut reader, &mut buf, max).unwrap();
            assert_eq!(&got, kind, "line {i}");
            if *kind == Line::Read {
                assert_eq!(buf, *content, "line {i}");
            }
            assert!(buf.len() <= max);
        }
    }

    #[test]
    fn capped_line_reader() {
        check_capped(b"", 4, &[(Line::End, b"")]);
        check_capped(
            b"ab\ncd",
            4,
            &[(Line::Read, b"ab"), (Line::Read, b"cd"), (Line::End, b"")],
        );
        check_capped(
            b"abcd\nabcde\nx\n",
            4,
            &[
                (Line::Read, b"abcd"),
                (Line::TooLong, b""),
                (Line::Read, b"x"),
                (Line::End, b""),
            ],
        );
        check_capped(
            b"\n\nabcdefgh",
            4,
            &[
                (Line::Read, b""),
                (Line::Read, b""),
                (Line::TooLong, b""),
                (Line::End, b""),
            ],
        );
    }
}
