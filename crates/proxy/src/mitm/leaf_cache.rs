//! A bounded LRU of TLS server configs, one per host, each expiring well
//! before its leaf does: a repeated host costs no signing.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use rustls::ServerConfig;

use super::ca::{CertificateAuthority, LEAF_LIFETIME};
use crate::error::Error;
use crate::upstream::crypto_provider;

/// Cached configs are replaced after this long, half the leaf lifetime.
const CACHE_TTL: Duration = Duration::from_secs(LEAF_LIFETIME.as_secs() / 2);

/// Server configs for inspected hosts.
pub(crate) struct LeafCache {
    ca: CertificateAuthority,
    cache: Mutex<LruCache<String, (Arc<ServerConfig>, Instant)>>,
}

impl std::fmt::Debug for LeafCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafCache").finish_non_exhaustive()
    }
}

impl LeafCache {
    pub(crate) fn new(ca: CertificateAuthority, capacity: usize) -> LeafCache {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        LeafCache {
            ca,
            cache: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The server config for `host`, from the cache or freshly signed.
    pub(crate) fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, Error> {
        let host = host.to_ascii_lowercase();
        if let Ok(mut cache) = self.cache.lock()
            && let Some((config, at)) = cache.get(&host)
        {
            if at.elapsed() < CACHE_TTL {
                return Ok(config.clone());
            }
            cache.pop(&host);
        }
        // Sign outside the lock; two racing misses sign twice, harmlessly.
        let leaf = self.ca.issue(&host)?;
        let mut config = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?
            .with_no_client_auth()
            .with_single_cert(leaf.chain, leaf.key)
            .map_err(|e| Error::Ca(format!("leaf for {host} unusable: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(host, (config.clone(), Instant::now()));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mitm::ca::tests::test_ca;

    #[test]
    fn a_repeated_host_costs_no_signing_and_the_cache_is_bounded() {
        let cache = LeafCache::new(test_ca(), 2);
        let a = cache.server_config("a.example").unwrap();
        assert!(
            Arc::ptr_eq(&a, &cache.server_config("A.example").unwrap()),
            "cached, case-insensitive"
        );
        let _b = cache.server_config("b.example").unwrap();
        let _c = cache.server_config("c.example").unwrap();
        // Capacity 2: `a` was least recently used and is gone.
        assert!(!Arc::ptr_eq(&a, &cache.server_config("a.example").unwrap()));
        assert_eq!(a.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }
}
