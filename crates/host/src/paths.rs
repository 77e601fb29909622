//! Where the guardian keeps its state, and creating those folders with the right modes.
//!
//! ```text
//! <home>/                      0700
//!   config.json                optional
//!   fingerprint.key            0600, 32 random bytes (finding fingerprints)
//!   ca/                        0700
//!     ca.pem                   CA certificate (public)
//!     ca.key                   CA private key, 0600, never leaves the host
//!   logs/                      0700, default log dir
//!     findings.jsonl[.N]       0600
//!   run/                       0700
//!     lock                     exclusive lock held by the running service
//!     pid                      pid of the running service
//!     control.sock             0600 control socket
//!     listeners.json           the bound addresses (port 0 resolved)
//!     service.log              stderr of a service started with `start`
//!   trust/<runtime>/           0755, public material for read-only mounts
//!     guardian-ca.pem          0644, the guardian CA alone
//!     ca-bundle.pem            0644, system roots + the guardian CA
//! ```

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::{Config, Env};
use crate::error::Error;

/// Mode of every private folder.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of every private file.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of the exported trust folders, meant for read-only mounts.
pub const PUBLIC_DIR_MODE: u32 = 0o755;
/// Mode of the exported trust files.
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// The folder name under the platform data folder.
const HOME_SUFFIX: &str = "nanoclaw/security/traffic-guardian";

/// Every path the guardian uses, resolved from a [`Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    /// The state folder.
    pub home: PathBuf,
    /// `<home>/config.json`.
    pub config_file: PathBuf,
    /// `<home>/fingerprint.key`.
    pub fingerprint_key: PathBuf,
    /// The CA folder (default `<home>/ca`).
    pub ca_dir: PathBuf,
    /// The log folder of `findings.jsonl` (default `<home>/logs`).
    pub log_dir: PathBuf,
    /// `<home>/run`.
    pub run_dir: PathBuf,
    /// `<home>/trust`: default parent of the per-runtime trust folders.
    pub trust_root: PathBuf,
}

impl StatePaths {
    /// Resolves the paths of `config`. `config.home` must be set (config
    /// loading sets it); otherwise the default home of `env` is used.
    pub fn new(config: &Config, env: &Env) -> Result<StatePaths, Error> {
        let home = match &config.home {
            Some(home) => home.clone(),
            None => default_home(env)?,
        };
        Ok(StatePaths::with_home(home, config))
    }

    /// The paths of `config` with `home` as the state folder.
    pub fn with_home(home: PathBuf, config: &Config) -> StatePaths {
        StatePaths {
            config_file: home.join("config.json"),
            fingerprint_key: home.join("fingerprint.key"),
            ca_dir: config.ca_dir.clone().unwrap_or_else(|| home.join("ca")),
            log_dir: config.log_dir.clone().unwrap_or_else(|| home.join("logs")),
            run_dir: home.join("run"),
            trust_root: home.join("trust"),
            home,
        }
    }

    /// The CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.ca_dir.join("ca.pem")
    }

    /// The CA private key.
    pub fn ca_key(&self) -> PathBuf {
        self.ca_dir.join("ca.key")
    }

    /// The lock file held by the running service.
    pub fn lock_file(&self) -> PathBuf {
        self.run_dir.join("lock")
    }

    /// The pid file of the running service.
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join("pid")
    }

    /// The control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.run_dir.join("control.sock")
    }

    /// The file naming the bound listener addresses.
    pub fn listeners_file(&self) -> PathBuf {
        self.run_dir.join("listeners.json")
    }

    /// Where `start` sends the service's stderr.
    pub fn service_log(&self) -> PathBuf {
        self.run_dir.join("service.log")
    }

    /// The default trust folder of `runtime`.
    pub fn default_trust_dir(&self, runtime: &str) -> PathBuf {
        self.trust_root.join(runtime)
    }
}

/// The default home: `$NANOCLAW_TRAFFIC_GUARDIAN_HOME`, else
/// `$XDG_DATA_HOME/nanoclaw/security/traffic-guardian`, else
/// `~/.local/share/…` (Linux) or `~/Library/Application Support/…` (macOS).
pub fn default_home(env: &Env) -> Result<PathBuf, Error> {
    if let Some(home) = env
        .get("NANOCLAW_TRAFFIC_GUARDIAN_HOME")
        .filter(|h| !h.is_empty())
    {
        return Ok(PathBuf::from(home));
    }
    if let Some(xdg) = env
        .get("XDG_DATA_HOME")
        .filter(|x| Path::new(x).is_absolute())
    {
        return Ok(Path::new(xdg).join(HOME_SUFFIX));
    }
    match env.get("HOME").filter(|h| Path::new(h).is_absolute()) {
        Some(user_home) if cfg!(target_os = "macos") => Ok(Path::new(user_home)
            .join("Library/Application Support")
            .join(HOME_SUFFIX)),
        Some(user_home) => Ok(Path::new(user_home).join(".local/share").join(HOME_SUFFIX)),
        None => Err(Error::NoHome),
    }
}

/// Creates `dir` (and missing parents) and sets its mode to exactly
/// `mode`. An existing folder gets its mode set too.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<(), Error> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(Error::unsafe_path(dir, "exists but is not a folder")),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(|source| Error::io("create folder", dir, source))?;
        }
        Err(source) => return Err(Error::io("inspect", dir, source)),
    }
    let meta = fs::metadata(dir).map_err(|source| Error::io("inspect", dir, source))?;
    if meta.mode() & 0o777 != mode {
        fs::set_permissions(dir, Permissions::from_mode(mode))
            .map_err(|source| Error::io("set permissions of", dir, source))?;
    }
    Ok(())
}

