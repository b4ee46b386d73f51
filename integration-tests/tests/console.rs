//! The web console's API against a running `llm-forward run --console` (real Envoy, the mock
//! upstream): token required, no key value ever shown, field-level validation, apply + hot reload.
//! The browser test is integration-tests/console/ (Playwright + Chromium).

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_integration_tests::*;
use serde_json::{json, Value};
use std::net::SocketAddr;

const TOKEN: &str = "console-test-token-0123456789";

fn config(
    upstream: &str,
    port: u16,
    _admin: u16,
    console: u16,
    token: bool,
    extra: &str,
) -> String {
    let token = if token {
        format!("  token: {TOKEN}\n")
    } else {
        String::new()
    };
    let text = r#"server:
  address: 127.0.0.1
  port: PORT
  concurrency: 1
cache:
  openai: false
console:
  port: CONSOLE
TOKENkeys:
  upstream:
    - key: sk-upstream-secret-value-1
      levels: [0, 1]
  forward:
    - {name: alice, key: fk-alice-secret-value, level: 1}
    - {name: ops, key: "${FK_ENV_KEY}", level: 0}
  levels:
    1: [gpt-4o]
routes:
  - route: /
    base_url: UPSTREAM
"#;
    text.replace("PORT", &port.to_string())
        .replace("CONSOLE", &console.to_string())
        .replace("TOKEN", &token)
        .replace("UPSTREAM", upstream)
        + extra
}

