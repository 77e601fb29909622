//! The guardian's own certificate authority: creating it, reading its public half, and exporting trust files for runtimes.
//!
//! The CA is ECDSA P-256. Its key lives only in `<ca dir>/ca.key` (mode
//! 0600, folder 0700) and is never printed, exported or mounted. Nothing
//! here touches a system trust store: `export` writes plain files into a
//! folder meant to be mounted read-only into the runtimes that asked for
//! HTTPS inspection.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::paths::{
    PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, PUBLIC_DIR_MODE, PUBLIC_FILE_MODE, StatePaths, ensure_dir,
    mode_of, write_atomic,
};

/// The exported file holding the guardian CA alone (for
/// `NODE_EXTRA_CA_CERTS`, which adds to Node's defaults).
pub const GUARDIAN_CA_FILE: &str = "guardian-ca.pem";
/// The exported combined bundle: system roots plus the guardian CA (for
/// `SSL_CERT_FILE` and the other variables that replace the defaults).
pub const BUNDLE_FILE: &str = "ca-bundle.pem";
/// How long a new CA is valid.
const CA_LIFETIME_DAYS: i64 = 5 * 365;

/// The public half of the CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaInfo {
    /// Where the certificate is.
    pub cert_path: PathBuf,
    /// The SHA-256 fingerprint of the certificate (DER), as colon-separated
    /// upper-case hex, as `openssl x509 -fingerprint -sha256` prints it.
    pub fingerprint_sha256: String,
    /// The certificate, DER.
    #[serde(skip)]
    pub der: Vec<u8>,
    /// The certificate, PEM.
    #[serde(skip)]
    pub pem: String,
}

/// The CA certificate and key in PEM, read from disk to hand to the proxy.
/// `Debug` never shows the key.
pub struct SigningMaterial {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl fmt::Debug for SigningMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningMaterial { .. }")
    }
}

/// What `export` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// The folder to mount read-only.
    pub dir: PathBuf,
    /// The guardian CA alone.
    pub guardian_ca: PathBuf,
    /// System roots plus the guardian CA.
    pub bundle: PathBuf,
    /// How many system roots the bundle holds.
    pub system_roots: usize,
    /// The CA fingerprint.
    pub fingerprint_sha256: String,
}

/// Creates a new CA in `paths.ca_dir`. Refuses to replace an existing one
/// unless `force` (CA rotation: runtimes must then get the new export).
pub fn init(paths: &StatePaths, force: bool) -> Result<CaInfo, Error> {
    let (cert_path, key_path) = (paths.ca_cert(), paths.ca_key());
    if !force && (cert_path.exists() || key_path.exists()) {
        return Err(Error::Ca(format!(
            "a CA already exists in {}; pass --force to replace it (then export it again for every runtime)",
            paths.ca_dir.display()
        )));
    }
    crate::paths::ensure_home(paths)?;
    ensure_dir(&paths.ca_dir, PRIVATE_DIR_MODE)?;
    let fail = |what: &str, err: rcgen::Error| Error::Ca(format!("{what}: {err}"));
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| fail("key", e))?;
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| Error::Ca(format!("randomness: {e}")))?;
    serial[0] &= 0x7f;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| fail("parameters", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!(
            "NanoClaw Traffic Guardian CA {:02x}{:02x}{:02x}{:02x}",
            serial[1], serial[2], serial[3], serial[4]
        ),
    );
    dn.push(DnType::OrganizationName, "NanoClaw traffic guardian");
    params.distinguished_name = dn;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(CA_LIFETIME_DAYS);
    let cert = params.self_signed(&key).map_err(|e| fail("signing", e))?;
    // Key first: a certificate without its key is useless, a key without
    // its certificate is replaced by the next init.
    write_atomic(&key_path, key.serialize_pem().as_bytes(), PRIVATE_FILE_MODE)?;
    write_atomic(&cert_path, cert.pem().as_bytes(), PUBLIC_FILE_MODE)?;
    read_public(paths)
}

/// The CA's public facts for status: `Ok(None)` when no CA exists yet,
/// `Err(note)` when one exists but cannot be used (unreadable, not PEM).
pub fn status(paths: &StatePaths) -> Result<Option<crate::status::CaStatus>, String> {
    if !paths.ca_cert().exists() {
        return Ok(None);
    }
    match read_public(paths) {
        Ok(info) => Ok(Some(crate::status::CaStatus {
            cert_path: info.cert_path,
            fingerprint_sha256: info.fingerprint_sha256,
        })),
        Err(err) => Err(format!(
            "{CA_UNUSABLE}{err} (`traffic-guardian ca init --force` replaces it)"
        )),
    }
}

