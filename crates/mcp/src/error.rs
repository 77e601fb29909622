//! The one error type of the MCP crate.

/// What can stop the MCP server. Tool failures are not errors here: they
/// are tool results with `isError: true`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The MCP session could not start or ended abnormally.
    #[error("MCP session failed: {0}")]
    Serve(String),

    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}
