//! The container side of the file-drop channel: writes a task, waits for its
//! result, reads it and deletes it.
//!
//! Inside the container the IPC root is `/workspace/ipc` (NanoClaw v1's
//! mount of the host's `data/ipc/<group>/`), or whatever
//! `NANOCLAW_TRAFFIC_GUARDIAN_IPC_DIR` says. A call:
//!
//! 1. writes `<root>/clawsec_traffic_tasks/.<id>.json.tmp-<random>` and
//!    renames it to `<id>.json` (the watcher ignores names starting with a
//!    dot, so it never sees half a task);
//! 2. polls for `<root>/clawsec_results/<id>.json`, first after 20 ms, the
//!    interval doubling up to 50 ms, until the timeout (default 30 s);
//! 3. reads it (no-follow, at most 8 MiB), deletes it, and checks that it
//!    answers this request.
//!
//! On timeout the task file is deleted if the host has not taken it yet.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::fs_safety::{self, ReadRefusal};
use crate::protocol::{
    CheckConfigData, FindingsData, FindingsParams, PROTOCOL_VERSION, RESULTS_DIR, Request,
    RequestId, Response, StatusData, TASKS_DIR, Task,
};

/// The environment variable naming the IPC root inside the container.
pub const ENV_IPC_DIR: &str = "NANOCLAW_TRAFFIC_GUARDIAN_IPC_DIR";

/// The environment variable with the timeout in milliseconds.
pub const ENV_IPC_TIMEOUT_MS: &str = "NANOCLAW_TRAFFIC_GUARDIAN_IPC_TIMEOUT_MS";

/// The IPC root when [`ENV_IPC_DIR`] is not set: NanoClaw v1's mount.
pub const DEFAULT_IPC_DIR: &str = "/workspace/ipc";

/// The timeout when [`ENV_IPC_TIMEOUT_MS`] is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The accepted range of [`ENV_IPC_TIMEOUT_MS`].
pub const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=600_000;

/// The largest result file read.
pub const MAX_RESULT_BYTES: u64 = 8 * 1024 * 1024;

/// The mode of the task and result folders when the client creates them.
const DIR_MODE: u32 = 0o755;

/// Where the client talks and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The IPC root, holding `clawsec_traffic_tasks` and `clawsec_results`.
    pub ipc_dir: PathBuf,
    /// How long to wait for a result.
    pub timeout: Duration,
    /// The first wait before looking for the result.
    pub first_poll: Duration,
    /// The longest wait between two looks.
    pub max_poll: Duration,
    /// Results larger than this are refused.
    pub max_result_bytes: u64,
}

impl ClientConfig {
    /// Defaults with the IPC root at `ipc_dir`.
    pub fn new(ipc_dir: impl Into<PathBuf>) -> ClientConfig {
        ClientConfig {
            ipc_dir: ipc_dir.into(),
            timeout: DEFAULT_TIMEOUT,
            first_poll: Duration::from_millis(20),
            max_poll: Duration::from_millis(50),
            max_result_bytes: MAX_RESULT_BYTES,
        }
    }

    /// The configuration from the process environment (see
    /// [`ClientConfig::from_vars`]).
    pub fn from_env() -> Result<ClientConfig, Error> {
        ClientConfig::from_vars(|name| std::env::var_os(name))
    }

    /// The configuration from [`ENV_IPC_DIR`] and [`ENV_IPC_TIMEOUT_MS`]
    /// as `var` reports them. Unset or empty variables take the defaults; a
    /// relative folder or a timeout that is not a whole number of
    /// milliseconds in [`TIMEOUT_RANGE_MS`] is an error.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<ClientConfig, Error> {
        let set = |name: &str| var(name).filter(|value| !value.is_empty());
        let ipc_dir = set(ENV_IPC_DIR)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_IPC_DIR));
        if !ipc_dir.is_absolute() {
            return Err(Error::Config {
                field: ENV_IPC_DIR,
                reason: format!("must be an absolute path, got {}", ipc_dir.display()),
            });
        }
        let mut config = ClientConfig::new(ipc_dir);
        if let Some(value) = set(ENV_IPC_TIMEOUT_MS) {
            let text = value.to_string_lossy();
            let millis = text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| TIMEOUT_RANGE_MS.contains(ms))
                .ok_or_else(|| Error::Config {
                    field: ENV_IPC_TIMEOUT_MS,
                    reason: format!(
                        "must be a whole number of milliseconds from {} to {}, got {text:?}",
                        TIMEOUT_RANGE_MS.start(),
                        TIMEOUT_RANGE_MS.end()
                    ),
                })?;
            config.timeout = Duration::from_millis(millis);
        }
        Ok(config)
    }
}

/// Sends tasks to the host and waits for the answers. Blocking: call it from
/// a thread that may sleep.
#[derive(Debug, Clone)]
pub struct Client {
    config: ClientConfig,
}

impl Client {
    /// A client with `config`.
    pub fn new(config: ClientConfig) -> Client {
        Client { config }
    }

    /// The client's configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Asks for the guardian's status.
    pub fn status(&self) -> Result<StatusData, Error> {
        self.call_for(Request::Status)
    }

    /// Asks for findings.
    pub fn findings(&self, params: FindingsParams) -> Result<FindingsData, Error> {
        self.call_for(Request::Findings(params))
    }

    /// Asks for the host's verdict on its configuration.
    pub fn check_config(&self) -> Result<CheckConfigData, Error> {
        self.call_for(Request::CheckConfig)
    }

