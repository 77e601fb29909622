//! File access in folders a container can write to: every step is relative
//! to an open directory descriptor and refuses to follow symlinks, so a
//! planted link or a swapped folder makes the operation fail instead of
//! reaching outside the group folder.
//!
//! The rules:
//! - Directories below a trusted root are opened with `O_NOFOLLOW |
//!   O_DIRECTORY`, one component at a time.
//! - A file's type is checked with `lstat` before it is opened, so FIFOs and
//!   devices are never opened on purpose. Against a file swapped in after
//!   the `lstat`: on Linux the name is opened `O_PATH` (which opens nothing),
//!   checked with `fstat` (same inode, regular file, one link), and only
//!   then is that inode opened for reading; elsewhere files are opened
//!   `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY` and checked the same way before a
//!   byte is read.
//! - Reads are capped.
//! - Writes go to a fresh `.<name>.tmp-<random>` created with `O_CREAT |
//!   O_EXCL | O_NOFOLLOW`, mode 0644, then renamed into place within the same
//!   directory descriptor.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, Stat};

use crate::protocol::random_u64;

/// The mode of files the guardian writes for a container to read.
pub(crate) const FILE_MODE: u32 = 0o644;

/// What a directory entry is, by `lstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Other,
}

impl Kind {
    pub(crate) fn of(stat: &Stat) -> Kind {
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => Kind::Regular,
            FileType::Directory => Kind::Directory,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            _ => Kind::Other,
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::Regular => "a regular file",
            Kind::Directory => "a directory",
            Kind::Symlink => "a symlink",
            Kind::Fifo => "a FIFO",
            Kind::Other => "a device or socket",
        }
    }
}

/// Opens a trusted directory by path (symlinks in it are followed: the path
/// comes from the host's own configuration or the container's own view).
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the directory `name` in `parent` without following a symlink.
/// A symlink gives `ELOOP` (or `ENOTDIR`), a file `ENOTDIR`.
pub(crate) fn open_subdir(parent: impl AsFd, name: &str) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the directory `name` in `parent`, creating it with `mode` first if
/// it does not exist. Never follows a symlink.
pub(crate) fn ensure_subdir(parent: impl AsFd, name: &str, mode: u32) -> io::Result<OwnedFd> {
    let parent = parent.as_fd();
    match open_subdir(parent, name) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(mode)) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => {}
                Err(err) => return Err(err.into()),
            }
            let dir = open_subdir(parent, name)?;
            // Make the mode independent of the process umask.
            rustix::fs::fchmod(&dir, Mode::from_raw_mode(mode))?;
            Ok(dir)
        }
        other => other,
    }
}

/// `lstat` of `name` in `dir`.
pub(crate) fn lstat_at(dir: impl AsFd, name: &str) -> io::Result<Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// Whether an I/O error says a symlink or a non-directory was met where a
/// directory was wanted.
pub(crate) fn is_link_refusal(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error().map(rustix::io::Errno::from_raw_os_error),
        Some(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR)
    )
}

/// Why a file was not read.
#[derive(Debug)]
pub(crate) enum ReadRefusal {
    /// It vanished, or the system refused.
    Io(io::Error),
    /// It is not a regular file.
    NotRegular(Kind),
    /// It was replaced between `lstat` and `open`.
    Replaced,
    /// It has more than one hard link.
    Linked,
    /// It holds more than the cap.
    TooLarge,
}

/// The size of a stat'ed file in bytes.
pub(crate) fn size_of(stat: &Stat) -> u64 {
    u64::try_from(stat.st_size).unwrap_or(0)
}

/// The modification time of a stat'ed file, in seconds since the epoch.
pub(crate) fn mtime_secs(stat: &Stat) -> i64 {
    lossless_i64(stat.st_mtime)
}

/// Widens a platform integer (whose width differs between systems).
fn lossless_i64<T: TryInto<i64>>(value: T) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// Reads the regular file `name` in `dir`, at most `cap` bytes. `seen` is
/// the `lstat` taken before: the opened file must be that inode, and
/// `lstat` must have said it is a regular file with one link.
pub(crate) fn read_regular(
    dir: impl AsFd,
    name: &str,
    seen: &Stat,
    cap: u64,
) -> Result<Vec<u8>, ReadRefusal> {
    let kind = Kind::of(seen);
    if kind != Kind::Regular {
        return Err(ReadRefusal::NotRegular(kind));
    }
    if seen.st_nlink > 1 {
        return Err(ReadRefusal::Linked);
    }
    if size_of(seen) > cap {
        return Err(ReadRefusal::TooLarge);
    }
    let fd = open_seen(dir.as_fd(), name, seen)?;
    read_capped(File::from(fd), cap)
}

