//! The host-side folder where task entries that cannot be answered are
//! moved: no valid request id, not a regular file, or refused on open.
//!
//! Layout: `<quarantine>/<group>/<unix millis>-<random>-<sanitised name>`.
//! The folder is mode 0700 and must lie outside every group folder. Moving is
//! a `renameat` of the directory entry: nothing is opened or read, so FIFOs,
//! devices and huge files cost nothing. When the entry cannot be moved (the
//! quarantine is on another filesystem) or the group already has
//! `max_per_group` entries there, it is deleted instead. Directories are
//! never moved into the host's folder (a container holding a descriptor
//! inside one could keep filling it there): an empty one is removed, any
//! other is left and skipped from then on.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::AtFlags;

use crate::fs_safety::{self, EntryName};
use crate::group::GroupName;
use crate::protocol::random_u64;

/// The mode of the quarantine folder and its group folders.
const DIR_MODE: u32 = 0o700;

/// What happened to a quarantined entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Moved to this path.
    Moved(PathBuf),
    /// Deleted, for the reason given.
    Removed(&'static str),
    /// Neither could be done.
    Left(String),
}

/// The quarantine folder and how full each group's part of it is.
#[derive(Debug)]
pub(crate) struct Quarantine {
    dir: PathBuf,
    max_per_group: usize,
    /// Entries per group, counted on first use.
    counts: HashMap<GroupName, usize>,
}

impl Quarantine {
    /// Creates the folder (mode 0700) if needed.
    pub(crate) fn open(dir: &Path, max_per_group: usize) -> io::Result<Quarantine> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(DIR_MODE))?;
        Ok(Quarantine {
            dir: dir.to_owned(),
            max_per_group,
            counts: HashMap::new(),
        })
    }

    /// Moves `name` out of `from` into the group's quarantine folder, or
    /// deletes it when that is not possible.
    pub(crate) fn put(&mut self, from: impl AsFd, name: &EntryName, group: &GroupName) -> Outcome {
        let from = from.as_fd();
        let source = match name.as_c_string() {
            Ok(source) => source,
            Err(err) => return Outcome::Left(err.to_string()),
        };
        let is_dir = |dir: BorrowedFd<'_>, name: &CStr| {
            rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|stat| fs_safety::Kind::of(&stat) == fs_safety::Kind::Directory)
        };
        if is_dir(from, source.as_c_str()) {
            return match rustix::fs::unlinkat(from, source.as_c_str(), AtFlags::REMOVEDIR) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => Outcome::Removed("it is a folder"),
                Err(err) => Outcome::Left(format!("it is a folder that cannot be removed: {err}")),
            };
        }
        let full = match self.group_dir(group) {
            Ok((dir, count)) => {
                if count < self.max_per_group {
                    let target = format!(
                        "{}-{:08x}-{}",
                        traffic_guardian_core::Timestamp::now().unix_millis(),
                        random_u64() as u32,
                        sanitise(name)
                    );
                    match rustix::fs::renameat(from, source.as_c_str(), &dir, target.as_str()) {
                        // Swapped for a folder between the check and the
                        // move: put it back where it came from.
                        Ok(()) if is_dir(dir.as_fd(), &cstr(&target)) => {
                            return match rustix::fs::renameat(
                                &dir,
                                target.as_str(),
                                from,
                                source.as_c_str(),
                            ) {
                                Ok(()) => Outcome::Left("it turned into a folder".into()),
                                Err(err) => Outcome::Left(format!(
                                    "it turned into a folder, moved to {} and not back: {err}",
                                    self.dir.join(group.as_str()).join(&target).display()
                                )),
                            };
                        }
                        Ok(()) => {
                            *self.counts.entry(group.clone()).or_insert(0) += 1;
                            return Outcome::Moved(self.dir.join(group.as_str()).join(target));
                        }
                        Err(_) => "it could not be moved there",
                    }
                } else {
                    "the group's quarantine is full"
                }
            }
            Err(_) => "the quarantine folder is unusable",
        };
        match rustix::fs::unlinkat(from, source.as_c_str(), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Outcome::Removed(full),
            Err(_) => match rustix::fs::unlinkat(from, source.as_c_str(), AtFlags::REMOVEDIR) {
                Ok(()) => Outcome::Removed(full),
                Err(err) => Outcome::Left(format!("{full}, and removing it failed: {err}")),
            },
        }
    }

    /// The group's folder, created if needed, and how many entries it holds.
    fn group_dir(&mut self, group: &GroupName) -> io::Result<(OwnedFd, usize)> {
        let root = fs_safety::open_dir(&self.dir)?;
        let dir = fs_safety::ensure_subdir(&root, group.as_str(), DIR_MODE)?;
        let count = match self.counts.get(group) {
            Some(count) => *count,
            None => {
                let (names, _) = fs_safety::list(&dir, self.max_per_group)?;
                self.counts.insert(group.clone(), names.len());
                names.len()
            }
        };
        Ok((dir, count))
    }
}

