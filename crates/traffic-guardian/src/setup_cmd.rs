//! `setup`: prints the exact wiring for a runtime. Prints only; runs nothing.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use traffic_guardian_host::setup::{self, ContainerKind, SetupFacts, SetupRequest};
use traffic_guardian_host::{ca, lifecycle, offline_status};

use crate::output::{load_lenient, print};

#[derive(Debug, Args)]
pub(crate) struct SetupArgs {
    /// The runtime to wire (default: the default runtime).
    #[arg(long, value_name = "NAME")]
    runtime: Option<String>,
    /// The container runtime.
    #[arg(long, value_enum, default_value_t = Kind::Docker)]
    kind: Kind,
    /// Also print system trust-store commands. They are printed, never run.
    #[arg(long)]
    print_trust_store_instructions: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Docker,
    AppleContainer,
}

pub(crate) fn run(config: Option<&Path>, args: &SetupArgs) -> ExitCode {
    let (config, paths) = match load_lenient(config, "setup") {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let request = SetupRequest {
        runtime: args.runtime.clone(),
        kind: match args.kind {
            Kind::Docker => ContainerKind::Docker,
            Kind::AppleContainer => ContainerKind::AppleContainer,
        },
        trust_store_instructions: args.print_trust_store_instructions,
    };
    let name = request
        .runtime
        .clone()
        .or_else(|| config.default_runtime.clone())
        .unwrap_or_default();
    let status = offline_status(&config, &paths).ok();
    let runtime = config.runtime(&name);
    let bound_port = lifecycle::read_listeners(&paths).and_then(|listeners| {
        let wanted = runtime
            .and_then(|r| r.listen.as_ref())
            .map(|_| name.clone());
        listeners
            .iter()
            .find(|l| l.runtime == wanted)
            .and_then(|l| l.addr.rsplit(':').next()?.parse().ok())
    });
    let facts = SetupFacts {
        ca_fingerprint: ca::read_public(&paths).ok().map(|c| c.fingerprint_sha256),
        trust_exported: status
            .as_ref()
            .and_then(|s| s.runtimes.iter().find(|r| r.name == name))
            .is_some_and(|r| r.trust_exported),
        bound_port,
    };
    match setup::render(&config, &paths, &request, &facts) {
        Ok(text) => print(&text).map_or_else(|code| code, |()| ExitCode::SUCCESS),
        Err(err) => {
            eprintln!("traffic-guardian setup: {err}");
            ExitCode::from(crate::EXIT_USAGE)
        }
    }
}
