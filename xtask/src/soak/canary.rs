//! The soak's canary secrets, and the search for them in everything the
//! guardian wrote.
//!
//! Every secret the load sends carries two run tags: ten random characters
//! right after its public prefix, and ten more at its end. Redaction keeps
//! at most the public prefix, so either tag turning up in any file means a
//! secret (or a piece of one) leaked. Searching for two tags instead of
//! every secret keeps the check linear however many unique secrets a long
//! run sends.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::rng::{Rng, mix};

/// The characters of token bodies.
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Characters of a tag.
const TAG_LEN: usize = 10;
/// How many shared GitHub tokens the load rotates through.
pub(crate) const SHARED_TOKENS: usize = 3;

/// This run's secrets.
#[derive(Debug, Clone)]
pub(crate) struct Canaries {
    head: String,
    tail: String,
    seed: u64,
    shared: Vec<String>,
}

impl Canaries {
    pub(crate) fn new(rng: &mut Rng) -> Canaries {
        let head = rng.string(TAG_LEN, ALNUM);
        let tail = rng.string(TAG_LEN, ALNUM);
        let shared = (0..SHARED_TOKENS)
            .map(|_| format!("ghp_{head}{}{tail}", rng.string(16, ALNUM)))
            .collect();
        Canaries {
            seed: rng.next_u64(),
            head,
            tail,
            shared,
        }
    }

    /// The `n`th unique Anthropic-shaped key: no two `n` give the same
    /// key. `n` goes through a bijection before it is written, so keys do
    /// not share long runs of padding (which would not look generated).
    pub(crate) fn unique_key(&self, n: u64) -> String {
        let mut filler = Rng::new(self.seed ^ n);
        format!(
            "sk-ant-api03-{}{}{}{}",
            self.head,
            base62(mix(n ^ self.seed), 11),
            filler.string(30, ALNUM),
            self.tail
        )
    }

    /// The `n`th unique npm token, for uploads the client abandons part
    /// way.
    pub(crate) fn abandoned_token(&self, n: u64) -> String {
        let mut filler = Rng::new(self.seed ^ n ^ 0x5A5A);
        format!(
            "npm_{}{}{}{}",
            self.head,
            base62(mix(n ^ self.seed ^ 0x5A5A), 11),
            filler.string(5, ALNUM),
            self.tail
        )
    }

    /// One of the [`SHARED_TOKENS`] GitHub tokens.
    pub(crate) fn shared_token(&self, i: usize) -> &str {
        &self.shared[i % SHARED_TOKENS]
    }

    /// The tags any leaked secret would show.
    pub(crate) fn tags(&self) -> [&str; 2] {
        [&self.head, &self.tail]
    }
}

/// `n` in base 62, left-padded to `width`.
fn base62(mut n: u64, width: usize) -> String {
    let mut digits = vec![ALNUM[0]; width];
    for slot in digits.iter_mut().rev() {
        *slot = ALNUM[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

/// What the leak search looked at and found.
#[derive(Debug, Default)]
pub(crate) struct LeakScan {
    pub(crate) files: usize,
    pub(crate) bytes: u64,
    /// Files holding a tag.
    pub(crate) leaks: Vec<PathBuf>,
}

/// Searches every regular file under each of `roots` for the canaries'
/// tags.
pub(crate) fn scan(roots: &[&Path], canaries: &Canaries) -> Result<LeakScan> {
    let mut out = LeakScan::default();
    let mut pending: Vec<PathBuf> = roots.iter().map(|p| p.to_path_buf()).collect();
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("inspecting {}", path.display()))?;
        if meta.is_dir() {
            for entry in
                std::fs::read_dir(&path).with_context(|| format!("listing {}", path.display()))?
            {
                pending.push(entry?.path());
            }
        } else if meta.is_file() {
            out.files += 1;
            out.bytes += meta.len();
            if file_holds(&path, &canaries.tags())? {
                out.leaks.push(path);
            }
        }
    }
    out.leaks.sort();
    Ok(out)
}

/// Whether the file at `path` contains any of `needles`, read in chunks
/// that overlap by a needle's length so a tag across a chunk border is
/// still seen.
fn file_holds(path: &Path, needles: &[&str]) -> Result<bool> {
    const CHUNK: usize = 1 << 20;
    let overlap = needles.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut window: Vec<u8> = Vec::with_capacity(CHUNK + overlap);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = file
            .read(&mut chunk)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(false);
        }
        window.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&window);
        if needles.iter().any(|needle| text.contains(needle)) {
            return Ok(true);
        }
        let keep = window.len().min(overlap);
        window.drain(..window.len() - keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_keys_are_unique_and_tagged() {
        let canaries = Canaries::new(&mut Rng::new(7));
        let keys: std::collections::HashSet<String> = (0..1000)
            .flat_map(|n| [canaries.unique_key(n), canaries.abandoned_token(n)])
            .collect();
        assert_eq!(keys.len(), 2000);
        assert_eq!(canaries.abandoned_token(1).len(), "npm_".len() + 36);
        for key in keys.iter().chain(canaries.shared.iter()) {
            assert!(canaries.tags().iter().all(|tag| key.contains(tag)), "{key}");
        }
        assert_eq!(canaries.unique_key(5), canaries.unique_key(5));
        assert_eq!(canaries.shared_token(0).len(), "ghp_".len() + 36);
        assert_eq!(base62(61, 3), "AA9");
        assert_eq!(base62(62, 3), "ABA");
        assert_eq!(base62(u64::MAX, 11).len(), 11);
    }

    #[test]
    fn the_leak_search_finds_a_tag_anywhere_even_across_chunks() {
        let canaries = Canaries::new(&mut Rng::new(9));
        let dir = tempfile::tempdir().unwrap();
        let clean = dir.path().join("clean.log");
        std::fs::write(&clean, "sk-ant-api03-[REDACTED] and nothing else\n").unwrap();
        let nested = dir.path().join("logs");
        std::fs::create_dir(&nested).unwrap();
        // The head tag straddles the 1 MiB chunk border.
        let mut big = vec![b'x'; (1 << 20) - 5 - "sk-ant-api03-".len()];
        big.extend_from_slice(canaries.unique_key(3).as_bytes());
        std::fs::write(nested.join("findings.jsonl.1"), &big).unwrap();
        let mut tail_only = b"...".to_vec();
        let key = canaries.unique_key(4);
        tail_only.extend_from_slice(&key.as_bytes()[key.len() - 14..]);
        std::fs::write(nested.join("service.log"), &tail_only).unwrap();
        let found = scan(&[dir.path()], &canaries).unwrap();
        assert_eq!(found.files, 3);
        assert_eq!(
            found.leaks,
            [nested.join("findings.jsonl.1"), nested.join("service.log")]
        );
    }
}
