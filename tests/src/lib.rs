//! Shared fixtures for the integration tests (see `integration/`).
//!
//! A fixture that cannot be set up is a failed test, so this crate may
//! unwrap and panic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a fixture that cannot be built fails the test"
)]

pub mod canary;
pub mod host;
pub mod load;
pub mod python;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The target directory this test binary was built into
/// (`<target>/debug/deps/integration-…` → `<target>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// Builds `bin` of `package` (once per test process) and returns its path.
/// Building from the test keeps `cargo test --workspace` self-sufficient.
pub fn cargo_bin(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = built
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = built.get(bin) {
        return path.clone();
    }
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("profile dir");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    // Build every binary with the same feature set `cargo test --workspace`
    // resolves, in a cargo that does not invalidate this test run's
    // artifacts.
    let mut build = traffic_guardian_test_support::nested_cargo();
    build
        .args(["build", "-q", "--workspace", "--bins", "--tests"])
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if profile == "release" {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build --workspace --bins --tests failed (wanted {bin} of {package})"
    );
    let path = profile_dir.join(bin);
    assert!(path.exists(), "{} was not built", path.display());
    built.insert(bin.to_owned(), path.clone());
    path
}

/// A private guardian home in a temporary folder, and the binary run
/// against it with a clean environment: no inherited
/// `NANOCLAW_TRAFFIC_GUARDIAN_*`, `HOME` and `XDG_DATA_HOME` inside the
/// temporary folder, so nothing outside it is read or written.
#[derive(Debug)]
pub struct GuardianHome {
    dir: tempfile::TempDir,
}

impl Default for GuardianHome {
    fn default() -> Self {
        GuardianHome::new()
    }
}

impl GuardianHome {
    /// A fresh temporary folder; the home is `<tmp>/home` (not created).
    pub fn new() -> GuardianHome {
        GuardianHome {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The temporary folder.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The guardian home.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The `traffic-guardian` binary with `args`, against this home.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(cargo_bin("traffic-guardian", "traffic-guardian"));
        for (name, _) in std::env::vars_os() {
            let Some(text) = name.to_str() else { continue };
            if text.starts_with("NANOCLAW_TRAFFIC_GUARDIAN_")
                || text == "XDG_DATA_HOME"
                || text == "TRAFFIC_GUARDIAN_LOG"
            {
                command.env_remove(&name);
            }
        }
        command
            .args(args)
            .env("HOME", self.dir.path())
            .env("NANOCLAW_TRAFFIC_GUARDIAN_HOME", self.home())
            .stdin(std::process::Stdio::null());
        command
    }

    /// Runs the binary with `args` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs the binary with `args` and extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.command(args);
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().unwrap()
    }

    /// Writes `config.json` in the home.
    pub fn write_config(&self, json: &str) {
        std::fs::create_dir_all(self.home()).unwrap();
        std::fs::write(self.home().join("config.json"), json).unwrap();
    }
}

impl Drop for GuardianHome {
    /// A guardian a failed test left running is stopped, so no test leaks
    /// a process.
    fn drop(&mut self) {
        if self.home().join("run/pid").exists() {
            let _ = self
                .command(&["stop", "--fast", "--timeout", "10"])
                .output();
        }
    }
}

/// Stdout of `output` as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr of `output` as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The mode bits of `path`.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().mode() & 0o777
}

/// A tiny HTTP/1.1 upstream on loopback: answers every request `200 ok`
/// and hands each request (head and body) to the test. It runs on its own
/// thread until dropped.
#[derive(Debug)]
pub struct Upstream {
    addr: std::net::SocketAddr,
    seen: std::sync::mpsc::Receiver<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Upstream {
    /// Stops the server: the flag is set, then a connection wakes the
    /// accept loop so it sees it.
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

impl Upstream {
    /// Binds `127.0.0.1:0` and starts serving.
    pub fn start() -> Upstream {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = std::sync::mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let mut stream = reader.into_inner();
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
                let _ = tx.send(format!("{head}{}", String::from_utf8_lossy(&body)));
            }
        });
        Upstream { addr, seen, stop }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next request the upstream received, waiting up to 10 seconds.
    pub fn next_request(&self) -> String {
        self.seen
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the upstream got no request")
    }
}

/// Sends `POST <url>` with `body` through the HTTP proxy at `proxy`
/// (`host:port`) and returns the whole response.
pub fn post_through_proxy(proxy: &str, url: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(proxy).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let host = url.trim_start_matches("http://");
    let request = format!(
        "POST {url}/upload HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Blocks until no process holds the lock file at `path` (the guardian's
/// `run/lock`), up to `timeout`. Returns whether it was released. Waits on
/// the lock itself: it returns the moment the holder is gone.
pub fn wait_unlocked(path: &Path, timeout: std::time::Duration) -> bool {
    let file = std::fs::File::open(path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let locked = file.lock_shared().is_ok();
        let _ = file.unlock();
        let _ = tx.send(locked);
    });
    rx.recv_timeout(timeout).unwrap_or(false)
}

/// Returns what `check` gives once it gives something, checking again each
/// time a file in `dir` (which must exist) is created, written, closed or
/// renamed into it, by another process too. Fails the test after
/// `timeout`, naming `what`. Waits on inotify events: no polling interval.
#[cfg(target_os = "linux")]
pub fn wait_on_dir<T>(
    dir: &Path,
    what: &str,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    use rustix::event::{PollFd, PollFlags, Timespec};
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};

    let deadline = std::time::Instant::now() + timeout;
    let events = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).unwrap();
    inotify::add_watch(
        &events,
        dir,
        WatchFlags::CREATE | WatchFlags::MODIFY | WatchFlags::CLOSE_WRITE | WatchFlags::MOVED_TO,
    )
    .unwrap();
    loop {
        // Checked after the watch is in place, so no change is missed.
        if let Some(value) = check() {
            return value;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "timed out waiting for {what}");
        let left = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: left.subsec_nanos().into(),
        };
        let mut fds = [PollFd::new(&events, PollFlags::IN)];
        rustix::event::poll(&mut fds, Some(&left)).unwrap();
        // Drain what arrived; which file changed does not matter.
        let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
        let mut reader = inotify::Reader::new(&events, &mut buf);
        while reader.next().is_ok() {}
    }
}

/// A canary secret the rules flag as `ai_api_key`.
pub fn canary_key() -> String {
    format!(
        "sk-ant-api03-{}",
        "Cq9Wv3Nz7Lk2Hx5Rt8Yb4Md6Pf1Gs0Jc3Qe5Tu7Io9AaZzYyXx2468"
    )
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn wait_on_dir_wakes_on_a_write_by_another_thread() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("log");
        std::fs::write(&file, b"").unwrap();
        let started = std::time::Instant::now();
        let writer = {
            let file = file.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
                std::io::Write::write_all(&mut f, b"done\n").unwrap();
            })
        };
        let got = wait_on_dir(
            dir.path(),
            "the line",
            std::time::Duration::from_secs(30),
            || {
                let text = std::fs::read_to_string(&file).unwrap();
                text.contains("done").then_some(text)
            },
        );
        writer.join().unwrap();
        assert_eq!(got, "done\n");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
