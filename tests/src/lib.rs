//! Shared fixtures for the integration tests (see `integration/`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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
    let mut build = Command::new(env!("CARGO"));
    build
        .args(["build", "-q", "-p", package, "--bin", bin])
        .env("CARGO_TARGET_DIR", target_dir());
    if profile == "release" {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
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
