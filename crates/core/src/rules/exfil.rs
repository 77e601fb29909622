//! Outbound EXFIL rules: credentials and sensitive paths leaving a container.

use super::{Check, Kind, Reach, Rule};
use crate::finding::{Severity, ThreatType};

const fn secret(
    id: &'static str,
    variant: &'static str,
    severity: Severity,
    description: &'static str,
    keywords: &'static [&'static str],
    pattern: &'static str,
    expected_hosts: &'static [&'static str],
) -> Rule {
    Rule {
        id,
        variant,
        threat_type: ThreatType::Exfil,
        severity,
        description,
        keywords,
        pattern,
        reach: Reach::new(0, 320),
        kind: Kind::Secret,
        check: Check::Token,
        expected_hosts,
    }
}

const fn path(
    id: &'static str,
    variant: &'static str,
    severity: Severity,
    description: &'static str,
    keywords: &'static [&'static str],
    pattern: &'static str,
) -> Rule {
    Rule {
        id,
        variant,
        threat_type: ThreatType::Exfil,
        severity,
        description,
        keywords,
        pattern,
        reach: Reach::new(96, 96),
        kind: Kind::Indicator,
        check: Check::None,
        expected_hosts: &[],
    }
}

use Severity::{Critical, High, Medium};

/// Every outbound rule.
pub static RULES: &[Rule] = &[
    // ai_api_key: model-provider keys.
    secret(
        "ai_api_key",
        "anthropic",
        Critical,
        "Anthropic API, admin or OAuth key (sk-ant-…)",
        &["sk-ant-"],
        r"\bsk-ant-[a-z]{2,8}[0-9]{2}-(?P<secret>[A-Za-z0-9_-]{20,})",
        &["anthropic.com"],
    ),
    secret(
        "ai_api_key",
        "openai",
        Critical,
        "OpenAI project, service-account or admin key (sk-proj-…, sk-svcacct-…, sk-admin-…)",
        &["sk-proj-", "sk-svcacct-", "sk-admin-", "sk-None-"],
        r"\bsk-(?:proj|svcacct|admin|None)-(?P<secret>[A-Za-z0-9_-]{20,})",
        &["openai.com"],
    ),
    secret(
        "ai_api_key",
        "openai-legacy",
        Critical,
        "OpenAI key of any generation, by its T3BlbkFJ marker",
        &["T3BlbkFJ"],
        r"\bsk-(?P<secret>[A-Za-z0-9_-]*T3BlbkFJ[A-Za-z0-9_-]{10,})",
        &["openai.com"],
    )
    .reaching(Reach::new(260, 220)),
    secret(
        "ai_api_key",
        "google",
        High,
        "Google AI / Cloud API key (AIza…)",
        &["AIza"],
        r"\bAIza(?P<secret>[0-9A-Za-z_-]{35})(?:[^0-9A-Za-z_-]|$)",
        &["googleapis.com"],
    ),
    secret(
        "ai_api_key",
        "huggingface",
        Critical,
        "Hugging Face user or org token (hf_…, api_org_…)",
        &["hf_", "api_org_"],
        r"\b(?:hf_|api_org_)(?P<secret>[A-Za-z]{34})\b",
        &["huggingface.co"],
    ),
    secret(
        "ai_api_key",
        "groq",
        Critical,
        "Groq API key (gsk_…)",
        &["gsk_"],
        r"\bgsk_(?P<secret>[A-Za-z0-9]{52})\b",
        &["groq.com"],
    ),
    secret(
        "ai_api_key",
        "openrouter",
        Critical,
        "OpenRouter key (sk-or-v1-…)",
        &["sk-or-v1-"],
        r"\bsk-or-v1-(?P<secret>[a-f0-9]{64})\b",
        &["openrouter.ai"],
    ),
    secret(
        "ai_api_key",
        "xai",
        Critical,
        "xAI key (xai-…)",
        &["xai-"],
        r"\bxai-(?P<secret>[A-Za-z0-9]{70,90})\b",
        &["x.ai"],
    ),
    secret(
        "ai_api_key",
        "perplexity",
        Critical,
        "Perplexity key (pplx-…)",
        &["pplx-"],
        r"\bpplx-(?P<secret>[A-Za-z0-9]{48})\b",
        &["perplexity.ai"],
    ),
    secret(
        "ai_api_key",
        "replicate",
        Critical,
        "Replicate token (r8_…)",
        &["r8_"],
        r"\br8_(?P<secret>[A-Za-z0-9]{37})\b",
        &["replicate.com"],
    ),
    secret(
        "ai_api_key",
        "tavily",
        High,
        "Tavily search key (tvly-…)",
        &["tvly-"],
        r"\btvly-(?:dev-|prod-)?(?P<secret>[A-Za-z0-9]{32})\b",
        &["tavily.com"],
    ),
    secret(
        "ai_api_key",
        "langsmith",
        High,
        "LangSmith key (lsv2_…)",
        &["lsv2_"],
        r"\blsv2_(?:pt|sk)_(?P<secret>[a-f0-9]{32}_[a-f0-9]{10})\b",
        &["langchain.com"],
    ),
    // aws_access_key_id, with the secret key when it sits next to one.
    Rule {
        check: Check::Token,
        reach: Reach::new(0, 220),
        ..secret(
            "aws_access_key_id",
            "access-key-id",
            Critical,
            "AWS access key id (AKIA…, ASIA…), and the secret access key beside it",
            &["AKIA", "ASIA", "ABIA", "ACCA"],
            r"\b(?:AKIA|ASIA|ABIA|ACCA)(?P<secret>[A-Z0-9]{16})\b(?:(?s:.){1,}?(?:^|[^A-Za-z0-9/+=])(?P<secret2>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$))?",
            &["amazonaws.com"],
        )
    },
    secret(
        "aws_secret_access_key",
        "named",
        Critical,
        "AWS secret access key assigned to its usual name",
        &[
            "aws_secret_access_key",
            "AWS_SECRET_ACCESS_KEY",
            "SecretAccessKey",
            "secretAccessKey",
            "secret_access_key",
        ],
        r#"(?i:aws_?secret_?access_?key|secret_?access_?key)["']?\s*[:=]\s*["']?(?P<secret>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
        &["amazonaws.com"],
    ),
    // private_key_pem: private key blocks. Certificates and public keys never match.
    Rule {
        kind: Kind::Secret,
        check: Check::PemBody,
        reach: Reach::new(40, 16 * 1024),
        ..path(
            "private_key_pem",
            "pem",
            Critical,
            "PEM private key block: RSA, EC, DSA, OPENSSH, PKCS#8, encrypted, PGP",
            &["PRIVATE KEY"],
            r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----(?P<secret>(?:(?:Proc-Type|DEK-Info|Version|Comment|Charset|Hash):[^\r\n\\]*|[A-Za-z0-9+/=\s]|\\[rn])+)",
        )
    },
    // Paths.
    Rule {
        check: Check::PathNotFollowedBy(".pub"),
        ..path(
            "ssh_key_path",
            "private-key-file",
            High,
            "Path of an SSH private key such as ~/.ssh/id_rsa",
            &[".ssh/", ".ssh\\"],
            r"(?:~|\$HOME|\$\{HOME\}|/home/[A-Za-z0-9._-]{1,64}|/root|/Users/[A-Za-z0-9._-]{1,64})?[/\\]\.ssh[/\\](?:id_(?:rsa|dsa|ecdsa|ed25519)(?:_sk)?|identity)\b",
        )
    },
    path(
        "sensitive_unix_path",
        "system-secret-file",
        High,
        "System secrets: /etc/shadow, /etc/sudoers, /proc/*/environ and the like",
        &[
            "/etc/shadow",
            "/etc/gshadow",
            "/etc/sudoers",
            "/etc/master.passwd",
            "/etc/security/opasswd",
            "/environ",
        ],
        r"/etc/(?:g?shadow|sudoers(?:\.d/[A-Za-z0-9._-]{1,64})?|master\.passwd|security/opasswd)\b|/proc/(?:self|thread-self|[0-9]{1,7})/environ\b",
    ),
    path(
        "sensitive_unix_path",
        "shell-history",
        High,
        "Shell and REPL histories (~/.bash_history, ~/.zsh_history, …)",
        &["_history"],
        r"\.(?:bash|zsh|sh|ash|fish|python|mysql|psql|sqlite|node_repl|rediscli|lesshst|irb)_history\b",
    )
    .checking(Check::PathStart),
    path(
        "sensitive_unix_path",
        "passwd",
        Medium,
        "The account list /etc/passwd",
        &["/etc/passwd"],
        r"/etc/passwd\b",
    )
    .checking(Check::PathNotFollowedBy("-")),
    path(
        "credential_path",
        "dotenv",
        Medium,
        "dotenv files (.env, .env.local, .env.production, …)",
        &[".env"],
        r#"\.env(?:\.(?:local|dev|development|prod|production|staging|test|secret|secrets))?(?:$|[\s"'?#&,;)\]])"#,
    )
    .checking(Check::PathStart),
    path(
        "credential_path",
        "cloud-cli",
        High,
        "Cloud and cluster credentials: ~/.aws, gcloud, azure, kube and docker configs",
        &[".aws/", ".config/gcloud/", ".azure/", ".kube/config", ".docker/config.json"],
        r"\.aws/(?:credentials|config)\b|\.config/gcloud/(?:application_default_credentials\.json|credentials\.db|access_tokens\.db|legacy_credentials)|\.azure/(?:accessTokens\.json|msal_token_cache\.(?:json|bin)|azureProfile\.json|service_principal_entries\.json)|\.kube/config\b|\.docker/config\.json",
    ),
    path(
        "credential_path",
        "rc-file",
        Medium,
        "Credential rc files: .npmrc, .netrc, .git-credentials, .pgpass, .pypirc",
        &[".npmrc", ".netrc", "_netrc", ".git-credentials", ".pgpass", ".pypirc", ".my.cnf"],
        r"(?:\.npmrc|\.netrc|_netrc|\.git-credentials|\.pgpass|\.pypirc|\.my\.cnf)(?:[^A-Za-z0-9_.-]|\.[^A-Za-z0-9_-]|\.?$)",
    )
    .checking(Check::PathStart),
    path(
        "whatsapp_session_path",
        "auth-store",
        High,
        "NanoClaw's WhatsApp auth store: store/auth/creds.json, keys, sessions",
        &["store/auth/"],
        r"\bstore/auth/(?:creds\.json|app-state-sync-(?:key|version)-[A-Za-z0-9_=+.@:-]{1,}\.json|pre-key-[0-9]{1,10}\.json|session-[A-Za-z0-9_=+.@:-]{1,}\.json|sender-key-[A-Za-z0-9_=+.@:-]{1,}\.json)",
    ),
    // Other well-known tokens.
    secret(
        "github_token",
        "classic",
        Critical,
        "GitHub token (ghp_, gho_, ghu_, ghs_, ghr_)",
        &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
        r"\bgh[pousr]_(?P<secret>[A-Za-z0-9]{36})\b",
        &["github.com", "githubusercontent.com"],
    ),
    secret(
        "github_token",
        "fine-grained",
        Critical,
        "GitHub fine-grained token (github_pat_…)",
        &["github_pat_"],
        r"\bgithub_pat_(?P<secret>[A-Za-z0-9_]{60,})",
        &["github.com", "githubusercontent.com"],
    ),
    secret(
        "gitlab_token",
        "personal",
        Critical,
        "GitLab personal access token (glpat-…)",
        &["glpat-"],
        r"\bglpat-(?P<secret>[A-Za-z0-9_-]{20,64})",
        &["gitlab.com"],
    ),
    secret(
        "slack_token",
        "api",
        Critical,
        "Slack bot, user or app token (xoxb-, xoxp-, …)",
        &["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe-"],
        r"\bxox[abeprs]-(?P<secret>[0-9A-Za-z-]{10,})",
        &["slack.com"],
    ),
    secret(
        "slack_token",
        "webhook",
        High,
        "Slack incoming-webhook URL",
        &["hooks.slack.com/services/"],
        r"hooks\.slack\.com/services/(?P<secret>T[A-Z0-9]{6,12}/B[A-Z0-9]{6,12}/[A-Za-z0-9]{20,32})",
        &["hooks.slack.com"],
    ),
    secret(
        "stripe_key",
        "live",
        Critical,
        "Stripe live secret or restricted key (sk_live_, rk_live_)",
        &["sk_live_", "rk_live_"],
        r"\b(?:sk|rk)_live_(?P<secret>[0-9A-Za-z]{24,})\b",
        &["stripe.com"],
    ),
    secret(
        "npm_token",
        "access",
        Critical,
        "npm access token (npm_…)",
        &["npm_"],
        r"\bnpm_(?P<secret>[A-Za-z0-9]{36})\b",
        &["npmjs.org", "npmjs.com"],
    ),
    secret(
        "npm_token",
        "npmrc-auth",
        Critical,
        "Registry auth token as written in .npmrc (_authToken=…)",
        &["_authToken"],
        r#"_authToken\s*=\s*["']?(?P<secret>[A-Za-z0-9._~+/=-]{16,})"#,
        &["npmjs.org", "npmjs.com"],
    ),
    secret(
        "telegram_bot_token",
        "bot",
        Critical,
        "Telegram bot token (<id>:AA…)",
        &[":AA"],
        r"[0-9]{8,10}:(?P<secret>AA[0-9A-Za-z_-]{33})(?:[^0-9A-Za-z_-]|$)",
        &["api.telegram.org"],
    )
    .checking(Check::TokenNotAfterDigit)
    .reaching(Reach::new(12, 40)),
    secret(
        "sendgrid_key",
        "api",
        Critical,
        "SendGrid API key (SG.…)",
        &["SG."],
        r"\bSG\.(?P<secret>[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})\b",
        &["sendgrid.com"],
    ),
];

