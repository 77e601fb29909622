//! `traffic-guardian setup`: the exact, copy-pasteable wiring, compared line by line with the expected text.

use traffic_guardian_tests::{GuardianHome, stderr, stdout};

/// The defaults: Docker, loopback bind, no HTTPS inspection.
const DOCKER_DEFAULTS: &str = r##"# NanoClaw traffic guardian: wiring for runtime "default" (Docker)
# The guardian watches and logs; it never blocks and never changes a trust store.
# Containers reach it at http://host.docker.internal:10280

## 1. Environment variables (set in every container of this runtime)
HTTP_PROXY=http://host.docker.internal:10280
HTTPS_PROXY=http://host.docker.internal:10280
http_proxy=http://host.docker.internal:10280
https_proxy=http://host.docker.internal:10280
NO_PROXY=localhost,127.0.0.1,::1
no_proxy=localhost,127.0.0.1,::1
NODE_USE_ENV_PROXY=1
NANOCLAW_TRAFFIC_GUARDIAN_PROXY_URL=http://host.docker.internal:10280

## 2. Trust
# HTTPS inspection is off for this runtime: HTTPS is tunnelled and only its
# metadata (host, port, byte counts) is recorded. No CA variables or mount are needed.

## 3. Command-line form
docker run \
  --add-host=host.docker.internal:host-gateway \
  -e HTTP_PROXY=http://host.docker.internal:10280 \
  -e HTTPS_PROXY=http://host.docker.internal:10280 \
  -e http_proxy=http://host.docker.internal:10280 \
  -e https_proxy=http://host.docker.internal:10280 \
  -e NO_PROXY=localhost,127.0.0.1,::1 \
  -e no_proxy=localhost,127.0.0.1,::1 \
  -e NODE_USE_ENV_PROXY=1 \
  -e NANOCLAW_TRAFFIC_GUARDIAN_PROXY_URL=http://host.docker.internal:10280 \
  IMAGE
# In NanoClaw's container runner: add the same variables to the container's env.

## 4. Reaching the host
# Docker Desktop forwards host.docker.internal to the host's loopback, so the
# loopback bind http://127.0.0.1:10280 works there.
# On Linux, host.docker.internal is the docker0 bridge (usually 172.17.0.1), which
# a loopback bind does not reach: set proxy_url to http://172.17.0.1:10280
# and add 172.17.0.0/16 to allowed_clients.

## 5. In front of OneCLI (container -> guardian -> OneCLI -> internet)
# Add to config.json:
#   "upstream_proxy": {"url": "http://127.0.0.1:10255", "forward_proxy_authorization": true},
#   "upstream_ca_files": ["<path of OneCLI's CA certificate, PEM>"]
# Point the containers at the guardian instead of OneCLI, keeping the credentials OneCLI
# gave them in the proxy URL (http://USER:TOKEN@host.docker.internal:10280); the guardian passes them on.

## 6. CA fingerprint
# Not needed: HTTPS inspection is off for this runtime.
"##;

/// Apple Container, a runtime named by proxy user with HTTPS inspection, a
/// CA that exists but is not exported yet, and the explicit trust-store flag.
const APPLE_INSPECTED: &str = r##"# NanoClaw traffic guardian: wiring for runtime "main" (Apple Container)
# The guardian watches and logs; it never blocks and never changes a trust store.
# Containers reach it at http://main:unchecked@192.168.64.1:10280
# The proxy user "main" names the runtime; the password is never checked,
# but clients such as Python requests and Node's fetch send no user without one.

