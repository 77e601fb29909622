//! The Python interpreter the end-to-end tests drive real Python clients
//! with (the MCP SDK, `requests`): `<repo>/.venv`, with every package
//! pinned in `tests/python/requirements.txt` installed, set up on first use
//! if it is missing or out of date
//! (`python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// The `(package, version)` pairs pinned in `requirements`.
fn pins(requirements: &str) -> Vec<(String, String)> {
    requirements
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter_map(|line| line.split_once("=="))
        .map(|(name, version)| (name.trim().to_owned(), version.trim().to_owned()))
        .collect()
}

/// The pins `python` does not have at the pinned version.
fn missing(python: &Path, pins: &[(String, String)]) -> Vec<String> {
    let script = "import importlib.metadata as m, sys\n\
                  for name in sys.argv[1:]:\n\
                  \x20   try: print(name, m.version(name))\n\
                  \x20   except m.PackageNotFoundError: print(name, '-')\n";
    let installed = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(pins.iter().map(|(name, _)| name))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    pins.iter()
        .filter(|(name, version)| {
            !installed
                .lines()
                .any(|line| line == format!("{name} {version}"))
        })
        .map(|(name, version)| format!("{name}=={version}"))
        .collect()
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn set_up() -> Result<PathBuf, String> {
    let venv = repo().join(".venv");
    let python = venv.join("bin/python");
    let requirements = repo().join("tests/python/requirements.txt");
    let text = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let pins = pins(&text);
    if pins.is_empty() {
        return Err("tests/python/requirements.txt pins nothing".into());
    }
    if python.exists() && missing(&python, &pins).is_empty() {
        return Ok(python);
    }
    if !python.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "-r"])
        .arg(&requirements))?;
    match missing(&python, &pins) {
        still if still.is_empty() => Ok(python),
        still => Err(format!(
            "not importable after install: {}",
            still.join(", ")
        )),
    }
}

/// The Python interpreter of `<repo>/.venv` with every pinned package,
/// set up on first use. Panics with the manual set-up command when that
/// fails.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(set_up) {
        Ok(python) => python,
        Err(why) => panic!(
            "the Python end-to-end tests need Python 3 with the packages pinned in \
             tests/python/requirements.txt in {}/.venv, and setting it up failed: {why}\n\
             Set it up by hand with: python3 -m venv .venv && \
             .venv/bin/pip install -r tests/python/requirements.txt",
            repo().display()
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pins_are_read_from_requirement_lines() {
        let text = "# comment\nmcp==2.3.0\n\nrequests == 2.34.2  # why\nother>=1\n";
        assert_eq!(
            super::pins(text),
            vec![
                ("mcp".to_owned(), "2.3.0".to_owned()),
                ("requests".to_owned(), "2.34.2".to_owned())
            ]
        );
    }
}