/// Opens `name` for reading only if it is still the regular, singly linked
/// file `seen` describes.
///
/// On Linux the name is first opened with `O_PATH`, which resolves it
/// without opening the file itself (no device driver or FIFO is touched);
/// only once that descriptor is checked is the same inode opened for
/// reading, through `/proc/self/fd`. So a device node swapped in between
/// `lstat` and `open` is never opened. Elsewhere (or without `/proc`) the
/// file is opened `O_NONBLOCK | O_NOCTTY` and checked before a byte is read.
fn open_seen(dir: BorrowedFd<'_>, name: &str, seen: &Stat) -> Result<OwnedFd, ReadRefusal> {
    #[cfg(target_os = "linux")]
    {
        let path_fd = rustix::fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| ReadRefusal::Io(err.into()))?;
        check_same(&path_fd, seen)?;
        let link = format!("/proc/self/fd/{}", path_fd.as_raw_fd());
        match rustix::fs::open(
            link.as_str(),
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                check_same(&fd, seen)?;
                return Ok(fd);
            }
            // No /proc: fall back to the portable open below.
            Err(rustix::io::Errno::NOENT) => {}
            Err(err) => return Err(ReadRefusal::Io(err.into())),
        }
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| ReadRefusal::Io(err.into()))?;
    check_same(&fd, seen)?;
    Ok(fd)
}

/// The open descriptor `fd` is the inode `seen` describes, a regular file
/// with one link.
fn check_same(fd: impl AsFd, seen: &Stat) -> Result<(), ReadRefusal> {
    let opened = rustix::fs::fstat(fd).map_err(|err| ReadRefusal::Io(err.into()))?;
    if opened.st_ino != seen.st_ino || opened.st_dev != seen.st_dev {
        return Err(ReadRefusal::Replaced);
    }
    let kind = Kind::of(&opened);
    if kind != Kind::Regular {
        return Err(ReadRefusal::NotRegular(kind));
    }
    if opened.st_nlink > 1 {
        return Err(ReadRefusal::Linked);
    }
    Ok(())
}

/// Reads at most `cap` bytes; more is [`ReadRefusal::TooLarge`].
fn read_capped(file: File, cap: u64) -> Result<Vec<u8>, ReadRefusal> {
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadRefusal::Io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadRefusal::TooLarge);
    }
    Ok(bytes)
}

/// Writes `bytes` to `name` in `dir` atomically: a reader sees the old
/// entry or the complete new file, never a part. An existing `name`
/// (including a planted symlink) is replaced, not followed.
pub(crate) fn write_atomic(dir: impl AsFd, name: &str, bytes: &[u8]) -> io::Result<()> {
    let dir = dir.as_fd();
    let temp = format!(".{name}.tmp-{:016x}", random_u64());
    let fd = rustix::fs::openat(
        dir,
        temp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(FILE_MODE),
    )?;
    let written = (|| -> io::Result<()> {
        // The create mode is masked by the umask; make it exact.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(FILE_MODE))?;
        let mut file = File::from(fd);
        file.write_all(bytes)?;
        file.flush()?;
        drop(file);
        rustix::fs::renameat(dir, temp.as_str(), dir, name)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = rustix::fs::unlinkat(dir, temp.as_str(), AtFlags::empty());
    }
    written
}

/// Removes the non-directory `name` in `dir`. A missing entry is not an
/// error.
pub(crate) fn remove(dir: impl AsFd, name: &str) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// A directory entry's name: UTF-8 text, or raw bytes that are not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryName {
    Text(String),
    Raw(CString),
}

impl EntryName {
    /// The name for logs.
    pub(crate) fn display(&self) -> String {
        match self {
            EntryName::Text(text) => format!("{text:?}"),
            EntryName::Raw(raw) => format!("{:?}", raw.to_string_lossy()),
        }
    }

    pub(crate) fn as_c_string(&self) -> io::Result<CString> {
        match self {
            EntryName::Text(text) => CString::new(text.as_str())
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err)),
            EntryName::Raw(raw) => Ok(raw.clone()),
        }
    }
}