## 1. Environment variables (set in every container of this runtime)
HTTP_PROXY=http://main:unchecked@192.168.64.1:10280
HTTPS_PROXY=http://main:unchecked@192.168.64.1:10280
http_proxy=http://main:unchecked@192.168.64.1:10280
https_proxy=http://main:unchecked@192.168.64.1:10280
NO_PROXY=localhost,127.0.0.1,::1
no_proxy=localhost,127.0.0.1,::1
NODE_USE_ENV_PROXY=1
NANOCLAW_TRAFFIC_GUARDIAN_PROXY_URL=http://192.168.64.1:10280
NANOCLAW_TRAFFIC_GUARDIAN_CA_BUNDLE=/opt/clawsec/ca/ca-bundle.pem
NODE_EXTRA_CA_CERTS=/opt/clawsec/ca/guardian-ca.pem
SSL_CERT_FILE=/opt/clawsec/ca/ca-bundle.pem
REQUESTS_CA_BUNDLE=/opt/clawsec/ca/ca-bundle.pem
CURL_CA_BUNDLE=/opt/clawsec/ca/ca-bundle.pem
GIT_SSL_CAINFO=/opt/clawsec/ca/ca-bundle.pem
DENO_CERT=/opt/clawsec/ca/ca-bundle.pem

## 2. Read-only mount of the public trust folder
# host folder:      <HOME>/trust/main
# container folder: /opt/clawsec/ca (read-only)
# guardian-ca.pem: the guardian CA alone, for NODE_EXTRA_CA_CERTS (adds to Node's roots)
# ca-bundle.pem: system roots + the guardian CA, for the variables that replace the defaults
# NOT EXPORTED YET: run `traffic-guardian ca export --runtime main` first

## 3. Command-line form
container run \
  -e HTTP_PROXY=http://main:unchecked@192.168.64.1:10280 \
  -e HTTPS_PROXY=http://main:unchecked@192.168.64.1:10280 \
  -e http_proxy=http://main:unchecked@192.168.64.1:10280 \
  -e https_proxy=http://main:unchecked@192.168.64.1:10280 \
  -e NO_PROXY=localhost,127.0.0.1,::1 \
  -e no_proxy=localhost,127.0.0.1,::1 \
  -e NODE_USE_ENV_PROXY=1 \
  -e NANOCLAW_TRAFFIC_GUARDIAN_PROXY_URL=http://192.168.64.1:10280 \
  -e NANOCLAW_TRAFFIC_GUARDIAN_CA_BUNDLE=/opt/clawsec/ca/ca-bundle.pem \
  -e NODE_EXTRA_CA_CERTS=/opt/clawsec/ca/guardian-ca.pem \
  -e SSL_CERT_FILE=/opt/clawsec/ca/ca-bundle.pem \
  -e REQUESTS_CA_BUNDLE=/opt/clawsec/ca/ca-bundle.pem \
  -e CURL_CA_BUNDLE=/opt/clawsec/ca/ca-bundle.pem \
  -e GIT_SSL_CAINFO=/opt/clawsec/ca/ca-bundle.pem \
  -e DENO_CERT=/opt/clawsec/ca/ca-bundle.pem \
  --mount type=bind,source=<HOME>/trust/main,target=/opt/clawsec/ca,readonly \
  IMAGE
# In NanoClaw's container runner: add the same variables to the container's env and the folder as a read-only mount.

## 4. Reaching the host
# Apple Container reaches the host at the bridge address, usually 192.168.64.1
# (check with `container network list`). That needs proxy_url bound to
# http://0.0.0.0:10280 and 192.168.64.0/24 in allowed_clients.
# Firewall: a 0.0.0.0 bind listens on every interface. Allow port 10280 only from
# the container network, for example with pf:
#   block in proto tcp from any to any port 10280
#   pass in proto tcp from 192.168.64.0/24 to any port 10280

## 5. In front of OneCLI (container -> guardian -> OneCLI -> internet)
# Add to config.json:
#   "upstream_proxy": {"url": "http://127.0.0.1:10255", "forward_proxy_authorization": true},
#   "upstream_ca_files": ["<path of OneCLI's CA certificate, PEM>"]
# Point the containers at the guardian instead of OneCLI, keeping the credentials OneCLI
# gave them in the proxy URL (http://USER:TOKEN@192.168.64.1:10280); the guardian passes them on.

## 6. CA fingerprint
# SHA-256 <FP>
# Compare inside the container: openssl x509 -in /opt/clawsec/ca/guardian-ca.pem -noout -fingerprint -sha256

