//! The writer side: appends findings to `findings.jsonl` and rotates it by size.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{current_path, rotated_path};
use crate::error::Error;
use crate::finding::Finding;

/// The mode of the log folder when the sink creates it.
const DIR_MODE: u32 = 0o700;
/// The mode of every findings file.
const FILE_MODE: u32 = 0o600;

/// When to rotate `findings.jsonl` and how many old files to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before an append would take the current file past this many
    /// bytes. Must be at least 1. Default: 10 MiB.
    pub max_bytes: u64,
    /// How many rotated files (`findings.jsonl.1` …
    /// `findings.jsonl.<keep>`) are kept. 0 keeps none: rotation just
    /// starts the current file afresh. Default: 5.
    pub keep: usize,
}

impl Rotation {
    /// The default size limit: 10 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
    /// The default number of rotated files kept.
    pub const DEFAULT_KEEP: usize = 5;
}

impl Default for Rotation {
    fn default() -> Rotation {
        Rotation {
            max_bytes: Rotation::DEFAULT_MAX_BYTES,
            keep: Rotation::DEFAULT_KEEP,
        }
    }
}

/// Appends findings to `<dir>/findings.jsonl`, one line each, rotating by
/// size.
///
/// Durability and failure rules:
///
/// - Each line goes out in one buffer with one `write` call on an
///   `O_APPEND` file. There is no userspace buffer, so a `kill -9` loses at
///   most the line being written, and that line is torn, not interleaved.
///   [`FindingLog::sync`] forces the data to disk for a clean shutdown.
/// - If a previous run died mid-line (the file does not end in `\n`), the
///   next append starts with a `\n`, so the new line is never glued to the
///   torn one; the reader skips the torn line.
/// - Errors are returned, never swallowed. After a failed write the file is
///   closed; every append checks that the path still names the open file and
///   reopens it (recreating the folder if needed) otherwise. So once a full
///   disk or an unwritable folder is fixed, the next append succeeds.
/// - On `Err`, the line was not stored (at most a torn fragment, which the
///   next append fences off). Whether to retry is the caller's choice.
/// - Only regular files are written to. A FIFO, device or folder at the
///   path is refused, so the sink never blocks on open or changes the mode
///   of something that is not its own file.
#[derive(Debug)]
pub struct FindingLog {
    dir: PathBuf,
    path: PathBuf,
    rotation: Rotation,
    /// The open file, or `None` after a failure or a rotation.
    open: Option<OpenFile>,
}

/// The file the sink holds open, and what it knows about it.
#[derive(Debug)]
struct OpenFile {
    file: File,
    /// Device and inode, to notice the path being replaced or removed.
    id: (u64, u64),
    /// The size after the sink's own last write.
    size: u64,
    /// Whether the file is empty or ends in `\n`.
    at_line_start: bool,
}

impl FindingLog {
    /// Opens (creating if needed) `<dir>/findings.jsonl` for appending.
    ///
    /// Creates `dir` with mode 0700 if it is missing, and the file with mode
    /// 0600. An existing file with any other mode is set to 0600.
    pub fn open(dir: &Path, rotation: Rotation) -> Result<FindingLog, Error> {
        if rotation.max_bytes == 0 {
            return Err(Error::InvalidSetting {
                field: "rotation.max_bytes",
                reason: "must be at least 1".into(),
            });
        }
        let mut sink = FindingLog {
            dir: dir.to_path_buf(),
            path: current_path(dir),
            rotation,
            open: None,
        };
        sink.open = Some(sink.open_file()?);
        Ok(sink)
    }

    /// The path of the current findings file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rotation policy in use.
    pub fn rotation(&self) -> Rotation {
        self.rotation
    }

