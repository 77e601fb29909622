//! Running a nested `cargo` from a process cargo started.

use std::process::Command;

/// A `cargo` command without the variables cargo set for this process (a
/// test, a `cargo run`). Build scripts watch some of them (ring watches
/// `CARGO_MANIFEST_DIR`): passed on, they would make the nested build and
/// the next plain `cargo build` or `cargo test` rebuild each other's
/// artifacts.
pub fn nested_cargo() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_this_process = name.starts_with("CARGO_PKG_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "OUT_DIR"
            );
        if set_for_this_process {
            command.env_remove(&*name);
        }
    }
    command
}