    /// Sends `request` and returns its data, or the host's refusal as
    /// [`Error::Remote`].
    fn call_for<T: DeserializeOwned>(&self, request: Request) -> Result<T, Error> {
        let response = self.call(request)?;
        if !response.success {
            let (code, message) = match response.error {
                Some(error) => (error.code, error.message),
                None => (crate::protocol::ErrorCode::Unknown, response.message),
            };
            return Err(Error::Remote { code, message });
        }
        response
            .data_as()
            .map_err(|err| Error::Protocol(format!("unexpected data: {err}")))
    }

    /// Sends `request` and returns the result as the host wrote it.
    pub fn call(&self, request: Request) -> Result<Response, Error> {
        let root_path = &self.config.ipc_dir;
        let root = fs_safety::open_dir(root_path)
            .map_err(|err| Error::io("open the IPC folder", root_path, err))?;
        let tasks = fs_safety::ensure_subdir(&root, TASKS_DIR, DIR_MODE)
            .map_err(|err| Error::io("open", root_path.join(TASKS_DIR), err))?;
        let results = fs_safety::ensure_subdir(&root, RESULTS_DIR, DIR_MODE)
            .map_err(|err| Error::io("open", root_path.join(RESULTS_DIR), err))?;

        let task = Task {
            request_id: RequestId::generate(),
            request,
        };
        let name = task.request_id.file_name();
        let start = Instant::now();
        fs_safety::write_atomic(&tasks, &name, &task.to_json())
            .map_err(|err| Error::io("write", root_path.join(TASKS_DIR).join(&name), err))?;
        tracing::debug!(request_id = %task.request_id, "task written");

        let deadline = start + self.config.timeout;
        let mut interval = self.config.first_poll;
        loop {
            match fs_safety::lstat_at(&results, &name) {
                Ok(stat) => {
                    let read = fs_safety::read_regular(
                        &results,
                        &name,
                        &stat,
                        self.config.max_result_bytes,
                    );
                    let _ = fs_safety::remove(&results, &name);
                    return self.check(&task.request_id, read);
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(Error::io(
                        "look for",
                        root_path.join(RESULTS_DIR).join(&name),
                        err,
                    ));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                let _ = fs_safety::remove(&tasks, &name);
                return Err(Error::Timeout {
                    request_id: task.request_id,
                    waited: now.saturating_duration_since(start),
                    ipc_dir: root_path.clone(),
                });
            }
            std::thread::sleep(interval.min(deadline - now));
            interval = (interval * 2).min(self.config.max_poll);
        }
    }

    /// Checks a result read for `id`.
    fn check(&self, id: &RequestId, read: Result<Vec<u8>, ReadRefusal>) -> Result<Response, Error> {
        let bytes = read.map_err(|refusal| {
            Error::Protocol(match refusal {
                ReadRefusal::TooLarge => format!(
                    "the result is larger than {} bytes",
                    self.config.max_result_bytes
                ),
                ReadRefusal::NotRegular(kind) => {
                    format!("the result is {}, not a regular file", kind.describe())
                }
                ReadRefusal::Replaced => "the result changed while being read".into(),
                ReadRefusal::Linked => "the result has more than one hard link".into(),
                ReadRefusal::Io(err) => format!("the result could not be read: {err}"),
            })
        })?;
        let response = Response::parse(&bytes)
            .map_err(|err| Error::Protocol(format!("the result is not valid: {err}")))?;
        if response.version != PROTOCOL_VERSION {
            return Err(Error::Protocol(format!(
                "the result has version {}, this client speaks {PROTOCOL_VERSION}",
                response.version
            )));
        }
        if &response.request_id != id {
            return Err(Error::Protocol(format!(
                "the result answers request {}, not {id}",
                response.request_id
            )));
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<ClientConfig, Error> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        ClientConfig::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn configuration_comes_from_the_environment() {
        let config = from(&[]).unwrap();
        assert_eq!(config.ipc_dir, PathBuf::from("/workspace/ipc"));
        assert_eq!(config.timeout, Duration::from_secs(30));

        let config = from(&[(ENV_IPC_DIR, "/workspace"), (ENV_IPC_TIMEOUT_MS, "1500")]).unwrap();
        assert_eq!(config.ipc_dir, PathBuf::from("/workspace"));
        assert_eq!(config.timeout, Duration::from_millis(1500));

        let config = from(&[(ENV_IPC_DIR, ""), (ENV_IPC_TIMEOUT_MS, "")]).unwrap();
        assert_eq!(config, ClientConfig::new(DEFAULT_IPC_DIR));

        for bad in ["0", "99", "600001", "1.5", "-1", "soon"] {
            let err = from(&[(ENV_IPC_TIMEOUT_MS, bad)]).unwrap_err().to_string();
            assert!(err.contains(ENV_IPC_TIMEOUT_MS), "{bad}: {err}");
        }
        let err = from(&[(ENV_IPC_DIR, "relative/ipc")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("absolute"), "{err}");
    }

    #[test]
    fn a_missing_host_times_out_and_takes_its_task_back() {
        let root = tempfile::tempdir().unwrap();
        let mut config = ClientConfig::new(root.path());
        config.timeout = Duration::from_millis(150);
        let started = Instant::now();
        let err = Client::new(config).status().unwrap_err();
        let waited = started.elapsed();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("no answer from the traffic guardian")
        );
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        let left = std::fs::read_dir(root.path().join(TASKS_DIR))
            .unwrap()
            .count();
        assert_eq!(left, 0);
    }

    #[test]
    fn a_missing_ipc_folder_is_a_clear_error() {
        let root = tempfile::tempdir().unwrap();
        let client = Client::new(ClientConfig::new(root.path().join("absent")));
        let err = client.status().unwrap_err().to_string();
        assert!(err.contains("cannot open the IPC folder"), "{err}");
    }
}
