//! The one error type of the IPC crate.

use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::{ErrorCode, RequestId};

/// Everything that can go wrong in the IPC crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be used.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done, such as `create` or `read`.
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A setting is missing or out of range.
    #[error("{field}: {reason}")]
    Config {
        /// The setting, such as an environment variable's name.
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },

    /// No result arrived in time.
    #[error(
        "no answer from the traffic guardian within {} ms (request {request_id}, IPC folder {}); \
         is the guardian running on the host with IPC enabled for this group's folder?",
        waited.as_millis(),
        ipc_dir.display()
    )]
    Timeout {
        /// The request that went unanswered.
        request_id: RequestId,
        /// How long the client waited.
        waited: Duration,
        /// The IPC root the task was written to.
        ipc_dir: PathBuf,
    },

    /// The host answered with an error.
    #[error("the traffic guardian refused the request ({code}): {message}")]
    Remote {
        /// The host's error code.
        code: ErrorCode,
        /// The host's explanation.
        message: String,
    },

    /// A result file is not what the protocol says.
    #[error("malformed answer from the traffic guardian: {0}")]
    Protocol(String),
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
}
