//! The control socket: `run/control.sock` (0600), one JSON request line in, one JSON response line out.
//!
//! ```text
//! → {"op":"status"}                   ← {"ok":true,"status":{…}}
//! → {"op":"stop","graceful":true}     ← {"ok":true}
//! → {"op":"ping"}                     ← {"ok":true,"pid":1234}
//! anything else                       ← {"ok":false,"error":"…"}
//! ```
//!
//! Only the owner can connect: the socket is 0600 inside the 0700 `run/`
//! folder. Requests are capped at 64 KiB and must arrive within 5 seconds.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::paths::PRIVATE_FILE_MODE;
use crate::status::Status;

/// The longest request accepted.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest socket path the platform takes (`sun_path` less the NUL).
pub(crate) const MAX_SOCKET_PATH: usize = if cfg!(target_os = "linux") { 107 } else { 103 };

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// Liveness: answers with the pid.
    Ping,
    /// The full [`Status`].
    Status,
    /// Stop the service; graceful drains in-flight flows first.
    Stop {
        /// Drain (true) or cut (false).
        graceful: bool,
    },
}

/// A response on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request was served.
    pub ok: bool,
    /// The pid of the service (for `ping`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The status (for `status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<Status>>,
    /// Why the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Produces the current status for the control socket.
pub type StatusSource = Arc<dyn Fn() -> Status + Send + Sync>;

/// The serving side, started by the service.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl ControlServer {
    /// Binds `path` (removing a stale socket first), makes it 0600 and
    /// serves requests. Stop requests are sent on `stop` (the flag is
    /// `graceful`).
    pub fn start(
        path: &Path,
        status: StatusSource,
        stop: mpsc::Sender<bool>,
    ) -> Result<ControlServer, Error> {
        check_path_len(path)?;
        match std::fs::remove_file(path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("remove stale socket", path, err));
            }
            _ => {}
        }
        let listener =
            UnixListener::bind(path).map_err(|source| Error::io("bind", path, source))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))
            .map_err(|source| Error::io("set permissions of", path, source))?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let status = status.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    if let Err(err) = serve(stream, status, stop).await {
                        tracing::debug!(error = %err, "control connection");
                    }
                });
            }
        });
        Ok(ControlServer {
            path: path.to_path_buf(),
            task,
        })
    }

    /// Stops serving and removes the socket file.
    pub fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(
    stream: tokio::net::UnixStream,
    status: StatusSource,
    stop: mpsc::Sender<bool>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST));
    let mut line = String::new();
    let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    let response = match read {
        Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim()) {
            Ok(Request::Ping) => Response {
                ok: true,
                pid: Some(std::process::id()),
                ..Response::default()
            },
            Ok(Request::Status) => Response {
                ok: true,
                status: Some(Box::new(status())),
                ..Response::default()
            },
            Ok(Request::Stop { graceful }) => {
                let _ = stop.send(graceful).await;
                Response {
                    ok: true,
                    pid: Some(std::process::id()),
                    ..Response::default()
                }
            }
            Err(err) => Response {
                error: Some(format!("bad request: {err}")),
                ..Response::default()
            },
        },
        Ok(Err(err)) => Response {
            error: Some(format!("reading request: {err}")),
            ..Response::default()
        },
        Err(_) => Response {
            error: Some("request timed out".into()),
            ..Response::default()
        },
    };
    let mut text = serde_json::to_string(&response).unwrap_or_else(|_| "{\"ok\":false}".into());
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

/// Sends `request` to the socket at `path` and reads the response, waiting
/// at most `timeout` for each step.
pub fn request(path: &Path, request: &Request, timeout: Duration) -> Result<Response, Error> {
    let fail = |reason: String| Error::Control {
        path: path.to_path_buf(),
        reason,
    };
    check_path_len(path)?;
    let mut stream = UnixStream::connect(path).map_err(|e| fail(format!("connect: {e}")))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| fail(e.to_string()))?;
    let mut line = serde_json::to_string(request).map_err(|e| fail(e.to_string()))?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| fail(format!("send: {e}")))?;
    let mut reader = BufReader::new(std::io::Read::take(stream, 16 * 1024 * 1024));
    let mut answer = String::new();
    reader
        .read_line(&mut answer)
        .map_err(|e| fail(format!("receive: {e}")))?;
    let response: Response = serde_json::from_str(answer.trim())
        .map_err(|e| fail(format!("unreadable response: {e}")))?;
    if !response.ok {
        return Err(fail(
            response
                .error
                .unwrap_or_else(|| "request refused".to_owned()),
        ));
    }
    Ok(response)
}

fn check_path_len(path: &Path) -> Result<(), Error> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(Error::Control {
            path: path.to_path_buf(),
            reason: format!(
                "path is {len} bytes, longer than the {MAX_SOCKET_PATH} a Unix socket allows; choose a shorter NANOCLAW_TRAFFIC_GUARDIAN_HOME"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::mode_of;

    #[tokio::test]
    async fn serves_status_ping_stop_and_refuses_garbage() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("control.sock");
        std::fs::write(&path, "stale").unwrap();
        let (stop_tx, mut stop_rx) = mpsc::channel(1);
        let source: StatusSource = Arc::new(|| Status {
            running: true,
            mode: "detect".into(),
            ..Status::default()
        });
        let server = ControlServer::start(&path, source, stop_tx).unwrap();
        assert_eq!(mode_of(&path), Some(0o600));

        let p = path.clone();
        let (ping, status, bad, raw) = tokio::task::spawn_blocking(move || {
            let t = Duration::from_secs(5);
            let ping = request(&p, &Request::Ping, t).unwrap();
            let status = request(&p, &Request::Status, t).unwrap();
            let mut s = UnixStream::connect(&p).unwrap();
            s.write_all(b"{\"op\":\"format-disk\"}\n").unwrap();
            let mut raw = String::new();
            BufReader::new(s).read_line(&mut raw).unwrap();
            let bad = request(&p, &Request::Stop { graceful: false }, t);
            (ping, status, bad, raw)
        })
        .await
        .unwrap();
        assert_eq!(ping.pid, Some(std::process::id()));
        assert!(status.status.unwrap().running);
        assert!(
            raw.contains("\"ok\":false") && raw.contains("bad request"),
            "{raw}"
        );
        assert!(bad.is_ok());
        assert_eq!(stop_rx.recv().await, Some(false));
        server.stop();
        assert!(!path.exists());
    }

    #[test]
    fn long_paths_are_refused_clearly() {
        let long = PathBuf::from(format!("/{}/control.sock", "x".repeat(200)));
        let err = request(&long, &Request::Ping, Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("shorter NANOCLAW_TRAFFIC_GUARDIAN_HOME"),
            "{err}"
        );
    }
}
