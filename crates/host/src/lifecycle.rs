//! Single-instance lock, pid and run files, and starting and stopping the background service.
//!
//! The running service holds an exclusive `flock` on `run/lock` for its
//! whole life. The kernel drops it when the process dies, however it dies,
//! so "is it running?" is answered by the lock, never by a pid that may have
//! been reused. Run files (`pid`, `control.sock`, `listeners.json`) found
//! while nobody holds the lock are left over from a crash: they are stale
//! and removed.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::control::{self, Request};
use crate::error::Error;
use crate::paths::{PRIVATE_FILE_MODE, StatePaths, ensure_home, write_atomic};
use crate::status::ListenerStatus;

/// The line `run` prints on stdout once every listener is bound.
pub const READY_LINE_PREFIX: &str = "traffic-guardian ready:";
/// How long a second `run` waits for a lock that a status probe holds.
const LOCK_RETRY: Duration = Duration::from_secs(2);

/// The exclusive run lock, held for the life of the service. Dropping it
/// removes the run files and releases the lock.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    paths: StatePaths,
    /// What was cleaned up from a previous run.
    pub notes: Vec<String>,
}

impl RunLock {
    /// Takes the lock, cleans stale run files and writes the pid file.
    /// Fails with [`Error::AlreadyRunning`] if a live service holds it.
    pub fn acquire(paths: &StatePaths) -> Result<RunLock, Error> {
        ensure_home(paths)?;
        let lock_path = paths.lock_file();
        let file = open_lock(&lock_path)?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock)
                    if started.elapsed() < LOCK_RETRY && only_probes_hold(&file) =>
                {
                    // A status probe holds a shared lock for microseconds;
                    // a running service holds the exclusive one for good.
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::AlreadyRunning {
                        pid: read_pid(paths).unwrap_or(0),
                        home: paths.home.clone(),
                    });
                }
                Err(TryLockError::Error(source)) => {
                    return Err(Error::io("lock", &lock_path, source));
                }
            }
        }
        let notes = clean_stale(paths);
        write_atomic(
            &paths.pid_file(),
            format!("{}\n", std::process::id()).as_bytes(),
            PRIVATE_FILE_MODE,
        )?;
        Ok(RunLock {
            file,
            paths: paths.clone(),
            notes,
        })
    }

    /// Records the bound listeners in `run/listeners.json`.
    pub fn write_listeners(&self, listeners: &[ListenerStatus]) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(listeners)
            .map_err(|e| Error::io("encode", self.paths.listeners_file(), e.into()))?;
        write_atomic(
            &self.paths.listeners_file(),
            text.as_bytes(),
            PRIVATE_FILE_MODE,
        )
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        for path in [
            self.paths.pid_file(),
            self.paths.listeners_file(),
            self.paths.control_socket(),
        ] {
            let _ = fs::remove_file(path);
        }
        let _ = self.file.unlock();
    }
}

/// Whether the lock is held only shared (by status probes), not
/// exclusively (by a service): a shared lock can then still be taken.
fn only_probes_hold(file: &File) -> bool {
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            true
        }
        Err(_) => false,
    }
}

fn open_lock(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
        .map_err(|source| Error::io("open", path, source))
}