#[cfg(test)]
mod tests {
    use crate::finding::Direction;
    use crate::rules::testing;

    #[track_caller]
    fn check(body: &str, expected: Option<&str>) {
        testing::check(Direction::Outbound, body, expected);
    }

    // Keys are assembled at run time so that no scanner ever flags this file.
    fn key(prefix: &str, body: &str) -> String {
        format!("{prefix}{body}")
    }

    const R36: &str = "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY2zC4";
    const R52: &str = "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY2zC4eF6gH8iJ0kL2mN4o";

    #[test]
    fn ai_api_keys() {
        let anthropic = key("sk-ant-api03-", &format!("{R52}{R36}-_xyzAA"));
        check(&format!("{{\"key\":\"{anthropic}\"}}"), Some("ai_api_key"));
        check(&format!("x={}", key("sk-proj-", R52)), Some("ai_api_key"));
        check(
            &format!("x={}", key("sk-svcacct-", R52)),
            Some("ai_api_key"),
        );
        check(
            &format!(
                "x={}",
                key("sk-", "aB3dE5fG7hJ9kL1mN2pQT3BlbkFJ4rS6tU8vW0xY2zC4eF6g")
            ),
            Some("ai_api_key"),
        );
        check(
            &format!("k {}", key("AIza", "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q")),
            Some("ai_api_key"),
        );
        check(
            &format!("t={}", key("hf_", "aBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgH")),
            Some("ai_api_key"),
        );
        check(&format!("t={}", key("gsk_", R52)), Some("ai_api_key"));
        check(
            &format!(
                "t={}",
                key(
                    "sk-or-v1-",
                    "3f7a9c1e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a"
                )
            ),
            Some("ai_api_key"),
        );
        check(
            &format!("t={}", key("xai-", &format!("{R52}{R36}")[..80])),
            Some("ai_api_key"),
        );
        check(
            &format!("t={}", key("pplx-", &R52[..48])),
            Some("ai_api_key"),
        );
        check(&format!("t={}", key("r8_", &R52[..37])), Some("ai_api_key"));
    }

