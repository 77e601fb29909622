//! Keyed fingerprints of matched values, so the same secret can be
//! correlated across findings without ever being stored.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix of every fingerprint string.
pub const FINGERPRINT_PREFIX: &str = "hmac-sha256:";

/// Computes `hmac-sha256:<16 hex digits>` over a rule id and a matched value,
/// keyed with a per-install secret that never leaves the host.
///
/// Sixty-four bits are plenty to correlate findings and too few, with the key
/// unknown, to confirm a guess at the secret.
#[derive(Clone)]
pub struct Fingerprinter {
    key: Vec<u8>,
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fingerprinter").finish_non_exhaustive()
    }
}

impl Fingerprinter {
    /// The shortest key accepted, in bytes.
    pub const MIN_KEY_LEN: usize = 16;

    /// Uses `key` as the HMAC key. Returns `None` for keys shorter than
    /// [`Self::MIN_KEY_LEN`].
    pub fn new(key: &[u8]) -> Option<Fingerprinter> {
        (key.len() >= Self::MIN_KEY_LEN).then(|| Fingerprinter { key: key.to_vec() })
    }

    /// The fingerprint of `value` as matched by rule `rule_id`.
    pub fn fingerprint(&self, rule_id: &str, value: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail in practice.
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) else {
            return String::from(FINGERPRINT_PREFIX);
        };
        mac.update(rule_id.as_bytes());
        mac.update(&[0]);
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(FINGERPRINT_PREFIX.len() + 16);
        out.push_str(FINGERPRINT_PREFIX);
        for byte in &digest[..8] {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_keyed_and_short() {
        let a = Fingerprinter::new(b"0123456789abcdef0123").unwrap();
        let b = Fingerprinter::new(b"another-key-of-20-bytes").unwrap();
        let fa = a.fingerprint("ai_api_key", b"sk-ant-secret");
        assert_eq!(fa, a.fingerprint("ai_api_key", b"sk-ant-secret"));
        assert_ne!(fa, b.fingerprint("ai_api_key", b"sk-ant-secret"));
        assert_ne!(fa, a.fingerprint("github_token", b"sk-ant-secret"));
        assert_eq!(fa.len(), FINGERPRINT_PREFIX.len() + 16);
        assert!(!fa.contains("secret"));
    }

    #[test]
    fn rejects_short_keys() {
        assert!(Fingerprinter::new(b"short").is_none());
    }
}