## 7. System trust store (printed only; the guardian never runs these)
# Only for a host or image where you want EVERY program to trust the guardian CA.
# The per-container variables above are the recommended way; these change a system
# trust store, and you must undo them yourself after a CA rotation.
# Debian/Ubuntu image or host:
#   sudo cp <HOME>/ca/ca.pem /usr/local/share/ca-certificates/nanoclaw-traffic-guardian.crt
#   sudo update-ca-certificates
# macOS host:
#   sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain <HOME>/ca/ca.pem
"##;

/// Runs `setup` and replaces the temporary home and the CA fingerprint by
/// placeholders.
fn setup(home: &GuardianHome, args: &[&str]) -> String {
    let out = home.run(&[&["setup"][..], args].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let mut text = stdout(&out).replace(home.home().to_str().unwrap(), "<HOME>");
    let show = home.run(&["ca", "show", "--json"]);
    if show.status.success() {
        let info: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
        text = text.replace(info["fingerprint_sha256"].as_str().unwrap(), "<FP>");
    }
    text
}

#[track_caller]
fn check(got: &str, want: &str) {
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "line {}", i + 1);
    }
    assert_eq!(got, want);
}

#[test]
fn docker_defaults() {
    let home = GuardianHome::new();
    check(&setup(&home, &[]), DOCKER_DEFAULTS);
    check(
        &setup(&home, &["--kind", "docker", "--runtime", "default"]),
        DOCKER_DEFAULTS,
    );
}

#[test]
fn apple_container_with_inspection_and_trust_store_commands() {
    let home = GuardianHome::new();
    home.write_config(
        r#"{"proxy_url": "http://0.0.0.0:10280", "allowed_clients": ["127.0.0.0/8", "192.168.64.0/24"],
            "runtimes": [{"name": "main", "proxy_users": ["main"], "https_inspection": true}]}"#,
    );
    assert!(home.run(&["ca", "init"]).status.success());
    let args = [
        "--runtime",
        "main",
        "--kind",
        "apple-container",
        "--print-trust-store-instructions",
    ];
    check(&setup(&home, &args), APPLE_INSPECTED);
}

#[test]
fn trust_store_commands_only_with_the_flag() {
    let home = GuardianHome::new();
    home.write_config(
        r#"{"runtimes": [{"name": "main", "proxy_users": ["main"], "https_inspection": true}]}"#,
    );
    assert!(home.run(&["ca", "init"]).status.success());
    let text = setup(&home, &["--runtime", "main"]);
    assert!(!text.contains("trust store (printed only"), "{text}");
    assert!(!text.contains("update-ca-certificates"), "{text}");
    assert!(!text.contains("security add-trusted-cert"), "{text}");
    assert!(text.contains("# SHA-256 <FP>"), "{text}");
}

#[test]
fn exported_trust_is_not_flagged_and_unknown_runtimes_are_refused() {
    let home = GuardianHome::new();
    home.write_config(
        r#"{"runtimes": [{"name": "main", "proxy_users": ["main"], "https_inspection": true}]}"#,
    );
    assert!(home.run(&["ca", "init"]).status.success());
    let roots = home.root().join("roots.pem");
    std::fs::copy(home.home().join("ca/ca.pem"), &roots).unwrap();
    let export = home.run_env(
        &["ca", "export", "--runtime", "main"],
        &[
            ("SSL_CERT_FILE", roots.to_str().unwrap()),
            (
                "SSL_CERT_DIR",
                home.root().join("no-cert-dir").to_str().unwrap(),
            ),
        ],
    );
    assert!(export.status.success(), "{}", stderr(&export));
    let text = setup(&home, &["--runtime", "main"]);
    assert!(!text.contains("NOT EXPORTED"), "{text}");
    assert!(
        text.contains("-v <HOME>/trust/main:/opt/clawsec/ca:ro"),
        "{text}"
    );

    let out = home.run(&["setup", "--runtime", "ghost"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no runtime named \"ghost\"; configured: main, default"));
}