    #[test]
    fn ai_api_key_lookalikes_are_not_findings() {
        check("task-ant-manager and desk-ant-colony", None);
        check("sk-ant-api03-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", None);
        check("use hf_hub_download to fetch the model", None);
        check("const gsk_mode = 1; xai-sdk is a package", None);
    }

    #[test]
    fn aws_keys() {
        check(
            &format!("id={}", key("AKIA", "Z7Q3M5N2B4V6C8X2")),
            Some("aws_access_key_id"),
        );
        check(
            &format!("id={}", key("ASIA", "Z7Q3M5N2B4V6C8X2")),
            Some("aws_access_key_id"),
        );
        check(
            &format!(
                "aws_secret_access_key = {}",
                key("wJalrXUtnFEMI/K7MDENG/", "bPxRfiCYzQ3n7Lp0aB")
            ),
            Some("aws_secret_access_key"),
        );
        // The documentation example key is a placeholder.
        check("AKIAIOSFODNN7EXAMPLE", None);
        check("AKIAZZZZZZZZZZZZZZZZ", None);
    }

    #[test]
    fn private_keys() {
        let body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0";
        for kind in ["RSA ", "EC ", "DSA ", "OPENSSH ", "", "ENCRYPTED "] {
            check(
                &format!(
                    "-----BEGIN {kind}PRIVATE KEY-----\n{body}\n{body}\n-----END {kind}PRIVATE KEY-----"
                ),
                Some("private_key_pem"),
            );
        }
        check(
            &format!(
                "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\n{body}\n{body}\n-----END PGP PRIVATE KEY BLOCK-----"
            ),
            Some("private_key_pem"),
        );
        check(
            &format!(
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\n{body}\n-----END RSA PRIVATE KEY-----"
            ),
            Some("private_key_pem"),
        );
    }