/// `text` (made of safe characters only) as a C string.
fn cstr(text: &str) -> CString {
    CString::new(text).unwrap_or_default()
}

/// The entry name reduced to at most 64 characters of `[A-Za-z0-9._-]`,
/// without a leading dot.
fn sanitise(name: &EntryName) -> String {
    let bytes = match name {
        EntryName::Text(text) => text.as_bytes().to_vec(),
        EntryName::Raw(raw) => raw.as_bytes().to_vec(),
    };
    let mut clean: String = bytes
        .iter()
        .take(64)
        .map(|&b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                char::from(b)
            } else {
                '_'
            }
        })
        .collect();
    if clean.starts_with('.') {
        clean.replace_range(..1, "_");
    }
    if clean.is_empty() {
        clean.push('_');
    }
    clean
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn group() -> GroupName {
        GroupName::new("team-a").unwrap()
    }

    #[test]
    fn moves_entries_without_opening_them() {
        let tasks = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let qdir = host.path().join("quarantine");
        let mut quarantine = Quarantine::open(&qdir, 10).unwrap();
        let mode = std::fs::metadata(&qdir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        symlink("/etc/shadow", tasks.path().join("evil.json")).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(tasks.path().join("pipe.json"))
            .status()
            .unwrap();
        assert!(status.success());
        let from = fs_safety::open_dir(tasks.path()).unwrap();
        for name in ["evil.json", "pipe.json"] {
            let outcome = quarantine.put(&from, &EntryName::Text(name.into()), &group());
            let Outcome::Moved(path) = outcome else {
                panic!("{name}: {outcome:?}")
            };
            assert!(path.starts_with(qdir.join("team-a")), "{path:?}");
            assert!(std::fs::symlink_metadata(&path).is_ok());
        }
        assert_eq!(std::fs::read_dir(tasks.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_full_group_quarantine_deletes_instead() {
        let tasks = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let mut quarantine = Quarantine::open(&host.path().join("q"), 2).unwrap();
        let from = fs_safety::open_dir(tasks.path()).unwrap();
        let mut outcomes = Vec::new();
        for i in 0..4 {
            let name = format!("junk{i}");
            std::fs::write(tasks.path().join(&name), b"x").unwrap();
            outcomes.push(quarantine.put(&from, &EntryName::Text(name), &group()));
        }
        assert!(matches!(outcomes[0], Outcome::Moved(_)));
        assert!(matches!(outcomes[1], Outcome::Moved(_)));
        assert!(matches!(outcomes[2], Outcome::Removed(_)));
        assert!(matches!(outcomes[3], Outcome::Removed(_)));
        assert_eq!(std::fs::read_dir(tasks.path()).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_dir(host.path().join("q/team-a"))
                .unwrap()
                .count(),
            2
        );
    }

    #[test]
    fn names_are_sanitised() {
        let check = |name: &str, expected: &str| {
            assert_eq!(sanitise(&EntryName::Text(name.into())), expected);
        };
        check("ok-1.json", "ok-1.json");
        check(".hidden", "_hidden");
        check("a b/c", "a_b_c");
        check("", "_");
        assert_eq!(sanitise(&EntryName::Text("x".repeat(100))).len(), 64);
    }
}
