//! The MCP server of the NanoClaw traffic guardian, run inside an agent
//! container over stdio.
//!
//! It offers three read-only tools (see [`tools`]): status, findings and a
//! wiring check. It holds no secrets and opens no socket: every answer comes
//! from the host through the file-drop IPC channel of
//! `traffic-guardian-ipc`, plus what the container can see of its own
//! environment ([`wiring`]).
//!
//! Stdout is the protocol channel. Nothing else may write to it: logs go to
//! stderr, and `clippy::print_stdout` is denied in this crate.

#![deny(missing_docs)]
#![deny(clippy::print_stdout)]

pub mod error;
pub mod server;
pub mod tools;
pub mod wiring;

pub use error::Error;
pub use server::TrafficGuardianServer;

/// Runs the server over stdio on a single-threaded runtime (plus the
/// blocking pool the IPC calls use) until the client disconnects.
pub fn run_stdio() -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let result = runtime.block_on(TrafficGuardianServer::from_env().serve_stdio());
    // A blocking stdin read cannot be cancelled; do not wait for it.
    runtime.shutdown_background();
    result
}