fn api(
    console: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{console}{path}");
    let c = client();
    let mut req = if method == "POST" {
        c.post(&url)
    } else {
        c.get(&url)
    };
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn the_api_needs_the_token_hides_keys_validates_fields_and_applies_with_a_backup() {
    let up = MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let dir = TempDir::new("console");
    let (port, admin, console) = (free_port(), free_port(), free_port());
    let text = config(&up.base_url(), port, admin, console, true, "");
    let gw = start_console(&dir, &text);

    // The page loads without a token and carries the security headers.
    let page = client()
        .get(format!("http://127.0.0.1:{console}/"))
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");

    // Every API call needs the token.
    for path in ["/api/overview", "/api/metrics", "/api/logs", "/api/config"] {
        assert_eq!(
            api(console, "GET", path, None, None).0,
            401,
            "{path} without a token"
        );
        assert_eq!(
            api(console, "GET", path, Some("wrong-token-0123456789"), None).0,
            401,
            "{path} with a wrong token"
        );
        assert_eq!(
            api(console, "GET", path, Some(TOKEN), None).0,
            200,
            "{path} with the token"
        );
    }
    let (status, body) = api(
        console,
        "POST",
        "/api/config",
        None,
        Some(json!({"yaml": text})),
    );
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");

    // The overview names keys and counts them per level; no key value leaves the server.
    let (_, overview) = api(console, "GET", "/api/overview", Some(TOKEN), None);
    assert_eq!(overview["envoy"]["ready"], true, "{overview}");
    assert_eq!(overview["routes"][0]["upstream"], up.base_url());
    let levels = overview["keys"]["levels"].as_array().unwrap();
    assert_eq!(levels[1]["forward_key_names"], json!(["alice"]));
    assert_eq!(levels[0]["upstream_keys"], 1);
    let shown = overview.to_string();
    for secret in [
        "sk-upstream-secret-value-1",
        "fk-alice-secret-value",
        "fk-from-the-environment",
        "FK_ENV_KEY",
    ] {
        assert!(!shown.contains(secret), "{secret} in the overview: {shown}");
    }

    // Validation names the field.
    let bad = text.replace(&up.base_url(), "ftp://nowhere");
    let (status, v) = api(
        console,
        "POST",
        "/api/config/validate",
        Some(TOKEN),
        Some(json!({"yaml": bad})),
    );
    assert_eq!(status, 200);
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["path"], "routes[0].base_url", "{v}");
    let (_, v) = api(
        console,
        "POST",
        "/api/config/validate",
        Some(TOKEN),
        Some(json!({"yaml": "routes: 12\n"})),
    );
    assert_eq!(v["errors"][0]["path"], "routes", "{v}");
    let (_, v) = api(
        console,
        "POST",
        "/api/config/validate",
        Some(TOKEN),
        Some(json!({"yaml": text.replace("concurrency: 1", "concurrency: 2")})),
    );
    assert_eq!(
        v["errors"][0]["path"], "server.concurrency",
        "restart-only fields: {v}"
    );
    // An invalid config is never written.
    let (status, _) = api(
        console,
        "POST",
        "/api/config",
        Some(TOKEN),
        Some(json!({"yaml": bad})),
    );
    assert_eq!(status, 422);
    assert_eq!(
        std::fs::read_to_string(dir.0.join("llm-forward.yaml")).unwrap(),
        text
    );
    // Only JSON, bounded.
    let resp = client()
        .post(format!("http://127.0.0.1:{console}/api/config"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 413);

    // The token is not a way to read files or variables: a config adding a `file:` or `${VAR}` key
    // (which the gateway would read and send upstream) is refused and never written.
    let secret_file = dir.0.join("someone-elses-credentials");
    std::fs::write(&secret_file, "ghp_not-for-the-console\n").unwrap();
    for added in [
        format!("    - file: {}\n", secret_file.display()),
        "    - key: ${HOME}\n".to_string(),
    ] {
        let grabbing = text.replace(
            "      levels: [0, 1]\n",
            &format!("      levels: [0, 1]\n{added}"),
        );
        assert_ne!(grabbing, text);
        let (status, v) = api(
            console,
            "POST",
            "/api/config",
            Some(TOKEN),
            Some(json!({"yaml": grabbing})),
        );
        assert_eq!(status, 422, "{v}");
        assert_eq!(v["errors"][0]["path"], "keys.upstream[1]", "{v}");
        assert_eq!(
            std::fs::read_to_string(dir.0.join("llm-forward.yaml")).unwrap(),
            text
        );
    }
    // No API answer carries a key value (the config editor shows the file's own text only).
    for path in ["/api/overview", "/api/metrics", "/api/logs?private=1"] {
        let (_, answer) = api(console, "GET", path, Some(TOKEN), None);
        let shown = answer.to_string();
        for secret in [
            "sk-upstream-secret-value-1",
            "fk-alice-secret-value",
            "fk-from-the-environment",
        ] {
            assert!(!shown.contains(secret), "{secret} in {path}: {shown}");
        }
    }

    // Apply: the file is written with a backup, the running gateway reloads, the limit holds.
    let limited = config(
        &up.base_url(),
        port,
        admin,
        console,
        true,
        "limits:\n  strategy: sliding-window\n  requests:\n    - path: /v1/models\n      limit: 1/minute\n      per: global\n",
    );
    let (status, r) = api(
        console,
        "POST",
        "/api/config",
        Some(TOKEN),
        Some(json!({"yaml": limited})),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["applied"], true, "{r}\n{}", gw.output());
    assert_eq!(r["active_in_envoy"], true, "{r}");
    assert_eq!(
        std::fs::read_to_string(dir.0.join("llm-forward.yaml")).unwrap(),
        limited
    );
    let backup = std::path::PathBuf::from(r["backup"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), text);
    // The backup holds keys: owner-only.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let name = backup.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with("llm-forward.yaml.")
            && name.ends_with("Z.bak")
            && name.len() == "llm-forward.yaml.20261126T134015Z.bak".len(),
        "{name}"
    );
    let url = format!("http://127.0.0.1:{port}/v1/models");
    let statuses: Vec<u16> = (0..2)
        .map(|_| {
            let req = client()
                .get(&url)
                .bearer_auth("fk-from-the-environment-123");
            req.send().unwrap().status().as_u16()
        })
        .collect();
    assert_eq!(
        statuses,
        [200, 429],
        "the limit applies to the next requests"
    );
    let (_, overview) = api(console, "GET", "/api/overview", Some(TOKEN), None);
    assert_eq!(
        overview["limits"]["requests"][0]["limit"], "1/minute",
        "{overview}"
    );
    assert_eq!(overview["reload"]["last"]["applied"], true);
}

#[test]
fn a_token_is_generated_when_the_config_has_none() {
    let up = MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let dir = TempDir::new("console-token");
    let (port, admin, console) = (free_port(), free_port(), free_port());
    let gw = start_console(
        &dir,
        &config(&up.base_url(), port, admin, console, false, ""),
    );
    let out = gw.output();
    let line = out
        .lines()
        .find(|l| l.starts_with("console: http://"))
        .unwrap();
    assert!(line.contains(&format!("127.0.0.1:{console}")), "{line}");
    let token = line.rsplit("token: ").next().unwrap().trim();
    assert_eq!(token.len(), 48, "{line}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        api(console, "GET", "/api/overview", Some(token), None).0,
        200
    );
    assert_eq!(
        api(console, "GET", "/api/overview", Some(TOKEN), None).0,
        401
    );
}

/// `llm-forward run --console` with `config` written to `dir`, ready once the console URL is printed.
fn start_console(dir: &TempDir, config: &str) -> RunningGateway {
    let path = dir.0.join("llm-forward.yaml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = gateway_command();
    cmd.args(["run", "--console", "--config"])
        .arg(&path)
        .env("FK_ENV_KEY", "fk-from-the-environment-123")
        .current_dir(&dir.0);
    RunningGateway::spawn(cmd, "console: http://")
}