/// How a status note about an unusable CA begins.
pub(crate) const CA_UNUSABLE: &str = "CA unusable: ";

/// Reads the CA certificate (not the key).
pub fn read_public(paths: &StatePaths) -> Result<CaInfo, Error> {
    let cert_path = paths.ca_cert();
    let pem = match fs::read_to_string(&cert_path) {
        Ok(pem) => pem,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Ca(format!(
                "no CA in {}: run `traffic-guardian ca init`",
                paths.ca_dir.display()
            )));
        }
        Err(source) => return Err(Error::io("read", cert_path, source)),
    };
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
        Error::Ca(format!(
            "{} is not a PEM certificate: {e}",
            cert_path.display()
        ))
    })?;
    Ok(CaInfo {
        fingerprint_sha256: fingerprint(der.as_ref()),
        der: der.as_ref().to_vec(),
        pem,
        cert_path,
    })
}

/// Reads the CA certificate and key for signing, after checking that the
/// key is private: mode 0600 (no group or other bits) in a folder no one
/// else can enter.
pub fn read_signing(paths: &StatePaths) -> Result<SigningMaterial, Error> {
    let key_path = paths.ca_key();
    if let Some(mode) = mode_of(&paths.ca_dir)
        && mode & 0o077 != 0
    {
        ensure_dir(&paths.ca_dir, PRIVATE_DIR_MODE)?;
    }
    match mode_of(&key_path) {
        None => {
            return Err(Error::Ca(format!(
                "no CA key at {}: run `traffic-guardian ca init`",
                key_path.display()
            )));
        }
        Some(mode) if mode & 0o077 != 0 => {
            return Err(Error::unsafe_path(
                &key_path,
                format!(
                    "the CA key has mode {mode:04o} (readable by group or others); refusing to use it. Run chmod 600 on it, and consider rotating the CA"
                ),
            ));
        }
        Some(_) => {}
    }
    let key_pem =
        fs::read_to_string(&key_path).map_err(|source| Error::io("read", &key_path, source))?;
    let public = read_public(paths)?;
    Ok(SigningMaterial {
        cert_pem: public.pem,
        key_pem,
    })
}

/// The system's trusted roots (honours `SSL_CERT_FILE` and
/// `SSL_CERT_DIR`). Fails when none are found: a bundle without them
/// would break every other HTTPS connection in the runtime.
pub fn system_roots() -> Result<Vec<CertificateDer<'static>>, Error> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(Error::Ca(format!(
            "no system root certificates found{why}; install your system's CA certificates package, or point SSL_CERT_FILE at a PEM bundle"
        )));
    }
    Ok(found.certs)
}

