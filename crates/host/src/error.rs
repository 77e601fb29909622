//! The one error type of the host crate.

use std::path::PathBuf;

use crate::config::Problem;

/// Everything that can go wrong in the host services.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration has at least one error-level problem. Every
    /// problem is listed, warnings included.
    #[error("invalid configuration:{}", list(.0))]
    Config(Vec<Problem>),

    /// A file or folder could not be read, written or created.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, such as `create folder`.
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A file or folder exists but is not safe to use: wrong owner bits,
    /// wrong type, or inside a path mounted into containers.
    #[error("{path}: {reason}")]
    Unsafe {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// No home folder is set and none can be derived from the environment.
    #[error(
        "cannot find a home folder: set NANOCLAW_TRAFFIC_GUARDIAN_HOME (or HOME or XDG_DATA_HOME)"
    )]
    NoHome,

    /// The certificate authority is missing, unreadable or cannot be made.
    #[error("certificate authority: {0}")]
    Ca(String),

    /// Another guardian already runs with this home folder.
    #[error("already running (pid {pid}) with home {home}")]
    AlreadyRunning {
        /// The pid of the running guardian, 0 when unknown.
        pid: u32,
        /// Its home folder.
        home: PathBuf,
    },

    /// No guardian runs with this home folder.
    #[error("not running (home {home})")]
    NotRunning {
        /// The home folder looked at.
        home: PathBuf,
    },

    /// The background service did not become ready, or did not stop, in
    /// time, or exited early. `detail` carries the end of its log.
    #[error("{what}{}", tail(.detail))]
    Lifecycle {
        /// What went wrong.
        what: String,
        /// The last lines the service wrote to its log, if any.
        detail: String,
    },

    /// The control socket answered with something unexpected, or not at all.
    #[error("control socket {path}: {reason}")]
    Control {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The IPC watcher could not start.
    #[error("ipc watcher: {0}")]
    Ipc(String),

    /// The proxy could not start or failed.
    #[error("proxy: {0}")]
    Proxy(String),

    /// An error from the core crate (storage, engine settings).
    #[error(transparent)]
    Core(#[from] traffic_guardian_core::Error),
}

impl Error {
    /// Wraps an I/O error with the action and path it concerns.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Unsafe`] for `path`.
    pub(crate) fn unsafe_path(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
        Error::Unsafe {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("\n  {p}"))
        .collect::<String>()
}

fn tail(detail: &str) -> String {
    if detail.trim().is_empty() {
        String::new()
    } else {
        format!(
            "\n--- last lines of the service log ---\n{}",
            detail.trim_end()
        )
    }
}