/// The names in `dir`, without `.` and `..`, reading at most `max` entries.
/// The second value says whether the listing stopped at `max`.
pub(crate) fn list(dir: impl AsFd, max: usize) -> io::Result<(Vec<EntryName>, bool)> {
    let mut names = Vec::new();
    let mut entries = rustix::fs::Dir::read_from(dir)?;
    let mut read = 0usize;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let raw = entry.file_name();
        let bytes = raw.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        if read == max {
            return Ok((names, true));
        }
        read += 1;
        names.push(match std::str::from_utf8(bytes) {
            Ok(text) => EntryName::Text(text.to_owned()),
            Err(_) => EntryName::Raw(raw.to_owned()),
        });
    }
    Ok((names, false))
}

/// Whether the entry `name` in `dir` is still the folder `opened` was
/// opened from, compared by device and inode without following anything:
/// a folder swapped for a symlink (or another folder) after it was opened
/// is caught, and no path a container controls is ever resolved.
pub(crate) fn still_at(dir: impl AsFd, name: &str, opened: impl AsFd) -> io::Result<bool> {
    let now = lstat_at(dir, name)?;
    let held = rustix::fs::fstat(opened)?;
    Ok(Kind::of(&now) == Kind::Directory && now.st_dev == held.st_dev && now.st_ino == held.st_ino)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn subdirs_refuse_symlinks() {
        let t = tmp();
        std::fs::create_dir(t.path().join("real")).unwrap();
        symlink(t.path().join("real"), t.path().join("link")).unwrap();
        std::fs::write(t.path().join("file"), b"x").unwrap();
        let root = open_dir(t.path()).unwrap();
        assert!(open_subdir(&root, "real").is_ok());
        let err = open_subdir(&root, "link").unwrap_err();
        assert!(is_link_refusal(&err), "{err}");
        let err = open_subdir(&root, "file").unwrap_err();
        assert!(is_link_refusal(&err), "{err}");
        let err = ensure_subdir(&root, "link", 0o755).unwrap_err();
        assert!(is_link_refusal(&err), "{err}");
        let made = ensure_subdir(&root, "made", 0o755);
        assert!(made.is_ok());
        let mode = std::fs::metadata(t.path().join("made"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn reads_refuse_links_fifos_big_and_swapped_files() {
        let t = tmp();
        let root = open_dir(t.path()).unwrap();
        std::fs::write(t.path().join("ok"), b"hello").unwrap();
        std::fs::write(t.path().join("big"), vec![b'x'; 100]).unwrap();
        symlink("/etc/passwd", t.path().join("link")).unwrap();
        std::fs::hard_link(t.path().join("ok"), t.path().join("hard")).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(t.path().join("fifo"))
            .status()
            .unwrap();
        assert!(status.success());

        let read = |name: &str, cap| {
            let stat = lstat_at(&root, name).unwrap();
            read_regular(&root, name, &stat, cap)
        };
        // `ok` and `hard` share an inode with two links now.
        assert!(matches!(read("ok", 64), Err(ReadRefusal::Linked)));
        std::fs::remove_file(t.path().join("hard")).unwrap();
        assert_eq!(read("ok", 64).unwrap(), b"hello");
        assert_eq!(read("ok", 5).unwrap(), b"hello");
        assert!(matches!(read("ok", 4), Err(ReadRefusal::TooLarge)));
        assert!(matches!(read("big", 64), Err(ReadRefusal::TooLarge)));
        assert!(matches!(
            read("link", 64),
            Err(ReadRefusal::NotRegular(Kind::Symlink))
        ));
        assert!(matches!(
            read("fifo", 64),
            Err(ReadRefusal::NotRegular(Kind::Fifo))
        ));

        // Swapped between lstat and open: a different inode is refused.
        let stat = lstat_at(&root, "ok").unwrap();
        // The new file exists before the old one goes, so its inode differs.
        std::fs::write(t.path().join("ok2"), b"other").unwrap();
        std::fs::rename(t.path().join("ok2"), t.path().join("ok")).unwrap();
        std::fs::write(t.path().join("keep"), b"").unwrap();
        assert!(matches!(
            read_regular(&root, "ok", &stat, 64),
            Err(ReadRefusal::Replaced)
        ));
        // A FIFO swapped in after lstat is refused without hanging (it may
        // even reuse the freed inode number: then its type gives it away).
        let stat = lstat_at(&root, "ok").unwrap();
        std::fs::remove_file(t.path().join("ok")).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(t.path().join("ok"))
            .status()
            .unwrap();
        assert!(status.success());
        assert!(matches!(
            read_regular(&root, "ok", &stat, 64),
            Err(ReadRefusal::Replaced | ReadRefusal::NotRegular(Kind::Fifo))
        ));
        // A symlink planted after lstat is never followed: Linux's O_PATH
        // open holds the link itself (another inode, or the freed one
        // reused as a link), elsewhere the no-follow open fails.
        let stat = lstat_at(&root, "big").unwrap();
        std::fs::remove_file(t.path().join("big")).unwrap();
        symlink(t.path().join("keep"), t.path().join("big")).unwrap();
        assert!(matches!(
            read_regular(&root, "big", &stat, 1000),
            Err(ReadRefusal::Replaced
                | ReadRefusal::NotRegular(Kind::Symlink)
                | ReadRefusal::Io(_))
        ));
    }

    #[test]
    fn atomic_writes_replace_planted_symlinks_instead_of_following_them() {
        let t = tmp();
        let outside = tmp();
        let target = outside.path().join("victim.json");
        std::fs::write(&target, b"precious").unwrap();
        std::fs::create_dir(t.path().join("results")).unwrap();
        symlink(&target, t.path().join("results/r.json")).unwrap();
        let dir = open_dir(&t.path().join("results")).unwrap();
        write_atomic(&dir, "r.json", b"{}").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        let meta = std::fs::symlink_metadata(t.path().join("results/r.json")).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        assert_eq!(
            std::fs::read(t.path().join("results/r.json")).unwrap(),
            b"{}"
        );
        // No temp file is left behind.
        let names: Vec<_> = std::fs::read_dir(t.path().join("results"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["r.json"]);
    }

    #[test]
    fn atomic_write_onto_a_directory_fails_and_cleans_up() {
        let t = tmp();
        std::fs::create_dir_all(t.path().join("r.json/inner")).unwrap();
        let dir = open_dir(t.path()).unwrap();
        assert!(write_atomic(&dir, "r.json", b"{}").is_err());
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["r.json"]);
    }

    #[test]
    fn listing_is_bounded_and_keeps_raw_names() {
        let t = tmp();
        for i in 0..5 {
            std::fs::write(t.path().join(format!("f{i}")), b"").unwrap();
        }
        let dir = open_dir(t.path()).unwrap();
        let (names, more) = list(&dir, 10).unwrap();
        assert_eq!((names.len(), more), (5, false));
        let (names, more) = list(&dir, 3).unwrap();
        assert_eq!((names.len(), more), (3, true));
        let (names, more) = list(&dir, 5).unwrap();
        assert_eq!((names.len(), more), (5, false));

        use std::os::unix::ffi::OsStrExt;
        let bad = std::ffi::OsStr::from_bytes(b"bad\xff.json");
        std::fs::write(t.path().join(bad), b"").unwrap();
        let (names, _) = list(&dir, 10).unwrap();
        let raw: Vec<_> = names
            .iter()
            .filter(|n| matches!(n, EntryName::Raw(_)))
            .collect();
        assert_eq!(raw.len(), 1);
        assert_eq!(raw[0].as_c_string().unwrap().as_bytes(), b"bad\xff.json");
    }

    #[test]
    fn a_folder_swapped_after_it_was_opened_is_caught_without_following_it() {
        let t = tmp();
        let outside = tmp();
        let root = open_dir(t.path()).unwrap();
        std::fs::create_dir(t.path().join("tasks")).unwrap();
        let tasks = open_subdir(&root, "tasks").unwrap();
        assert!(still_at(&root, "tasks", &tasks).unwrap());
        // Swapped for a symlink to a folder outside.
        std::fs::rename(t.path().join("tasks"), t.path().join("old")).unwrap();
        symlink(outside.path(), t.path().join("tasks")).unwrap();
        assert!(!still_at(&root, "tasks", &tasks).unwrap());
        // Swapped for another folder.
        std::fs::remove_file(t.path().join("tasks")).unwrap();
        std::fs::create_dir(t.path().join("tasks")).unwrap();
        assert!(!still_at(&root, "tasks", &tasks).unwrap());
    }
}