/// Writes `guardian-ca.pem` and the combined bundle (`roots` then the
/// guardian CA) into `dir` (mode 0755, files 0644). Never touches a trust
/// store.
pub fn export(
    paths: &StatePaths,
    dir: &Path,
    roots: &[CertificateDer<'static>],
) -> Result<ExportReport, Error> {
    export_to(paths, dir, &dir.join(BUNDLE_FILE), roots)
}

/// As [`export`], with the combined bundle at `bundle`.
pub fn export_to(
    paths: &StatePaths,
    dir: &Path,
    bundle: &Path,
    roots: &[CertificateDer<'static>],
) -> Result<ExportReport, Error> {
    let ca = read_public(paths)?;
    if crate::paths::is_within(dir, &paths.ca_dir) {
        return Err(Error::unsafe_path(
            dir,
            "the trust folder must not be inside the CA folder (it is meant to be mounted)",
        ));
    }
    ensure_dir(dir, PUBLIC_DIR_MODE)?;
    if let Some(parent) = bundle.parent() {
        ensure_dir(parent, PUBLIC_DIR_MODE)?;
    }
    let mut combined = String::new();
    for root in roots {
        combined.push_str(&pem_encode(root.as_ref()));
    }
    combined.push_str(&pem_encode(&ca.der));
    let guardian_ca = dir.join(GUARDIAN_CA_FILE);
    write_atomic(
        &guardian_ca,
        pem_encode(&ca.der).as_bytes(),
        PUBLIC_FILE_MODE,
    )?;
    write_atomic(bundle, combined.as_bytes(), PUBLIC_FILE_MODE)?;
    Ok(ExportReport {
        dir: dir.to_path_buf(),
        guardian_ca,
        bundle: bundle.to_path_buf(),
        system_roots: roots.len(),
        fingerprint_sha256: ca.fingerprint_sha256,
    })
}

/// Reads every certificate in a PEM file; fails if there is none.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The SHA-256 fingerprint of `der` as `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// PEM-encodes a DER certificate.
fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;

    /// Two stand-in "system roots": self-signed CA certificates.
    pub(crate) fn fake_roots() -> Vec<CertificateDer<'static>> {
        (0..2)
            .map(|i| {
                let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
                let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
                params
                    .distinguished_name
                    .push(DnType::CommonName, format!("Fake Root {i}"));
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.self_signed(&key).unwrap().der().clone()
            })
            .collect()
    }

    fn paths(home: &Path) -> StatePaths {
        StatePaths::with_home(home.to_owned(), &Config::default())
    }

    #[test]
    fn init_makes_a_private_p256_ca_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = paths(tmp.path());
        let info = init(&paths, false).unwrap();
        assert_eq!(mode_of(&paths.ca_dir), Some(0o700));
        assert_eq!(mode_of(&paths.ca_key()), Some(0o600));
        assert_eq!(info.fingerprint_sha256.len(), 32 * 3 - 1);
        let key = fs::read_to_string(paths.ca_key()).unwrap();
        let pair = KeyPair::from_pem(&key).unwrap();
        assert!(pair.is_compatible(&PKCS_ECDSA_P256_SHA256));
        let err = init(&paths, false).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        let rotated = init(&paths, true).unwrap();
        assert_ne!(rotated.fingerprint_sha256, info.fingerprint_sha256);
        // The public info never carries the key.
        let json = serde_json::to_string(&rotated).unwrap();
        assert!(!json.contains("PRIVATE"), "{json}");
    }

    #[test]
    fn signing_material_requires_a_private_key() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let paths = paths(tmp.path());
        assert!(read_signing(&paths).is_err());
        init(&paths, false).unwrap();
        let material = read_signing(&paths).unwrap();
        assert!(material.key_pem.contains("PRIVATE KEY"));
        assert!(!format!("{material:?}").contains("PRIVATE"));
        fs::set_permissions(paths.ca_key(), fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_signing(&paths).unwrap_err().to_string();
        assert!(err.contains("readable by group or others"), "{err}");
    }

    #[test]
    fn export_writes_public_files_with_roots_then_the_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = paths(tmp.path());
        let info = init(&paths, false).unwrap();
        let dir = paths.default_trust_dir("main");
        let roots = fake_roots();
        let report = export(&paths, &dir, &roots).unwrap();
        assert_eq!(report.system_roots, 2);
        assert_eq!(mode_of(&dir), Some(0o755));
        assert_eq!(mode_of(&report.bundle), Some(0o644));
        assert_eq!(mode_of(&report.guardian_ca), Some(0o644));
        let bundle = read_pem_certs(&report.bundle).unwrap();
        assert_eq!(bundle.len(), 3);
        assert_eq!(bundle[0], roots[0]);
        assert_eq!(bundle[2].as_ref(), info.der.as_slice());
        let alone = read_pem_certs(&report.guardian_ca).unwrap();
        assert_eq!(alone.len(), 1);
        assert_eq!(fingerprint(alone[0].as_ref()), info.fingerprint_sha256);
        for file in [&report.bundle, &report.guardian_ca] {
            assert!(!fs::read_to_string(file).unwrap().contains("PRIVATE"));
        }
        assert!(export(&paths, &paths.ca_dir.join("x"), &roots).is_err());
    }

    #[test]
    fn fingerprint_format() {
        assert_eq!(
            fingerprint(b""),
            "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
        );
    }

    #[test]
    fn read_pem_certs_rejects_non_certificates() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("x.pem");
        fs::write(&file, "hello").unwrap();
        assert!(
            read_pem_certs(&file)
                .unwrap_err()
                .contains("no PEM certificate")
        );
        assert!(read_pem_certs(&tmp.path().join("none")).is_err());
    }
}