/// Creates the home folder and the private folders inside it (0700).
pub fn ensure_home(paths: &StatePaths) -> Result<(), Error> {
    ensure_dir(&paths.home, PRIVATE_DIR_MODE)?;
    ensure_dir(&paths.run_dir, PRIVATE_DIR_MODE)?;
    Ok(())
}

/// Writes `bytes` to `path` atomically (temporary file then rename) with
/// mode `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|source| Error::io("create", &tmp, source))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.set_permissions(Permissions::from_mode(mode)))
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("write", &tmp, source));
    }
    fs::rename(&tmp, path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        Error::io("rename into place", path, source)
    })
}

/// The mode bits of `path`, if it exists.
pub fn mode_of(path: &Path) -> Option<u32> {
    fs::metadata(path).ok().map(|m| m.mode() & 0o777)
}

/// Loads the per-install fingerprint key, creating it (32 random bytes,
/// mode 0600) on first use. A key file that is too short, or readable by
/// others, is refused rather than silently replaced.
pub fn fingerprint_key(paths: &StatePaths) -> Result<Vec<u8>, Error> {
    let path = &paths.fingerprint_key;
    match fs::read(path) {
        Ok(key) => {
            if mode_of(path).is_some_and(|m| m & 0o077 != 0) {
                return Err(Error::unsafe_path(
                    path,
                    "fingerprint key is readable by group or others; run chmod 600 on it",
                ));
            }
            if key.len() < 16 {
                return Err(Error::unsafe_path(
                    path,
                    "fingerprint key is shorter than 16 bytes; remove it to make a new one",
                ));
            }
            Ok(key)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let mut key = vec![0u8; 32];
            getrandom::fill(&mut key)
                .map_err(|err| Error::io("make", path, io::Error::other(err.to_string())))?;
            write_atomic(path, &key, PRIVATE_FILE_MODE)?;
            Ok(key)
        }
        Err(source) => Err(Error::io("read", path, source)),
    }
}

/// Whether `inner` is `outer` or lies below it, comparing the real paths
/// where they exist (so a symlink does not hide a mount) and the
/// lexically normalised paths otherwise.
pub fn is_within(inner: &Path, outer: &Path) -> bool {
    let inner = real_or_normal(inner);
    let outer = real_or_normal(outer);
    inner.starts_with(&outer)
}

/// The canonical path of the longest existing ancestor, with the rest
/// appended after lexical normalisation.
fn real_or_normal(path: &Path) -> PathBuf {
    let normal = normalise(path);
    let mut existing = normal.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = fs::canonicalize(existing) {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return normal,
        }
    }
}

/// Removes `.` and resolves `..` lexically.
fn normalise(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn default_home_follows_the_documented_order() {
        let got = |pairs: &[(&str, &str)]| default_home(&env(pairs)).ok();
        assert_eq!(
            got(&[
                ("NANOCLAW_TRAFFIC_GUARDIAN_HOME", "/g"),
                ("XDG_DATA_HOME", "/x"),
                ("HOME", "/h")
            ]),
            Some(PathBuf::from("/g"))
        );
        assert_eq!(
            got(&[("XDG_DATA_HOME", "/x"), ("HOME", "/h")]),
            Some(PathBuf::from("/x/nanoclaw/security/traffic-guardian"))
        );
        // A relative XDG_DATA_HOME is ignored, as the XDG spec says.
        let fallback = if cfg!(target_os = "macos") {
            "/h/Library/Application Support/nanoclaw/security/traffic-guardian"
        } else {
            "/h/.local/share/nanoclaw/security/traffic-guardian"
        };
        assert_eq!(
            got(&[("XDG_DATA_HOME", "rel"), ("HOME", "/h")]),
            Some(PathBuf::from(fallback))
        );
        assert_eq!(got(&[]), None);
    }

    #[test]
    fn creates_private_folders_and_tightens_loose_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        ensure_dir(&dir, PRIVATE_DIR_MODE).unwrap();
        assert_eq!(mode_of(&dir), Some(0o700));
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&dir, PRIVATE_DIR_MODE).unwrap();
        assert_eq!(mode_of(&dir), Some(0o700));
        let file = tmp.path().join("f");
        fs::write(&file, "x").unwrap();
        assert!(ensure_dir(&file, PRIVATE_DIR_MODE).is_err());
    }

    #[test]
    fn fingerprint_key_is_made_once_private_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = StatePaths::with_home(tmp.path().to_owned(), &Config::default());
        let first = fingerprint_key(&paths).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(mode_of(&paths.fingerprint_key), Some(0o600));
        assert_eq!(fingerprint_key(&paths).unwrap(), first);
        fs::set_permissions(&paths.fingerprint_key, Permissions::from_mode(0o644)).unwrap();
        let err = fingerprint_key(&paths).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        fs::write(&paths.fingerprint_key, b"short").unwrap();
        fs::set_permissions(&paths.fingerprint_key, Permissions::from_mode(0o600)).unwrap();
        assert!(fingerprint_key(&paths).is_err());
    }

    #[test]
    fn containment_sees_through_dots_and_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let mount = tmp.path().join("mount");
        fs::create_dir(&mount).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&mount, &link).unwrap();
        assert!(is_within(&mount.join("x/y"), &mount));
        assert!(is_within(&link.join("x"), &mount));
        assert!(is_within(&tmp.path().join("other/../mount/z"), &mount));
        assert!(!is_within(&tmp.path().join("mountain"), &mount));
        assert!(!is_within(tmp.path(), &mount));
    }

    #[test]
    fn atomic_write_sets_the_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.pem");
        write_atomic(&path, b"one", PUBLIC_FILE_MODE).unwrap();
        write_atomic(&path, b"two", PUBLIC_FILE_MODE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode_of(&path), Some(0o644));
    }
}
