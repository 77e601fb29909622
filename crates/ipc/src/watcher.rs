//! The host side of the file-drop channel: finds task files in every group's
//! folder, answers them through a [`TaskHandler`], and writes the results.
//!
//! # Where it looks
//!
//! - NanoClaw v1: `<groups_root>/<group>/clawsec_traffic_tasks/*.json`, with
//!   results in `<groups_root>/<group>/clawsec_results/`. `groups_root` is
//!   NanoClaw's `data/ipc`.
//! - NanoClaw v2: `<sessions_root>/<agent_group>/<session>/clawsec_traffic_tasks/`,
//!   results beside it. `sessions_root` is NanoClaw's `data/v2-sessions`.
//!
//! The group is always the folder name (the agent-group folder in v2). Folder
//! names that are not valid group (or session) names are skipped.
//!
//! # Hardening
//!
//! Every path below a root is walked with descriptor-relative, no-follow
//! opens (see [`fs_safety`](crate::fs_safety)), so a symlinked group folder,
//! tasks folder or results folder is refused, and nothing is read or written
//! outside the group folder. Per scan, each group gets a bounded number of
//! directory entries, tasks and bytes, and a token bucket limits its tasks
//! over time; one hostile group thus adds bounded work per scan. Hostile
//! conditions are logged at most once a minute per folder.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::error::Error;
use crate::fs_safety::{self, EntryName, Kind, ReadRefusal};
use crate::group::{GroupMap, GroupName};
use crate::handler::{Caller, TaskHandler, dispatch};
use crate::protocol::{
    ErrorCode, RESULTS_DIR, RequestId, Response, TASKS_DIR, Task, is_valid_request_id,
};
use crate::quarantine::{Outcome, Quarantine};
use crate::rate_limit::{RateLimit, RateLimiter};

/// The default cap on one task file.
pub const DEFAULT_MAX_TASK_BYTES: u64 = 64 * 1024;

/// The mode of a results folder the watcher has to create.
const RESULTS_DIR_MODE: u32 = 0o755;

/// How often the same hostile condition in the same folder is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// How the watcher runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherConfig {
    /// NanoClaw v1's `data/ipc`: one folder per group.
    pub groups_root: Option<PathBuf>,
    /// NanoClaw v2's `data/v2-sessions`: one folder per agent group, one per
    /// session below it.
    pub sessions_root: Option<PathBuf>,
    /// Where unanswerable task entries go. Must lie outside both roots.
    pub quarantine_dir: PathBuf,
    /// Time between scans when run with [`Watcher::spawn`]. Default 100 ms.
    pub poll_interval: Duration,
    /// Task files larger than this are answered `too_large` unread.
    /// Default 64 KiB.
    pub max_task_bytes: u64,
    /// Task entries handled per group per scan. Default 4.
    pub max_tasks_per_group_per_scan: usize,
    /// Task bytes read per group per scan. Default 256 KiB; at least
    /// `max_task_bytes`.
    pub max_bytes_per_group_per_scan: u64,
    /// Directory entries read per folder per scan. Default 256.
    pub max_entries_per_scan: usize,
    /// Tasks per group over time.
    pub rate_limit: RateLimit,
    /// Results nobody collected are removed after this long. Default 5 min.
    pub result_ttl: Duration,
    /// Quarantined entries kept per group; beyond, entries are deleted.
    /// Default 100.
    pub max_quarantined_per_group: usize,
}

impl WatcherConfig {
    /// Defaults, with the quarantine at `quarantine_dir` and no roots yet.
    pub fn new(quarantine_dir: impl Into<PathBuf>) -> WatcherConfig {
        WatcherConfig {
            groups_root: None,
            sessions_root: None,
            quarantine_dir: quarantine_dir.into(),
            poll_interval: Duration::from_millis(100),
            max_task_bytes: DEFAULT_MAX_TASK_BYTES,
            max_tasks_per_group_per_scan: 4,
            max_bytes_per_group_per_scan: 256 * 1024,
            max_entries_per_scan: 256,
            rate_limit: RateLimit::default(),
            result_ttl: Duration::from_secs(300),
            max_quarantined_per_group: 100,
        }
    }