    /// Appends one finding as one line, rotating first if the line would
    /// take the current file past [`Rotation::max_bytes`]. A line longer than
    /// `max_bytes` is still written, alone in a fresh file.
    pub fn append(&mut self, finding: &Finding) -> Result<(), Error> {
        let line = finding.to_json_line();
        let line_len = u64::try_from(line.len())
            .unwrap_or(u64::MAX)
            .saturating_add(1);

        let mut open = self.take_checked()?;
        if open.size > 0 && open.size.saturating_add(line_len) > self.rotation.max_bytes {
            drop(open);
            self.rotate()?;
            open = self.open_file()?;
        }

        let mut buf = Vec::with_capacity(line.len() + 2);
        if !open.at_line_start {
            buf.push(b'\n');
        }
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        // One buffer, one write(2) on an O_APPEND file; `write_all` only
        // loops if the kernel takes less, which for a regular file means
        // the disk is full and the next call reports it.
        match open.file.write_all(&buf) {
            Ok(()) => {
                open.size = open
                    .size
                    .saturating_add(u64::try_from(buf.len()).unwrap_or(u64::MAX));
                open.at_line_start = true;
                self.open = Some(open);
                Ok(())
            }
            // The file is dropped: the next append reopens it and fences off
            // any torn fragment with a newline.
            Err(source) => Err(Error::io("append to", &self.path, source)),
        }
    }

    /// Forces written findings to disk. Appends already survive a crash of
    /// the process; this also covers a crash of the machine.
    pub fn sync(&mut self) -> Result<(), Error> {
        match &self.open {
            Some(open) => open
                .file
                .sync_data()
                .map_err(|source| Error::io("sync", &self.path, source)),
            None => Ok(()),
        }
    }

    /// Returns the open file if the path still names it, reopening otherwise.
    fn take_checked(&mut self) -> Result<OpenFile, Error> {
        if let Some(mut open) = self.open.take()
            && let Ok(meta) = fs::metadata(&self.path)
            && (meta.dev(), meta.ino()) == open.id
        {
            if meta.len() != open.size {
                // Someone else wrote to it: learn its real tail.
                open.size = meta.len();
                open.at_line_start = ends_at_line_start(&open.file, open.size)
                    .map_err(|source| Error::io("read", &self.path, source))?;
            }
            return Ok(open);
        }
        self.open_file()
    }

    /// Opens the current file for appending, creating the folder and file
    /// as needed, and learns its size and whether it ends mid-line.
    fn open_file(&self) -> Result<OpenFile, Error> {
        self.ensure_dir()?;
        // Refuse anything but a regular file before opening: opening a FIFO
        // would block, and the mode fix below must only touch our own file.
        if let Ok(meta) = fs::metadata(&self.path)
            && !meta.is_file()
        {
            return Err(not_a_file(&self.path));
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(&self.path)
            .map_err(|source| Error::io("open", &self.path, source))?;
        let meta = file
            .metadata()
            .map_err(|source| Error::io("inspect", &self.path, source))?;
        if !meta.is_file() {
            return Err(not_a_file(&self.path));
        }
        if meta.mode() & 0o777 != FILE_MODE {
            file.set_permissions(Permissions::from_mode(FILE_MODE))
                .map_err(|source| Error::io("restrict permissions of", &self.path, source))?;
        }
        let size = meta.len();
        let at_line_start = ends_at_line_start(&file, size)
            .map_err(|source| Error::io("read", &self.path, source))?;
        Ok(OpenFile {
            file,
            id: (meta.dev(), meta.ino()),
            size,
            at_line_start,
        })
    }

    /// Creates the log folder with mode 0700 if it does not exist.
    fn ensure_dir(&self) -> Result<(), Error> {
        if self.dir.is_dir() {
            return Ok(());
        }
        match DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&self.dir)
        {
            Ok(()) => {}
            Err(source) => return Err(Error::io("create folder", &self.dir, source)),
        }
        // The umask may have taken bits away; set the mode exactly.
        fs::set_permissions(&self.dir, Permissions::from_mode(DIR_MODE))
            .map_err(|source| Error::io("restrict permissions of", &self.dir, source))
    }

