//! The real `traffic-guardian` binary as a child process: built in
//! release, run against a temporary home with the soak's config, asked for
//! its status, and stopped gracefully so dedup summaries are written.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::mix::{INSPECTED_RUNTIME, PLAIN_RUNTIME};

/// How long the guardian may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take (drain plus writing findings).
const STOP_TIMEOUT: Duration = Duration::from_secs(90);

/// Builds `traffic-guardian` in release and returns the binary's path, as
/// cargo reports it.
pub(crate) fn build() -> Result<PathBuf> {
    let mut build = crate::cargo_command();
    build.args([
        "build",
        "--release",
        "-p",
        "traffic-guardian",
        "--message-format=json-render-diagnostics",
    ]);
    let output = build
        .stderr(Stdio::inherit())
        .output()
        .context("starting cargo")?;
    if !output.status.success() {
        bail!("cargo build --release -p traffic-guardian failed");
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|msg| {
            msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "traffic-guardian"
        })
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .context("cargo built no traffic-guardian executable")
}

/// The soak's settings for the guardian.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) rotate_bytes: u64,
    pub(crate) keep_files: usize,
    pub(crate) dedup_window_secs: u64,
}

/// A temporary guardian home and the binary run against it with a clean
/// environment, so nothing outside the folder is read or written.
#[derive(Debug)]
pub(crate) struct Home {
    bin: PathBuf,
    root: PathBuf,
}

impl Home {
    pub(crate) fn new(bin: PathBuf, root: &Path) -> Home {
        Home {
            bin,
            root: root.to_path_buf(),
        }
    }

    pub(crate) fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    pub(crate) fn log_dir(&self) -> PathBuf {
        self.home().join("logs")
    }

    /// Where the running guardian's stderr goes.
    pub(crate) fn service_log(&self) -> PathBuf {
        self.root.join("guardian.stderr")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        for (name, _) in std::env::vars_os() {
            let Some(text) = name.to_str() else { continue };
            if text.starts_with("NANOCLAW_TRAFFIC_GUARDIAN_")
                || text == "XDG_DATA_HOME"
                || text == "TRAFFIC_GUARDIAN_LOG"
                || text.starts_with("SSL_CERT_")
            {
                command.env_remove(&name);
            }
        }
        command
            .args(args)
            .env("HOME", &self.root)
            .env("NANOCLAW_TRAFFIC_GUARDIAN_HOME", self.home())
            .stdin(Stdio::null());
        command
    }

    /// Runs a short command to completion and fails with its output if it
    /// fails.
    fn run(&self, args: &[&str], env: &[(&str, &Path)]) -> Result<String> {
        let mut command = self.command(args);
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command
            .output()
            .with_context(|| format!("running traffic-guardian {}", args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "traffic-guardian {} failed ({}): {}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Writes the config, creates the CA and exports the inspected
    /// runtime's trust, with `upstream_ca` (the test upstream's CA) as the
    /// only system root and as an extra upstream root.
    pub(crate) fn prepare(&self, upstream_ca: &Path, settings: &Settings) -> Result<()> {
        let home = self.home();
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        let config = json!({
            "proxy_url": "http://127.0.0.1:0",
            "default_runtime": PLAIN_RUNTIME,
            "runtimes": [
                {"name": PLAIN_RUNTIME},
                {"name": INSPECTED_RUNTIME, "proxy_users": [INSPECTED_RUNTIME], "https_inspection": true}
            ],
            "upstream_ca_files": [upstream_ca],
            "findings": {
                "rotate_bytes": settings.rotate_bytes,
                "keep_files": settings.keep_files,
                "dedup_window_secs": settings.dedup_window_secs
            },
            "drain_timeout_secs": 30
        });
        std::fs::write(home.join("config.json"), config.to_string())
            .context("writing config.json")?;
        self.run(&["ca", "init"], &[])?;
        let no_dir = self.root.join("no-cert-dir");
        self.run(
            &["ca", "export", "--runtime", INSPECTED_RUNTIME],
            &[("SSL_CERT_FILE", upstream_ca), ("SSL_CERT_DIR", &no_dir)],
        )?;
        self.run(&["check-config"], &[])?;
        Ok(())
    }

    /// The guardian CA's certificate, in PEM.
    pub(crate) fn ca_pem(&self) -> Result<String> {
        let path = self.home().join("ca/ca.pem");
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Starts `traffic-guardian run` and waits for its ready line.
    pub(crate) fn start(&self) -> Result<Guardian> {
        let stderr =
            std::fs::File::create(self.service_log()).context("creating the service log")?;
        let mut child = self
            .command(&["run"])
            .env("TRAFFIC_GUARDIAN_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("starting traffic-guardian run")?;
        let stdout = child.stdout.take().context("the guardian's stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut guardian = Guardian {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stopped: None,
        };
        let line = rx.recv_timeout(READY_TIMEOUT).unwrap_or_default();
        let addr = line
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split([',', ' ', '\n']).next())
            .and_then(|addr| addr.parse().ok());
        match addr {
            Some(addr) => {
                guardian.addr = addr;
                Ok(guardian)
            }
            None => {
                guardian.kill();
                let log = std::fs::read_to_string(self.service_log()).unwrap_or_default();
                bail!(
                    "the guardian did not get ready (stdout {line:?}):\n{}",
                    tail(&log, 20)
                )
            }
        }
    }

    /// `status --json` of the running guardian.
    pub(crate) fn status(&self) -> Result<Value> {
        let out = self.run(&["status", "--json"], &[])?;
        serde_json::from_str(&out).context("parsing status --json")
    }

    /// Asks the guardian to stop gracefully and waits until it has exited.
    /// Returns how long that took and the exit status.
    pub(crate) fn stop(&self, guardian: &mut Guardian) -> Result<(Duration, ExitStatus)> {
        let started = Instant::now();
        let timeout = STOP_TIMEOUT.as_secs().to_string();
        self.run(&["stop", "--timeout", &timeout], &[])?;
        // Wait for the exit itself on a helper thread; past the timeout,
        // kill the process, which ends that wait too.
        let pid = guardian.pid().to_string();
        let child = &mut guardian.child;
        let (exited, timed_out) = std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel();
            scope.spawn(move || {
                let _ = tx.send(child.wait());
            });
            match rx.recv_timeout(STOP_TIMEOUT.saturating_sub(started.elapsed())) {
                Ok(exited) => (exited, false),
                Err(_) => {
                    let _ = Command::new("kill").args(["-KILL", &pid]).status();
                    (
                        rx.recv()
                            .unwrap_or_else(|_| Err(std::io::ErrorKind::Other.into())),
                        true,
                    )
                }
            }
        });
        let status = exited.context("waiting for the guardian")?;
        guardian.stopped = Some(status);
        if timed_out {
            bail!("the guardian did not exit within {STOP_TIMEOUT:?} of stop");
        }
        Ok((started.elapsed(), status))
    }
}

/// The running guardian. Killed if dropped while still running.
#[derive(Debug)]
pub(crate) struct Guardian {
    child: Child,
    addr: SocketAddr,
    stopped: Option<ExitStatus>,
}

impl Guardian {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The default listener.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn kill(&mut self) {
        if self.stopped.is_none() {
            let _ = self.child.kill();
            self.stopped = self.child.wait().ok();
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
