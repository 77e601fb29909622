//! Runs the real `curl` as a child process against the guardian.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// A `curl` invocation through a proxy.
#[derive(Debug)]
pub struct Curl {
    cmd: Command,
}

/// What curl did.
#[derive(Debug)]
pub struct CurlOutput {
    /// curl's exit code (0 is success; 22 with `--fail` on HTTP errors).
    pub code: i32,
    /// The response body (or what `-w` printed).
    pub stdout: Vec<u8>,
    /// curl's messages.
    pub stderr: String,
}

impl CurlOutput {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl Curl {
    /// `curl` through the proxy at `proxy`, quiet but with errors shown,
    /// with no proxy settings from the environment.
    pub fn new(proxy: SocketAddr) -> Curl {
        let mut cmd = Command::new("curl");
        for var in [
            "http_proxy",
            "https_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
            "CURL_CA_BUNDLE",
            "SSL_CERT_FILE",
        ] {
            cmd.env_remove(var);
        }
        cmd.args([
            "-sS",
            "--max-time",
            "30",
            "--proxy",
            &format!("http://{proxy}"),
        ]);
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        Curl { cmd }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Curl
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Adds the URL (or any single argument).
    pub fn arg_url(mut self, url: &str) -> Curl {
        self.cmd.arg(url);
        self
    }

    /// Runs curl to completion.
    pub async fn run(mut self) -> CurlOutput {
        let out = self
            .cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .expect("curl must be installed");
        CurlOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts curl and returns it with its stdout as a line reader, for
    /// streams the test reads while they are still coming.
    pub fn spawn(
        mut self,
    ) -> (
        Child,
        tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    ) {
        let mut child = self
            .cmd
            .arg("--no-buffer")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl must be installed");
        let stdout = child.stdout.take().expect("piped stdout");
        (child, BufReader::new(stdout).lines())
    }
}

/// Waits for a spawned curl and returns its exit code and stderr.
pub async fn finish(mut child: Child) -> (i32, String) {
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr).await;
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("curl did not exit")
        .expect("curl wait");
    (status.code().unwrap_or(-1), stderr)
}