    /// Watches NanoClaw v1 group folders under `root` (`data/ipc`).
    pub fn with_groups_root(mut self, root: impl Into<PathBuf>) -> WatcherConfig {
        self.groups_root = Some(root.into());
        self
    }

    /// Watches NanoClaw v2 session folders under `root` (`data/v2-sessions`).
    pub fn with_sessions_root(mut self, root: impl Into<PathBuf>) -> WatcherConfig {
        self.sessions_root = Some(root.into());
        self
    }

    /// Checks the settings and the quarantine's place.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field, reason: &str| {
            Err(Error::Config {
                field,
                reason: reason.into(),
            })
        };
        if self.groups_root.is_none() && self.sessions_root.is_none() {
            return bad(
                "groups_root",
                "set groups_root (NanoClaw v1), sessions_root (NanoClaw v2), or both",
            );
        }
        if self.max_task_bytes == 0 {
            return bad("max_task_bytes", "must be at least 1");
        }
        if self.max_tasks_per_group_per_scan == 0 {
            return bad("max_tasks_per_group_per_scan", "must be at least 1");
        }
        if self.max_bytes_per_group_per_scan < self.max_task_bytes {
            return bad(
                "max_bytes_per_group_per_scan",
                "must be at least max_task_bytes",
            );
        }
        if self.max_entries_per_scan == 0 {
            return bad("max_entries_per_scan", "must be at least 1");
        }
        if self.poll_interval.is_zero() {
            return bad("poll_interval", "must be above zero");
        }
        for root in self.groups_root.iter().chain(&self.sessions_root) {
            if inside(&self.quarantine_dir, root) {
                return Err(Error::Config {
                    field: "quarantine_dir",
                    reason: format!(
                        "{} lies inside {}, which containers can write to",
                        self.quarantine_dir.display(),
                        root.display()
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Whether `path` is `root` or below it, by real path where both exist and
/// by the nearest existing ancestor otherwise.
fn inside(path: &Path, root: &Path) -> bool {
    let real = |p: &Path| {
        let mut existing = p.to_path_buf();
        let mut rest = Vec::new();
        loop {
            if let Ok(real) = existing.canonicalize() {
                return rest.iter().rev().fold(real, |acc: PathBuf, c| acc.join(c));
            }
            match (
                existing.file_name().map(ToOwned::to_owned),
                existing.parent(),
            ) {
                (Some(name), Some(parent)) => {
                    rest.push(name);
                    existing = parent.to_path_buf();
                }
                _ => return p.to_path_buf(),
            }
        }
    };
    real(path).starts_with(real(root))
}

/// What one scan did. Counts are over all groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Group (v1) or session (v2) folders looked at.
    pub mailboxes: usize,
    /// Tasks answered with `success: true`.
    pub answered: usize,
    /// Tasks answered with an error result (including `rate_limited`).
    pub rejected: usize,
    /// Of the rejected, those refused by the rate limit.
    pub rate_limited: usize,
    /// Entries moved to (or, when full, deleted instead of) the quarantine.
    pub quarantined: usize,
    /// Folders refused: symlinks, or not directories.
    pub refused: usize,
    /// Entries left for a later scan because a budget ran out.
    pub deferred: usize,
    /// Stale results and abandoned temp files removed.
    pub expired: usize,
}

/// A folder that receives tasks: one group folder (v1) or one session
/// folder (v2).
struct Mailbox {
    group: GroupName,
    path: PathBuf,
    dir: OwnedFd,
}

/// What a group may still do in this scan.
#[derive(Debug, Clone, Copy)]
struct Budget {
    tasks: usize,
    bytes: u64,
}

/// Finds and answers tasks. Use [`Watcher::scan_once`] to drive it by hand
/// (tests do), or [`Watcher::spawn`] to run it on its own thread.
pub struct Watcher {
    config: WatcherConfig,
    groups: Arc<RwLock<GroupMap>>,
    handler: Arc<dyn TaskHandler>,
    limiter: RateLimiter,
    quarantine: Quarantine,
    /// When each (folder, condition) was last logged, and how many of its
    /// warnings were held back since.
    logged: HashMap<(PathBuf, &'static str), (Instant, u64)>,
    /// Task files that could not be removed: skipped so they are not
    /// answered again and again.
    stuck: HashSet<PathBuf>,
    /// When each results folder was last swept of stale results.
    swept: HashMap<PathBuf, Instant>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// A watcher over the configured roots. Creates the quarantine folder.
    pub fn new(
        config: WatcherConfig,
        groups: GroupMap,
        handler: Arc<dyn TaskHandler>,
    ) -> Result<Watcher, Error> {
        config.validate()?;
        let quarantine = Quarantine::open(&config.quarantine_dir, config.max_quarantined_per_group)
            .map_err(|err| Error::io("create", &config.quarantine_dir, err))?;
        Ok(Watcher {
            limiter: RateLimiter::new(config.rate_limit),
            config,
            groups: Arc::new(RwLock::new(groups)),
            handler,
            quarantine,
            logged: HashMap::new(),
            stuck: HashSet::new(),
            swept: HashMap::new(),
        })
    }

    /// Replaces the group map (for example after a configuration reload).
    pub fn set_groups(&self, groups: GroupMap) {
        *self.groups.write().unwrap_or_else(PoisonError::into_inner) = groups;
    }

    /// Runs the watcher on a thread named `tg-ipc-watcher`, scanning every
    /// `poll_interval` until the handle is shut down or dropped.
    pub fn spawn(mut self) -> Result<WatcherHandle, Error> {
        let (stop, stopped) = mpsc::channel::<()>();
        let groups = Arc::clone(&self.groups);
        let poll = self.config.poll_interval;
        let thread = std::thread::Builder::new()
            .name("tg-ipc-watcher".into())
            .spawn(move || {
                loop {
                    self.scan_once();
                    match stopped.recv_timeout(poll) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            })
            .map_err(|err| Error::io("start the watcher thread for", "tg-ipc-watcher", err))?;
        Ok(WatcherHandle {
            stop: Some(stop),
            thread: Some(thread),
            groups,
        })
    }

    /// One pass over every mailbox.
    pub fn scan_once(&mut self) -> ScanReport {
        let mut report = ScanReport::default();
        let mut budgets: HashMap<GroupName, Budget> = HashMap::new();
        for mailbox in self.mailboxes(&mut report) {
            report.mailboxes += 1;
            let budget = budgets.entry(mailbox.group.clone()).or_insert(Budget {
                tasks: self.config.max_tasks_per_group_per_scan,
                bytes: self.config.max_bytes_per_group_per_scan,
            });
            let mut budget_left = *budget;
            self.serve(&mailbox, &mut budget_left, &mut report);
            *budget = budget_left;
            self.sweep(&mailbox, &mut report);
        }
        report
    }

    /// Every mailbox under the configured roots, in listing order.
    fn mailboxes(&mut self, report: &mut ScanReport) -> Vec<Mailbox> {
        let mut found = Vec::new();
        if let Some(root) = self.config.groups_root.clone() {
            self.each_group(&root, report, &mut |_, group, path, dir, _| {
                found.push(Mailbox { group, path, dir });
            });
        }
        if let Some(root) = self.config.sessions_root.clone() {
            let mut agent_groups = Vec::new();
            self.each_group(&root, report, &mut |_, group, path, dir, _| {
                agent_groups.push((group, path, dir));
            });
            for (group, path, dir) in agent_groups {
                let (names, _) = match fs_safety::list(&dir, self.config.max_entries_per_scan) {
                    Ok(listing) => listing,
                    Err(err) => {
                        self.log(&path, "list", || {
                            format!("cannot list {}: {err}", path.display())
                        });
                        continue;
                    }
                };
                for name in names {
                    let EntryName::Text(session) = name else {
                        continue;
                    };
                    if !is_valid_request_id(&session) {
                        continue;
                    }
                    let session_path = path.join(&session);
                    if let Some(dir) = self.open_folder(&dir, &session, &session_path, report) {
                        found.push(Mailbox {
                            group: group.clone(),
                            path: session_path,
                            dir,
                        });
                    }
                }
            }
        }
        found
    }

    /// Calls `each` for every valid group folder under `root`.
    fn each_group(
        &mut self,
        root: &Path,
        report: &mut ScanReport,
        each: &mut dyn FnMut(&mut Self, GroupName, PathBuf, OwnedFd, &mut ScanReport),
    ) {
        let root_dir = match fs_safety::open_dir(root) {
            Ok(dir) => dir,
            Err(err) => {
                self.log(root, "root", || {
                    format!("cannot open IPC root {}: {err}", root.display())
                });
                return;
            }
        };
        let names = match fs_safety::list(&root_dir, self.config.max_entries_per_scan.max(4096)) {
            Ok((names, _)) => names,
            Err(err) => {
                self.log(root, "list", || {
                    format!("cannot list {}: {err}", root.display())
                });
                return;
            }
        };
        for name in names {
            let EntryName::Text(name) = name else {
                continue;
            };
            let Ok(group) = GroupName::new(name.as_str()) else {
                continue;
            };
            let path = root.join(&name);
            if let Some(dir) = self.open_folder(&root_dir, &name, &path, report) {
                each(self, group, path, dir, report);
            }
        }
    }

    /// Opens the folder `name` in `parent` without following a symlink;
    /// logs and counts a refusal.
    fn open_folder(
        &mut self,
        parent: &OwnedFd,
        name: &str,
        path: &Path,
        report: &mut ScanReport,
    ) -> Option<OwnedFd> {
        match fs_safety::open_subdir(parent, name) {
            Ok(dir) => Some(dir),
            Err(err) if fs_safety::is_link_refusal(&err) => {
                // Plain files among the group folders are not ours to judge;
                // symlinks are refused loudly.
                if matches!(
                    fs_safety::lstat_at(parent, name).map(|s| Kind::of(&s)),
                    Ok(Kind::Symlink)
                ) {
                    report.refused += 1;
                    self.log(path, "symlink", || {
                        format!(
                            "refused {}: it is a symlink, so its real path may leave the IPC root",
                            path.display()
                        )
                    });
                }
                None
            }
            Err(err) => {
                self.log(path, "open", || {
                    format!("cannot open {}: {err}", path.display())
                });
                None
            }
        }
    }

    /// Answers the tasks waiting in one mailbox, within the group's budget.
    fn serve(&mut self, mailbox: &Mailbox, budget: &mut Budget, report: &mut ScanReport) {
        let tasks_path = mailbox.path.join(TASKS_DIR);
        let Some(tasks) = self.open_ipc_dir(mailbox, TASKS_DIR, false, report) else {
            return;
        };
        let (names, truncated) = match fs_safety::list(&tasks, self.config.max_entries_per_scan) {
            Ok(listing) => listing,
            Err(err) => {
                self.log(&tasks_path, "list", || {
                    format!("cannot list {}: {err}", tasks_path.display())
                });
                return;
            }
        };
        let names: Vec<EntryName> = names
            .into_iter()
            .filter(|name| !matches!(name, EntryName::Text(text) if text.starts_with('.')))
            .filter(|name| match name {
                EntryName::Text(text) => !self.stuck.contains(&tasks_path.join(text)),
                EntryName::Raw(_) => true,
            })
            .collect();
        if names.is_empty() {
            return;
        }
        if truncated {
            let max = self.config.max_entries_per_scan;
            self.log(&tasks_path, "crowded", || {
                format!(
                    "{} holds more than {max} entries; reading them a few at a time",
                    tasks_path.display()
                )
            });
        }
        let Some(results) = self.open_ipc_dir(mailbox, RESULTS_DIR, true, report) else {
            return;
        };
        // The descriptor walk cannot leave the group folder; a folder
        // swapped after it was opened is caught too (and logged) rather than
        // silently used, by comparing inodes, never by resolving a path.
        for (name, opened) in [(TASKS_DIR, &tasks), (RESULTS_DIR, &results)] {
            if !fs_safety::still_at(&mailbox.dir, name, opened).unwrap_or(false) {
                report.refused += 1;
                let path = mailbox.path.join(name);
                let group = mailbox.group.clone();
                self.log(&path, "swapped", || {
                    format!(
                        "refused {} of group {group}: it was replaced while being opened",
                        path.display()
                    )
                });
                return;
            }
        }
        let caller = Caller::new(
            mailbox.group.clone(),
            &self.groups.read().unwrap_or_else(PoisonError::into_inner),
        );
        let mut names = names.into_iter();
        for name in names.by_ref() {
            if budget.tasks == 0 {
                report.deferred += 1;
                break;
            }
            budget.tasks -= 1;
            if !self.handle_entry(mailbox, &caller, &tasks, &results, name, budget, report) {
                report.deferred += 1;
                break;
            }
        }
        report.deferred += names.count();
    }

    /// Opens `clawsec_traffic_tasks` or `clawsec_results` in a mailbox,
    /// refusing symlinks. `create` makes a missing folder.
    fn open_ipc_dir(
        &mut self,
        mailbox: &Mailbox,
        name: &'static str,
        create: bool,
        report: &mut ScanReport,
    ) -> Option<OwnedFd> {
        let path = mailbox.path.join(name);
        let opened = if create {
            fs_safety::ensure_subdir(&mailbox.dir, name, RESULTS_DIR_MODE)
        } else {
            fs_safety::open_subdir(&mailbox.dir, name)
        };
        match opened {
            Ok(dir) => Some(dir),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) if fs_safety::is_link_refusal(&err) => {
                report.refused += 1;
                self.log(&path, "symlink", || {
                    format!(
                        "refused {} of group {}: it is a symlink or not a directory, so its \
                         real path may leave the group folder",
                        path.display(),
                        mailbox.group
                    )
                });
                None
            }
            Err(err) => {
                self.log(&path, "open", || {
                    format!("cannot open {}: {err}", path.display())
                });
                None
            }
        }
    }

    /// Handles one entry of a tasks folder. Returns `false` if the group's
    /// byte budget ran out before it (the entry stays for the next scan).
    #[allow(clippy::too_many_arguments)]
    fn handle_entry(
        &mut self,
        mailbox: &Mailbox,
        caller: &Caller,
        tasks: &OwnedFd,
        results: &OwnedFd,
        name: EntryName,
        budget: &mut Budget,
        report: &mut ScanReport,
    ) -> bool {
        let text = match &name {
            EntryName::Text(text) => text.clone(),
            EntryName::Raw(_) => {
                self.quarantine(mailbox, tasks, &name, "its name is not UTF-8", report);
                return true;
            }
        };
        let Some(id) = RequestId::from_file_name(&text) else {
            self.quarantine(
                mailbox,
                tasks,
                &name,
                "its name is not <requestId>.json with a valid request id",
                report,
            );
            return true;
        };
        let stat = match fs_safety::lstat_at(tasks, &text) {
            Ok(stat) => stat,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return true,
            Err(err) => {
                let path = mailbox.path.join(TASKS_DIR).join(&text);
                self.log(&mailbox.path, "stat", || {
                    format!("cannot stat {}: {err}", path.display())
                });
                return true;
            }
        };
        let kind = Kind::of(&stat);
        if kind != Kind::Regular {
            let reason = format!("it is {}, not a regular file", kind.describe());
            self.quarantine(mailbox, tasks, &name, &reason, report);
            return true;
        }
        let size = fs_safety::size_of(&stat).min(self.config.max_task_bytes);
        if size > budget.bytes {
            return false;
        }
        budget.bytes -= size;

        if !self.limiter.allow(&mailbox.group, Instant::now()) {
            report.rate_limited += 1;
            let group = mailbox.group.clone();
            self.log(&mailbox.path, "rate", || {
                format!("group {group} is over its IPC rate limit; refusing its tasks for now")
            });
            let response = Response::error(
                id,
                ErrorCode::RateLimited,
                format!(
                    "too many requests from group {}; wait a moment and retry",
                    mailbox.group
                ),
            );
            self.answer(mailbox, tasks, results, &text, &response, report);
            return true;
        }

        let response =
            match fs_safety::read_regular(tasks, &text, &stat, self.config.max_task_bytes) {
                Ok(bytes) => match Task::parse(&bytes) {
                    Ok(task) if task.request_id == id => {
                        dispatch(self.handler.as_ref(), caller, id, &task.request)
                    }
                    Ok(task) => Response::error(
                        id,
                        ErrorCode::BadRequest,
                        format!(
                            "requestId {:?} does not match the task file name",
                            task.request_id.as_str()
                        ),
                    ),
                    Err(err) => Response::error(id, err.code, err.message),
                },
                Err(ReadRefusal::TooLarge) => Response::error(
                    id,
                    ErrorCode::TooLarge,
                    format!(
                        "task file is larger than {} bytes",
                        self.config.max_task_bytes
                    ),
                ),
                Err(ReadRefusal::Io(err)) if err.kind() == io::ErrorKind::NotFound => return true,
                Err(refusal) => {
                    let reason = match refusal {
                        ReadRefusal::NotRegular(kind) => {
                            format!("it became {} while being opened", kind.describe())
                        }
                        ReadRefusal::Replaced => "it was replaced while being opened".into(),
                        ReadRefusal::Linked => "it has more than one hard link".into(),
                        ReadRefusal::Io(err) => format!("it could not be read: {err}"),
                        ReadRefusal::TooLarge => "it is too large".into(),
                    };
                    self.quarantine(mailbox, tasks, &name, &reason, report);
                    return true;
                }
            };
        self.answer(mailbox, tasks, results, &text, &response, report);
        true
    }

    /// Removes the task file, then writes its result.
    fn answer(
        &mut self,
        mailbox: &Mailbox,
        tasks: &OwnedFd,
        results: &OwnedFd,
        task_name: &str,
        response: &Response,
        report: &mut ScanReport,
    ) {
        let task_path = mailbox.path.join(TASKS_DIR).join(task_name);
        if let Err(err) = fs_safety::remove(tasks, task_name) {
            // Answering without removing would answer it again next scan.
            self.log(&mailbox.path, "remove", || {
                format!(
                    "cannot remove {}: {err}; it will be skipped",
                    task_path.display()
                )
            });
            if self.stuck.len() < 10_000 {
                self.stuck.insert(task_path);
            }
            return;
        }
        let result_name = response.request_id.file_name();
        match fs_safety::write_atomic(results, &result_name, &response.to_json()) {
            Ok(()) => {
                if response.success {
                    report.answered += 1;
                } else {
                    report.rejected += 1;
                }
                tracing::debug!(
                    group = %mailbox.group,
                    request_id = %response.request_id,
                    success = response.success,
                    "answered IPC task"
                );
            }
            Err(err) => {
                let path = mailbox.path.join(RESULTS_DIR).join(&result_name);
                self.log(&mailbox.path, "write", || {
                    format!("cannot write {}: {err}", path.display())
                });
            }
        }
    }

    fn quarantine(
        &mut self,
        mailbox: &Mailbox,
        tasks: &OwnedFd,
        name: &EntryName,
        reason: &str,
        report: &mut ScanReport,
    ) {
        report.quarantined += 1;
        let outcome = self.quarantine.put(tasks.as_fd(), name, &mailbox.group);
        let task_path = mailbox.path.join(TASKS_DIR);
        let shown = name.display();
        let what = match &outcome {
            Outcome::Moved(to) => format!("moved to {}", to.display()),
            Outcome::Removed(why) => format!("deleted ({why})"),
            Outcome::Left(why) => {
                if let EntryName::Text(text) = name
                    && self.stuck.len() < 10_000
                {
                    self.stuck.insert(task_path.join(text));
                }
                format!("left in place ({why})")
            }
        };
        let group = mailbox.group.clone();
        self.log(&task_path, "quarantine", || {
            format!("quarantined task entry {shown} of group {group}: {reason}; {what}")
        });
        tracing::debug!(group = %mailbox.group, entry = %shown, reason, outcome = %what, "quarantined");
    }

    /// Removes results and temp files older than the TTL, at most once per
    /// half TTL per mailbox.
    fn sweep(&mut self, mailbox: &Mailbox, report: &mut ScanReport) {
        let now = Instant::now();
        let due = self
            .swept
            .get(&mailbox.path)
            .is_none_or(|last| now.saturating_duration_since(*last) >= self.config.result_ttl / 2);
        if !due {
            return;
        }
        self.swept.insert(mailbox.path.clone(), now);
        let cutoff = SystemTime::now()
            .checked_sub(self.config.result_ttl)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let Some(cutoff) = cutoff else {
            return;
        };
        // Uncollected results, and temp files a writer left behind in either
        // folder (a crash between create and rename).
        for (folder, results) in [(RESULTS_DIR, true), (TASKS_DIR, false)] {
            let Ok(dir) = fs_safety::open_subdir(&mailbox.dir, folder) else {
                continue;
            };
            let Ok((names, _)) = fs_safety::list(&dir, self.config.max_entries_per_scan) else {
                continue;
            };
            for name in names {
                let EntryName::Text(text) = name else {
                    continue;
                };
                let stale_kind = (results && RequestId::from_file_name(&text).is_some())
                    || (text.starts_with('.') && text.contains(".json.tmp-"));
                if !stale_kind {
                    continue;
                }
                let Ok(stat) = fs_safety::lstat_at(&dir, &text) else {
                    continue;
                };
                if matches!(Kind::of(&stat), Kind::Regular | Kind::Symlink)
                    && fs_safety::mtime_secs(&stat) < cutoff
                    && fs_safety::remove(&dir, &text).is_ok()
                {
                    report.expired += 1;
                }
            }
        }
    }

    /// Logs `message` as a warning, at most once a minute per `folder` (a
    /// group's folder, or a root) and condition; the next warning says how
    /// many were held back. Keys are folders the host chose, never names a
    /// container made up, so there are few of them.
    fn log(&mut self, folder: &Path, condition: &'static str, message: impl FnOnce() -> String) {
        let now = Instant::now();
        let key = (folder.to_path_buf(), condition);
        match self.logged.get_mut(&key) {
            Some((last, held)) if now.saturating_duration_since(*last) < LOG_EVERY => {
                *held += 1;
            }
            Some((last, held)) => {
                let held = std::mem::replace(held, 0);
                *last = now;
                match held {
                    0 => tracing::warn!("{}", message()),
                    n => tracing::warn!("{} ({n} more like it were not logged)", message()),
                }
            }
            None => {
                if self.logged.len() >= 10_000 {
                    self.logged
                        .retain(|_, (last, _)| now.saturating_duration_since(*last) < LOG_EVERY);
                }
                self.logged.insert(key, (now, 0));
                tracing::warn!("{}", message());
            }
        }
    }
}

/// A running watcher. Dropping it stops the watcher too.
#[derive(Debug)]
pub struct WatcherHandle {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    groups: Arc<RwLock<GroupMap>>,
}

impl WatcherHandle {
    /// Replaces the group map; the next task sees the new one.
    pub fn set_groups(&self, groups: GroupMap) {
        *self.groups.write().unwrap_or_else(PoisonError::into_inner) = groups;
    }

    /// Stops the watcher and waits for its thread: at most one scan's time.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WatcherHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[cfg(test)]
mod tests;