/// Removes run files left by a service that is gone. Returns what was
/// cleaned, for people.
fn clean_stale(paths: &StatePaths) -> Vec<String> {
    let pid = read_pid(paths);
    let mut removed = Vec::new();
    for path in [
        paths.pid_file(),
        paths.listeners_file(),
        paths.control_socket(),
    ] {
        if fs::remove_file(&path).is_ok() {
            removed.push(
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
    }
    if removed.is_empty() {
        return Vec::new();
    }
    let who = pid.map_or_else(|| "a previous run".to_owned(), |p| format!("pid {p}"));
    let note = format!(
        "cleaned stale run files of {who} (it did not stop cleanly): {}",
        removed.join(", ")
    );
    tracing::warn!("{note}");
    vec![note]
}

/// The pid in `run/pid`, if readable.
pub fn read_pid(paths: &StatePaths) -> Option<u32> {
    fs::read_to_string(paths.pid_file())
        .ok()
        .and_then(|t| t.trim().parse().ok())
}

/// The listeners in `run/listeners.json`, if readable.
pub fn read_listeners(paths: &StatePaths) -> Option<Vec<ListenerStatus>> {
    let text = fs::read_to_string(paths.listeners_file()).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether a service runs with this home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A live service holds the lock.
    Running {
        /// Its pid, from the pid file.
        pid: Option<u32>,
    },
    /// No service runs.
    NotRunning {
        /// What stale run files were cleaned.
        notes: Vec<String>,
    },
}

/// Asks the lock whether a service runs, cleaning stale run files when
/// none does.
pub fn probe(paths: &StatePaths) -> Result<Probe, Error> {
    let lock_path = paths.lock_file();
    if !lock_path.exists() {
        return Ok(Probe::NotRunning {
            notes: clean_stale_if_dir(paths),
        });
    }
    let file = File::open(&lock_path).map_err(|source| Error::io("open", &lock_path, source))?;
    match file.try_lock_shared() {
        Ok(()) => {
            let notes = clean_stale(paths);
            let _ = file.unlock();
            Ok(Probe::NotRunning { notes })
        }
        Err(TryLockError::WouldBlock) => Ok(Probe::Running {
            pid: read_pid(paths),
        }),
        Err(TryLockError::Error(source)) => Err(Error::io("lock", &lock_path, source)),
    }
}

fn clean_stale_if_dir(paths: &StatePaths) -> Vec<String> {
    if paths.run_dir.is_dir() {
        clean_stale(paths)
    } else {
        Vec::new()
    }
}

/// Waits until no process holds the run lock, up to `deadline`. Returns
/// whether it was released. Blocks on the lock itself, so it returns as
/// soon as the service is gone.
pub fn wait_released(paths: &StatePaths, deadline: Duration) -> Result<bool, Error> {
    let lock_path = paths.lock_file();
    let file = match File::open(&lock_path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(source) => return Err(Error::io("open", &lock_path, source)),
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let locked = file.lock_shared();
        let _ = file.unlock();
        let _ = tx.send(locked.is_ok());
    });
    match rx.recv_timeout(deadline) {
        Ok(released) => Ok(released),
        Err(_) => Ok(false),
    }
}

/// What `start` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The service's pid.
    pub pid: u32,
    /// Its bound listeners.
    pub listeners: Vec<ListenerStatus>,
    /// How long it took to become ready.
    pub ready_after: Duration,
    /// Stale run files of a crashed service that were cleaned first.
    pub notes: Vec<String>,
}

/// Starts `exe run <args…>` in the background, in its own process group,
/// stdin from `/dev/null`, stderr to `run/service.log`, and waits until it
/// prints its ready line (every listener bound), at most `timeout`.
///
/// Fails if a service already runs, or if the child exits or stays silent;
/// the error then carries the end of its log.
pub fn start_background(
    exe: &Path,
    args: &[OsString],
    paths: &StatePaths,
    timeout: Duration,
) -> Result<Started, Error> {
    let notes = match probe(paths)? {
        Probe::Running { pid } => {
            return Err(Error::AlreadyRunning {
                pid: pid.unwrap_or(0),
                home: paths.home.clone(),
            });
        }
        Probe::NotRunning { notes } => notes,
    };
    ensure_home(paths)?;
    let log_path = paths.service_log();
    if log_path.exists() {
        let _ = fs::rename(&log_path, paths.run_dir.join("service.log.1"));
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(PRIVATE_FILE_MODE)
        .open(&log_path)
        .map_err(|source| Error::io("open", &log_path, source))?;
    let began = Instant::now();
    let mut child = Command::new(exe)
        .arg("run")
        .args(args)
        .env("NANOCLAW_TRAFFIC_GUARDIAN_HOME", &paths.home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|source| Error::io("start", exe, source))?;
    let Some(stdout) = child.stdout.take() else {
        return Err(Error::Lifecycle {
            what: "the service's stdout could not be read".into(),
            detail: String::new(),
        });
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let got = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(got);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(line)) if line.starts_with(READY_LINE_PREFIX) => {
            let listeners = read_listeners(paths).unwrap_or_default();
            Ok(Started {
                pid: child.id(),
                listeners,
                ready_after: began.elapsed(),
                notes,
            })
        }
        Ok(_) => {
            let status = child.wait().map_or_else(
                |e| format!("cannot learn its exit status: {e}"),
                |s| s.to_string(),
            );
            Err(Error::Lifecycle {
                what: format!("the service exited before it was ready ({status})"),
                detail: tail(&log_path, 20),
            })
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(Error::Lifecycle {
                what: format!(
                    "the service was not ready within {}s and was stopped",
                    timeout.as_secs()
                ),
                detail: tail(&log_path, 20),
            })
        }
    }
}

/// What `stop` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// The pid that stopped.
    pub pid: Option<u32>,
    /// How it was asked: `control socket` or `signal`.
    pub via: &'static str,
}

