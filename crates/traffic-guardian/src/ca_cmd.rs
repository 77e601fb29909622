//! `ca init`, `ca show` and `ca export`: the guardian's own CA. No command touches a system trust store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use traffic_guardian_host::ca;

use crate::output::{load_lenient, print, print_json};

#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Create an ECDSA P-256 CA in <home>/ca (key 0600, never printed).
    Init {
        /// Replace an existing CA (rotation: export it again afterwards).
        #[arg(long)]
        force: bool,
    },
    /// Print the CA certificate's path and SHA-256 fingerprint.
    Show {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a runtime's public trust files (guardian-ca.pem and a combined
    /// ca-bundle.pem of system roots plus the guardian CA), to mount
    /// read-only into its containers.
    Export {
        /// The runtime to export for.
        #[arg(long, value_name = "NAME")]
        runtime: String,
        /// Export into this folder instead of the runtime's trust folder.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

pub(crate) fn run(config: Option<&Path>, command: &CaCommand) -> ExitCode {
    let (config, paths) = match load_lenient(config, "ca") {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let result = match command {
        CaCommand::Init { force } => ca::init(&paths, *force).map(|info| {
            format!(
                "created CA {}\nSHA-256 {}\nkey {} (mode 0600; never leaves this host)\nnext: traffic-guardian ca export --runtime NAME\n",
                info.cert_path.display(),
                info.fingerprint_sha256,
                paths.ca_key().display()
            )
        }),
        CaCommand::Show { json } => match ca::read_public(&paths) {
            Ok(info) if *json => return print_json(&info).map_or_else(|c| c, |()| ExitCode::SUCCESS),
            Ok(info) => Ok(format!(
                "{}\nSHA-256 {}\n",
                info.cert_path.display(),
                info.fingerprint_sha256
            )),
            Err(err) => Err(err),
        },
        CaCommand::Export { runtime, dir } => {
            if !config.effective_runtimes().iter().any(|r| &r.name == runtime) {
                eprintln!(
                    "traffic-guardian ca export: no runtime named {runtime:?} in the config"
                );
                return ExitCode::from(crate::EXIT_USAGE);
            }
            let (dir, bundle) = match dir {
                Some(dir) => (dir.clone(), dir.join(ca::BUNDLE_FILE)),
                None => (
                    config.trust_dir(&paths, runtime),
                    config.bundle_path(&paths, runtime),
                ),
            };
            ca::system_roots()
                .and_then(|roots| ca::export_to(&paths, &dir, &bundle, &roots))
                .map(|report| {
                    format!(
                        "exported for runtime {runtime}:\n  {}  (the guardian CA; for NODE_EXTRA_CA_CERTS)\n  {}  ({} system roots + the guardian CA)\nmount {} read-only into the runtime's containers\nSHA-256 {}\n",
                        report.guardian_ca.display(),
                        report.bundle.display(),
                        report.system_roots,
                        report.dir.display(),
                        report.fingerprint_sha256
                    )
                })
        }
    };
    match result {
        Ok(text) => print(&text).map_or_else(|c| c, |()| ExitCode::SUCCESS),
        Err(err) => {
            eprintln!("traffic-guardian ca: {err}");
            ExitCode::FAILURE
        }
    }
}