    /// Shifts `findings.jsonl.<n>` to `.<n+1>` (dropping the one past
    /// `keep`) and moves the current file to `.1`, or removes it when `keep`
    /// is 0. Rotated files past `keep`, left by a run with a larger `keep`,
    /// are removed.
    fn rotate(&mut self) -> Result<(), Error> {
        self.open = None;
        let keep = self.rotation.keep;
        if keep == 0 {
            remove_if_present(&self.path)?;
        } else {
            // Only shift files that exist: a huge `keep` costs nothing.
            let mut top = 0;
            while top < keep && rotated_path(&self.dir, top + 1).exists() {
                top += 1;
            }
            for n in (1..=top.min(keep - 1)).rev() {
                rename_if_present(&rotated_path(&self.dir, n), &rotated_path(&self.dir, n + 1))?;
            }
            rename_if_present(&self.path, &rotated_path(&self.dir, 1))?;
        }
        let mut stale = keep.saturating_add(1);
        while stale < usize::MAX && rotated_path(&self.dir, stale).exists() {
            remove_if_present(&rotated_path(&self.dir, stale))?;
            stale += 1;
        }
        Ok(())
    }
}

/// Whether the file of `size` bytes is empty or ends in `\n`.
fn ends_at_line_start(file: &File, size: u64) -> io::Result<bool> {
    if size == 0 {
        return Ok(true);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, size - 1)?;
    Ok(last[0] == b'\n')
}

fn not_a_file(path: &Path) -> Error {
    Error::io(
        "open",
        path,
        io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
    )
}