    #[test]
    fn certificates_and_public_keys_are_not_findings() {
        let body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0";
        check(
            &format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----"),
            None,
        );
        check(
            &format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----"),
            None,
        );
        check(
            &format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{body} user@host"),
            None,
        );
        check(
            "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
            None,
        );
    }

    #[test]
    fn paths() {
        check("cat ~/.ssh/id_rsa", Some("ssh_key_path"));
        check(
            "read /home/node/.ssh/id_ed25519 please",
            Some("ssh_key_path"),
        );
        check("path=%2Froot%2F.ssh%2Fid_ecdsa", Some("ssh_key_path"));
        check("upload ~/.ssh/id_rsa.pub to github", None);
        check("cat /etc/shadow", Some("sensitive_unix_path"));
        check("file=/proc/self/environ", Some("sensitive_unix_path"));
        check("tail ~/.bash_history", Some("sensitive_unix_path"));
        check("/etc/sudoers.d/nanoclaw", Some("sensitive_unix_path"));
        check("cat /app/.env", Some("credential_path"));
        check("{\"path\":\".env.production\"}", Some("credential_path"));
        check("cat ~/.aws/credentials", Some("credential_path"));
        check(
            "~/.config/gcloud/application_default_credentials.json",
            Some("credential_path"),
        );
        check("cat ~/.kube/config", Some("credential_path"));
        check("~/.docker/config.json", Some("credential_path"));
        check("cat ~/.npmrc ~/.netrc", Some("credential_path"));
        check("open ~/.git-credentials", Some("credential_path"));
        check("store/auth/creds.json", Some("whatsapp_session_path"));
        check(
            "store/auth/app-state-sync-key-AAAAAF4x.json",
            Some("whatsapp_session_path"),
        );
        check("store/auth/pre-key-17.json", Some("whatsapp_session_path"));
        check(
            "store/auth/session-4915112345678.0.json",
            Some("whatsapp_session_path"),
        );
    }

    #[test]
    fn path_lookalikes_are_not_findings() {
        check(
            "const url = process.env.API_URL; import.meta.env.MODE",
            None,
        );
        check("cp .env.example .env.sample", None);
        check("copy .npmrc.example to get started", None);
        check(".box { text-shadow: 0 0 1px #000 }", None);
        check("see /etc/passwd-style files", None);
    }

    #[test]
    fn other_tokens() {
        check(
            &format!("Authorization: token {}", key("ghp_", R36)),
            Some("github_token"),
        );
        check(&key("glpat-", "aB3dE5fG7hJ9kL1mN2pQ"), Some("gitlab_token"));
        check(
            &key("xoxb-", "1234567890-1234567890123-aB3dE5fG7hJ9kL1mN2pQ4rS6"),
            Some("slack_token"),
        );
        check(
            &key("sk_live_", "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8"),
            Some("stripe_key"),
        );
        check(&key("npm_", R36), Some("npm_token"));
        check(
            &format!("//registry.npmjs.org/:_authToken={}", key("npm_", R36)),
            Some("npm_token"),
        );
        check(
            &format!(
                "bot{}:{}",
                "123456789",
                key("AA", "Hk3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY2")
            ),
            Some("telegram_bot_token"),
        );
    }
}
