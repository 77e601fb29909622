//! `traffic-guardian ca`: a private key, public trust files with the right modes, fingerprints that match.

use std::fs;

use traffic_guardian_tests::{GuardianHome, mode, stderr, stdout};

/// A PEM file standing in for the system roots (`SSL_CERT_FILE`), made by
/// a second guardian home's `ca init`.
fn fake_system_roots(home: &GuardianHome) -> std::path::PathBuf {
    let other = GuardianHome::new();
    let out = other.run(&["ca", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let roots = home.root().join("roots.pem");
    fs::copy(other.home().join("ca/ca.pem"), &roots).unwrap();
    roots
}

fn fingerprint_of(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("SHA-256 "))
        .unwrap()
        .to_owned()
}

#[test]
fn init_show_export_and_permissions() {
    let home = GuardianHome::new();
    let init = home.run(&["ca", "init"]);
    assert!(init.status.success(), "{}", stderr(&init));
    let printed = stdout(&init);
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");
    let fingerprint = fingerprint_of(&printed);

    assert_eq!(mode(&home.home()), 0o700);
    assert_eq!(mode(&home.home().join("ca")), 0o700);
    assert_eq!(mode(&home.home().join("ca/ca.key")), 0o600);
    let key = fs::read_to_string(home.home().join("ca/ca.key")).unwrap();
    assert!(key.contains("PRIVATE KEY"));

    let again = home.run(&["ca", "init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("--force"));

    let show = home.run(&["ca", "show"]);
    assert!(show.status.success());
    assert_eq!(fingerprint_of(&stdout(&show)), fingerprint);
    assert!(stdout(&show).contains("ca/ca.pem"));
    let json = home.run(&["ca", "show", "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(info["fingerprint_sha256"], fingerprint.as_str());

    let roots = fake_system_roots(&home);
    let export = home.run_env(
        &["ca", "export", "--runtime", "default"],
        &[
            ("SSL_CERT_FILE", roots.to_str().unwrap()),
            (
                "SSL_CERT_DIR",
                home.root().join("no-cert-dir").to_str().unwrap(),
            ),
        ],
    );
    assert!(export.status.success(), "{}", stderr(&export));
    assert!(
        stdout(&export).contains("1 system roots"),
        "{}",
        stdout(&export)
    );
    let trust = home.home().join("trust/default");
    assert_eq!(mode(&trust), 0o755);
    for file in ["guardian-ca.pem", "ca-bundle.pem"] {
        assert_eq!(mode(&trust.join(file)), 0o644, "{file}");
        let text = fs::read_to_string(trust.join(file)).unwrap();
        assert!(!text.contains("PRIVATE"), "{file}");
    }
    let bundle = fs::read_to_string(trust.join("ca-bundle.pem")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(bundle.starts_with(&fs::read_to_string(&roots).unwrap()));
    assert_eq!(
        fs::read_to_string(trust.join("guardian-ca.pem")).unwrap(),
        fs::read_to_string(home.home().join("ca/ca.pem")).unwrap()
    );
}

#[test]
fn export_needs_system_roots_and_a_known_runtime() {
    let home = GuardianHome::new();
    assert!(home.run(&["ca", "init"]).status.success());
    let empty = home.root().join("empty.pem");
    fs::write(&empty, "").unwrap();
    let out = home.run_env(
        &["ca", "export", "--runtime", "default"],
        &[
            ("SSL_CERT_FILE", empty.to_str().unwrap()),
            ("SSL_CERT_DIR", home.root().to_str().unwrap()),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no system root certificates"),
        "{}",
        stderr(&out)
    );

    let unknown = home.run(&["ca", "export", "--runtime", "nobody"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("no runtime named"));
}

#[test]
fn a_readable_key_fails_the_config_check() {
    use std::os::unix::fs::PermissionsExt;
    let home = GuardianHome::new();
    assert!(home.run(&["ca", "init"]).status.success());
    fs::set_permissions(
        home.home().join("ca/ca.key"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = home.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("ca_dir: the CA key"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_corrupt_certificate_is_reported_unusable_not_missing() {
    let home = GuardianHome::new();
    assert!(home.run(&["ca", "init"]).status.success());
    std::fs::write(home.home().join("ca/ca.pem"), "not a certificate\n").unwrap();
    let status = home.run(&["status"]);
    assert_eq!(status.status.code(), Some(3), "{}", stderr(&status));
    let text = stdout(&status);
    assert!(text.contains("CA:        unusable (see notes)"), "{text}");
    assert!(
        text.contains("CA unusable: certificate authority:"),
        "{text}"
    );
    assert!(text.contains("ca init --force"), "{text}");
    let show = home.run(&["ca", "show"]);
    assert!(!show.status.success());
    assert!(
        stderr(&show).contains("not a PEM certificate"),
        "{}",
        stderr(&show)
    );
}
