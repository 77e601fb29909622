//! The one error type of the core crate.

use std::path::PathBuf;

/// Everything that can go wrong in the core crate.
///
/// Detectors never fail: a scan that meets bad input reports fewer findings
/// and notes the problem in its outcome. These errors come from decoding,
/// storage and input parsing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `Content-Encoding` value names a coding the guardian cannot decode.
    #[error("unsupported content encoding {0:?}")]
    UnsupportedEncoding(String),

    /// A compressed body is corrupt.
    #[error("{coding} body is corrupt: {reason}")]
    CorruptEncoding {
        /// The coding being decoded, such as `gzip`.
        coding: &'static str,
        /// What the decoder reported.
        reason: String,
    },

    /// A compressed body expands beyond the configured ratio: a likely
    /// decompression bomb. Decoding stopped.
    #[error(
        "{coding} body expands more than {max_ratio}:1; decoding stopped (decompression bomb?)"
    )]
    DecompressionBomb {
        /// The coding being decoded.
        coding: &'static str,
        /// The configured ratio cap.
        max_ratio: u64,
    },

    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, such as `open` or `append to`.
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An input file is not in the format it claims to be.
    #[error("{path}: {reason}")]
    InvalidInput {
        /// The input, as the user named it.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A setting is out of its allowed range.
    #[error("{field}: {reason}")]
    InvalidSetting {
        /// The setting's name.
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },
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
