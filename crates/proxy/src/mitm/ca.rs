//! The host CA as an in-memory signer, and the leaf certificates it issues.
//! The proxy never writes the key anywhere.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::Error;

/// How far back a leaf's validity starts, for clients with a skewed clock.
pub(crate) const LEAF_BACKDATE: Duration = Duration::from_secs(60 * 60);

/// How long a leaf is valid after it is issued.
pub(crate) const LEAF_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The CA that signs leaf certificates for inspected HTTPS: its
/// certificate and signing key, held in memory only. The host reads them
/// from its private folder; the proxy never writes them anywhere, and
/// `Debug` shows neither.
#[derive(Clone)]
pub struct CertificateAuthority {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertificateAuthority { .. }")
    }
}

/// A freshly issued leaf: its chain (leaf, then CA) and its own key.
pub(crate) struct Leaf {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl CertificateAuthority {
    /// Loads a CA from its PEM certificate and PEM (PKCS#8) private key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<CertificateAuthority, Error> {
        use rustls_pki_types::pem::PemObject;
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| Error::Ca(format!("CA certificate is not PEM: {e}")))?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| Error::Ca(format!("CA key is not a usable PEM private key: {e}")))?;
        CertificateAuthority::from_parts(cert, key)
    }

    /// Loads a CA from its DER certificate and DER (PKCS#8) private key.
    pub fn from_der(
        cert: CertificateDer<'static>,
        key: &PrivatePkcs8KeyDer<'_>,
    ) -> Result<CertificateAuthority, Error> {
        let key = KeyPair::try_from(key)
            .map_err(|e| Error::Ca(format!("CA key is not a usable private key: {e}")))?;
        CertificateAuthority::from_parts(cert, key)
    }

    fn from_parts(
        cert: CertificateDer<'static>,
        key: KeyPair,
    ) -> Result<CertificateAuthority, Error> {
        let issuer = Issuer::from_ca_cert_der(&cert, key)
            .map_err(|e| Error::Ca(format!("CA certificate cannot be parsed: {e}")))?;
        Ok(CertificateAuthority {
            inner: Arc::new(Inner { issuer, cert }),
        })
    }

    /// The CA certificate (DER), to hand to clients that should trust it.
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.inner.cert
    }

    /// Issues a leaf for `host` (a DNS name or an IP literal, which gets an
    /// IP SAN) with a fresh ECDSA P-256 key.
    pub(crate) fn issue(&self, host: &str) -> Result<Leaf, Error> {
        let fail = |what: &str, e: rcgen::Error| Error::Ca(format!("{what} for {host}: {e}"));
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| fail("leaf key", e))?;
        let mut params =
            CertificateParams::new(vec![host.to_owned()]).map_err(|e| fail("leaf name", e))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        dn.push(DnType::OrganizationName, "NanoClaw traffic guardian");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - LEAF_BACKDATE;
        params.not_after = now + LEAF_LIFETIME;
        let cert = params
            .signed_by(&key, &self.inner.issuer)
            .map_err(|e| fail("signing leaf", e))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok(Leaf {
            chain: vec![cert.der().clone(), self.inner.cert.clone()],
            key,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::{ServerName, UnixTime};

    use super::*;

    pub(crate) fn test_ca() -> CertificateAuthority {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "unit test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        CertificateAuthority::from_pem(&cert.pem(), &key.serialize_pem()).unwrap()
    }

    /// Verifies `leaf` for `name` at `at` the way a client trusting the CA
    /// would.
    fn verify(
        ca: &CertificateAuthority,
        leaf: &Leaf,
        name: &str,
        at: SystemTime,
    ) -> Result<(), String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.certificate_der().clone()).unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        verifier
            .verify_server_cert(
                &leaf.chain[0],
                &leaf.chain[1..],
                &name,
                &[],
                UnixTime::since_unix_epoch(at.duration_since(SystemTime::UNIX_EPOCH).unwrap()),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn leaves_verify_for_their_name_only() {
        let ca = test_ca();
        let now = SystemTime::now();
        let leaf = ca.issue("api.example.com").unwrap();
        assert_eq!(verify(&ca, &leaf, "api.example.com", now), Ok(()));
        assert!(verify(&ca, &leaf, "other.example.com", now).is_err());
        let ip = ca.issue("127.0.0.1").unwrap();
        assert_eq!(
            verify(&ca, &ip, "127.0.0.1", now),
            Ok(()),
            "IP literals get an IP SAN"
        );
        let v6 = ca.issue("::1").unwrap();
        assert_eq!(verify(&ca, &v6, "::1", now), Ok(()));
    }

    #[test]
    fn leaves_are_short_lived_and_backdated() {
        let ca = test_ca();
        let leaf = ca.issue("example.com").unwrap();
        let now = SystemTime::now();
        let skewed = now - Duration::from_secs(30 * 60);
        assert_eq!(
            verify(&ca, &leaf, "example.com", skewed),
            Ok(()),
            "a slow client clock still works"
        );
        assert!(
            verify(
                &ca,
                &leaf,
                "example.com",
                now - Duration::from_secs(2 * 60 * 60)
            )
            .is_err()
        );
        assert!(
            verify(
                &ca,
                &leaf,
                "example.com",
                now + Duration::from_secs(2 * 24 * 60 * 60)
            )
            .is_err()
        );
    }

    #[test]
    fn every_leaf_has_its_own_key() {
        let ca = test_ca();
        let a = ca.issue("a.example").unwrap();
        let b = ca.issue("a.example").unwrap();
        assert_ne!(a.key.secret_der(), b.key.secret_der());
    }

    #[test]
    fn bad_ca_material_is_a_clear_error() {
        let err = CertificateAuthority::from_pem("not pem", "not pem").unwrap_err();
        assert!(
            err.to_string().starts_with("certificate authority:"),
            "{err}"
        );
        assert_eq!(format!("{:?}", test_ca()), "CertificateAuthority { .. }");
    }
}