fn remove_if_present(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(source) if source.kind() != io::ErrorKind::NotFound => {
            Err(Error::io("remove", path, source))
        }
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> Result<(), Error> {
    match fs::rename(from, to) {
        Err(source) if source.kind() != io::ErrorKind::NotFound => {
            Err(Error::io("rotate", from, source))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::finding;
    use super::super::{FILE_NAME, read_all};
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o777
    }

    fn snippets(dir: &Path) -> Vec<String> {
        let report = read_all(dir).unwrap();
        assert_eq!(report.skipped_lines, 0);
        report.findings.into_iter().map(|f| f.snippet).collect()
    }

    /// Names of the files in `dir`, sorted.
    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn append_then_read_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        let mut sink = FindingLog::open(&dir, Rotation::default()).unwrap();
        let mut written = Vec::new();
        for i in 0..3 {
            let mut f = finding(&format!("s{i}"), 1_000 + i);
            f.fingerprint = Some(format!("fp{i}"));
            sink.append(&f).unwrap();
            written.push(f);
        }
        let text = fs::read_to_string(sink.path()).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with('\n'));
        assert_eq!(read_all(&dir).unwrap().findings, written);
    }

    #[test]
    fn creates_private_folder_and_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("b");
        let sink = FindingLog::open(&dir, Rotation::default()).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(sink.path()), 0o600);
    }

    #[test]
    fn tightens_a_loose_existing_file_and_keeps_its_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(FILE_NAME);
        fs::write(&path, format!("{}\n", finding("old", 1).to_json_line())).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let mut sink = FindingLog::open(tmp.path(), Rotation::default()).unwrap();
        assert_eq!(mode(&path), 0o600);
        sink.append(&finding("new", 2)).unwrap();
        assert_eq!(snippets(tmp.path()), ["old", "new"]);
    }

    #[test]
    fn rejects_zero_max_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: 0,
            keep: 1,
        };
        let err = FindingLog::open(tmp.path(), rotation).unwrap_err();
        assert!(err.to_string().contains("rotation.max_bytes"), "{err}");
    }

    #[test]
    fn refuses_a_path_that_is_not_a_regular_file() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join(FILE_NAME)).unwrap();
        let err = FindingLog::open(tmp.path(), Rotation::default()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    /// Appends findings `s0`, `s1`, … of one fixed line length to a sink with
    /// room for `per_file` lines per file and `keep` rotated files, then
    /// checks the files present and the snippets read back, oldest first.
    #[track_caller]
    fn check_rotation(
        count: usize,
        per_file: u64,
        keep: usize,
        files_left: &[&str],
        kept: &[&str],
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let line_len = finding("s0", 0).to_json_line().len() as u64 + 1;
        let rotation = Rotation {
            max_bytes: per_file * line_len,
            keep,
        };
        let mut sink = FindingLog::open(tmp.path(), rotation).unwrap();
        for i in 0..count {
            sink.append(&finding(&format!("s{i}"), 0)).unwrap();
            let size = fs::metadata(sink.path()).unwrap().len();
            assert!(size <= rotation.max_bytes, "append {i}: {size} bytes");
        }
        assert_eq!(files(tmp.path()), files_left);
        assert_eq!(snippets(tmp.path()), kept);
        for name in files_left {
            assert_eq!(mode(&tmp.path().join(name)), 0o600, "{name}");
        }
    }

    #[test]
    fn rotation_shifts_files_and_keeps_the_newest() {
        let cur = FILE_NAME;
        let r1 = "findings.jsonl.1";
        let r2 = "findings.jsonl.2";
        check_rotation(2, 2, 2, &[cur], &["s0", "s1"]);
        check_rotation(3, 2, 2, &[cur, r1], &["s0", "s1", "s2"]);
        check_rotation(
            6,
            2,
            2,
            &[cur, r1, r2],
            &["s0", "s1", "s2", "s3", "s4", "s5"],
        );
        check_rotation(7, 2, 2, &[cur, r1, r2], &["s2", "s3", "s4", "s5", "s6"]);
        check_rotation(9, 2, 2, &[cur, r1, r2], &["s4", "s5", "s6", "s7", "s8"]);
        check_rotation(5, 1, 1, &[cur, r1], &["s3", "s4"]);
        // keep = 0: rotation only starts the current file afresh.
        check_rotation(5, 2, 0, &[cur], &["s4"]);
        check_rotation(4, 2, 0, &[cur], &["s2", "s3"]);
    }

    #[test]
    fn oversize_line_is_written_alone_in_a_fresh_file() {
        let tmp = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: 64,
            keep: 3,
        };
        let mut sink = FindingLog::open(tmp.path(), rotation).unwrap();
        let big = "x".repeat(500);
        sink.append(&finding(&big, 0)).unwrap();
        sink.append(&finding(&big, 1)).unwrap();
        sink.append(&finding(&big, 2)).unwrap();
        assert_eq!(
            files(tmp.path()),
            [FILE_NAME, "findings.jsonl.1", "findings.jsonl.2"]
        );
        for name in files(tmp.path()) {
            let text = fs::read_to_string(tmp.path().join(name)).unwrap();
            assert_eq!(text.lines().count(), 1);
        }
        assert_eq!(read_all(tmp.path()).unwrap().findings.len(), 3);
    }

    #[test]
    fn rotation_removes_files_past_a_smaller_keep() {
        let tmp = tempfile::tempdir().unwrap();
        for n in 1..=4 {
            let text = format!("{}\n", finding(&format!("r{n}"), 0).to_json_line());
            fs::write(rotated_path(tmp.path(), n), text).unwrap();
        }
        let rotation = Rotation {
            max_bytes: 1,
            keep: 2,
        };
        let mut sink = FindingLog::open(tmp.path(), rotation).unwrap();
        sink.append(&finding("a", 0)).unwrap();
        sink.append(&finding("b", 0)).unwrap();
        assert_eq!(
            files(tmp.path()),
            [FILE_NAME, "findings.jsonl.1", "findings.jsonl.2"]
        );
        assert_eq!(snippets(tmp.path()), ["r1", "a", "b"]);
    }

    #[test]
    fn torn_last_line_is_fenced_off() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(FILE_NAME);
        let whole = finding("whole", 1).to_json_line();
        let torn = &finding("torn", 2).to_json_line()[..40];
        fs::write(&path, format!("{whole}\n{torn}")).unwrap();

        let mut sink = FindingLog::open(tmp.path(), Rotation::default()).unwrap();
        sink.append(&finding("next", 3)).unwrap();
        sink.append(&finding("after", 4)).unwrap();

        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1], torn);
        let report = read_all(tmp.path()).unwrap();
        assert_eq!(report.skipped_lines, 1);
        let got: Vec<&str> = report.findings.iter().map(|f| f.snippet.as_str()).collect();
        assert_eq!(got, ["whole", "next", "after"]);
    }

    #[test]
    fn notices_a_torn_tail_written_by_someone_else() {
        let tmp = tempfile::tempdir().unwrap();
        let mut sink = FindingLog::open(tmp.path(), Rotation::default()).unwrap();
        sink.append(&finding("a", 1)).unwrap();
        let mut other = OpenOptions::new().append(true).open(sink.path()).unwrap();
        other.write_all(b"{\"half\":").unwrap();
        sink.append(&finding("b", 2)).unwrap();
        let report = read_all(tmp.path()).unwrap();
        assert_eq!(report.skipped_lines, 1);
        assert_eq!(report.findings.len(), 2);
    }

    #[test]
    fn reopens_when_the_file_is_removed_or_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let mut sink = FindingLog::open(tmp.path(), Rotation::default()).unwrap();
        sink.append(&finding("a", 1)).unwrap();
        fs::remove_file(sink.path()).unwrap();
        sink.append(&finding("b", 2)).unwrap();
        assert_eq!(snippets(tmp.path()), ["b"]);
        assert_eq!(mode(sink.path()), 0o600);

        fs::rename(sink.path(), tmp.path().join("moved")).unwrap();
        fs::write(sink.path(), "").unwrap();
        sink.append(&finding("c", 3)).unwrap();
        assert_eq!(snippets(tmp.path()), ["c"]);
    }

    #[test]
    fn recreates_a_removed_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        let mut sink = FindingLog::open(&dir, Rotation::default()).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        sink.append(&finding("a", 1)).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(snippets(&dir), ["a"]);
    }

    /// A way to make appends to `dir` fail, and to undo it.
    enum Breakage {
        /// The folder is read-only and the file is gone.
        ReadOnlyFolder,
        /// A folder stands where the file should be.
        FolderAtFilePath,
    }

    impl Breakage {
        /// Breaks `dir`. `ReadOnlyFolder` only works without
        /// `CAP_DAC_OVERRIDE` (permission bits do not stop root); when it
        /// does not hold, `FolderAtFilePath` is used instead, so the failure
        /// path is exercised either way. Returns the breakage in effect.
        fn apply(self, dir: &Path) -> Breakage {
            let file = dir.join(FILE_NAME);
            if let Breakage::ReadOnlyFolder = self {
                fs::remove_file(&file).unwrap();
                fs::set_permissions(dir, Permissions::from_mode(0o500)).unwrap();
                let probe = dir.join("probe");
                if File::create(&probe).is_err() {
                    return Breakage::ReadOnlyFolder;
                }
                fs::remove_file(&probe).unwrap();
                fs::set_permissions(dir, Permissions::from_mode(0o700)).unwrap();
            }
            if file.exists() {
                fs::remove_file(&file).unwrap();
            }
            fs::create_dir(&file).unwrap();
            Breakage::FolderAtFilePath
        }

        fn undo(&self, dir: &Path) {
            match self {
                Breakage::ReadOnlyFolder => {
                    fs::set_permissions(dir, Permissions::from_mode(0o700)).unwrap();
                }
                Breakage::FolderAtFilePath => fs::remove_dir(dir.join(FILE_NAME)).unwrap(),
            }
        }
    }

    #[track_caller]
    fn check_failure_and_recovery(breakage: Breakage) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        let mut sink = FindingLog::open(&dir, Rotation::default()).unwrap();
        sink.append(&finding("before", 1)).unwrap();

        let applied = breakage.apply(&dir);
        let err = sink.append(&finding("lost", 2)).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(err.to_string().contains(FILE_NAME), "{err}");
        // Still failing, not silently succeeding into a dead file.
        assert!(sink.append(&finding("lost", 3)).is_err());

        applied.undo(&dir);
        sink.append(&finding("after", 4)).unwrap();
        assert_eq!(snippets(&dir), ["after"]);
        assert_eq!(mode(sink.path()), 0o600);
    }

    #[test]
    fn reports_an_unwritable_folder_and_recovers() {
        check_failure_and_recovery(Breakage::ReadOnlyFolder);
    }

    #[test]
    fn reports_a_blocked_file_path_and_recovers() {
        check_failure_and_recovery(Breakage::FolderAtFilePath);
    }
}