/// Asks the running service to stop (over the control socket, or with
/// SIGTERM/SIGINT if the socket does not answer) and waits until it has
/// exited, at most `deadline`.
pub fn stop(paths: &StatePaths, graceful: bool, deadline: Duration) -> Result<Stopped, Error> {
    let pid = match probe(paths)? {
        Probe::Running { pid } => pid,
        Probe::NotRunning { .. } => {
            return Err(Error::NotRunning {
                home: paths.home.clone(),
            });
        }
    };
    let asked = control::request(
        &paths.control_socket(),
        &Request::Stop { graceful },
        Duration::from_secs(5),
    );
    let via = match asked {
        Ok(_) => "control socket",
        Err(err) => {
            tracing::warn!(error = %err, "control socket did not answer; sending a signal");
            let Some(pid) = pid
                .and_then(|p| i32::try_from(p).ok())
                .and_then(rustix::process::Pid::from_raw)
            else {
                return Err(Error::Lifecycle {
                    what: format!("cannot stop the service: {err}, and its pid file is unreadable"),
                    detail: String::new(),
                });
            };
            let signal = if graceful {
                rustix::process::Signal::TERM
            } else {
                rustix::process::Signal::INT
            };
            rustix::process::kill_process(pid, signal).map_err(|e| Error::Lifecycle {
                what: format!("cannot signal pid {}: {e}", pid.as_raw_nonzero()),
                detail: String::new(),
            })?;
            "signal"
        }
    };
    if wait_released(paths, deadline)? {
        Ok(Stopped { pid, via })
    } else {
        Err(Error::Lifecycle {
            what: format!(
                "the service (pid {}) did not stop within {}s",
                pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                deadline.as_secs()
            ),
            detail: tail(&paths.service_log(), 10),
        })
    }
}

/// The last `lines` lines of `path` (at most 64 KiB read).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(64 * 1024);
    if file.seek(SeekFrom::Start(from)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The path of the binary to start, for `start`: the current executable.
pub fn current_exe() -> Result<PathBuf, Error> {
    std::env::current_exe().map_err(|source| Error::io("find", "the current executable", source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn paths(home: &Path) -> StatePaths {
        StatePaths::with_home(home.to_owned(), &Config::default())
    }

    #[test]
    fn lock_is_exclusive_and_drop_cleans_run_files() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = paths(tmp.path());
        assert_eq!(probe(&paths).unwrap(), Probe::NotRunning { notes: vec![] });
        let lock = RunLock::acquire(&paths).unwrap();
        assert_eq!(read_pid(&paths), Some(std::process::id()));
        assert_eq!(
            probe(&paths).unwrap(),
            Probe::Running {
                pid: Some(std::process::id())
            }
        );
        // The same process opening the file again gets a separate lock.
        assert!(matches!(
            RunLock::acquire(&paths),
            Err(Error::AlreadyRunning { .. })
        ));
        assert!(!wait_released(&paths, Duration::from_millis(50)).unwrap());
        drop(lock);
        assert!(wait_released(&paths, Duration::from_secs(5)).unwrap());
        assert!(!paths.pid_file().exists());
        assert_eq!(probe(&paths).unwrap(), Probe::NotRunning { notes: vec![] });
    }

    #[test]
    fn stale_run_files_are_detected_and_cleaned() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = paths(tmp.path());
        ensure_home(&paths).unwrap();
        fs::write(paths.lock_file(), "").unwrap();
        fs::write(paths.pid_file(), "4242\n").unwrap();
        fs::write(paths.control_socket(), "").unwrap();
        let Probe::NotRunning { notes } = probe(&paths).unwrap() else {
            panic!("nobody holds the lock");
        };
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("pid 4242"), "{notes:?}");
        assert!(!paths.pid_file().exists() && !paths.control_socket().exists());

        fs::write(paths.pid_file(), "4243\n").unwrap();
        let lock = RunLock::acquire(&paths).unwrap();
        assert!(lock.notes[0].contains("pid 4243"), "{:?}", lock.notes);
    }

    #[test]
    fn stop_without_a_service_says_not_running() {
        let tmp = tempfile::tempdir().unwrap();
        let err = stop(&paths(tmp.path()), true, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, Error::NotRunning { .. }), "{err}");
    }

    #[test]
    fn a_child_that_dies_early_is_reported_with_its_log() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = paths(tmp.path());
        let script = tmp.path().join("fake.sh");
        fs::write(
            &script,
            "#!/bin/sh\necho \"cannot bind: address in use\" >&2\nexit 3\n",
        )
        .unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut fs::metadata(&script).unwrap().permissions(),
            0o755,
        );
        fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let err = start_background(&script, &[], &paths, Duration::from_secs(30)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exited before it was ready"), "{text}");
        assert!(text.contains("address in use"), "{text}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("log");
        fs::write(&file, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&file, 2), "b\nc");
        assert_eq!(tail(&tmp.path().join("none"), 2), "");
    }
}
