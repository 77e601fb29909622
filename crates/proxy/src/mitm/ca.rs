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
