//! Unit tests of the console's pure parts; the HTTP API is tested against a running
//! `llm-forward run --console` in integration-tests/tests/console.rs.

use super::*;

#[test]
fn bearer_token_is_required_and_compared_exactly() {
    let mut h = HeaderMap::new();
    assert!(!authorized(&h, "secret-token-0123456789"));
    h.insert(
        "authorization",
        HeaderValue::from_static("Bearer secret-token-0123456789"),
    );
    assert!(authorized(&h, "secret-token-0123456789"));
    h.insert(
        "authorization",
        HeaderValue::from_static("bearer secret-token-0123456789"),
    );
    assert!(authorized(&h, "secret-token-0123456789"));
    h.insert(
        "authorization",
        HeaderValue::from_static("Bearer secret-token-012345678"),
    );
    assert!(!authorized(&h, "secret-token-0123456789"));
    h.insert(
        "authorization",
        HeaderValue::from_static("Basic secret-token-0123456789"),
    );
    assert!(!authorized(&h, "secret-token-0123456789"));
    h.insert("authorization", HeaderValue::from_static("Bearer "));
    assert!(!authorized(&h, "secret-token-0123456789"));
}

#[test]
fn generated_tokens_are_long_and_differ() {
    let a = generate_token().unwrap();
    let b = generate_token().unwrap();
    assert_eq!(a.len(), 48);
    assert_ne!(a, b);
}

#[test]
fn validation_names_fields_and_restart_only_changes() {
    let running = llm_forward_core::config::Config::default();
    let validate_text = |t: &str, r: &llm_forward_core::config::Config| {
        validate_text(t, r, &config_file::Overrides::default())
    };
    let errors = validate_text("routes:\n  - route: /\n    base_url: ftp://x\n", &running);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "routes[0].base_url");
    let errors = validate_text("server:\n  port: nope\n", &running);
    assert_eq!(errors[0].path, "server.port");
    let errors = validate_text("no_such_field: 1\n", &running);
    assert!(errors[0].message.contains("unknown field"), "{errors:?}");
    assert!(validate_text(
        "routes:\n  - {route: /, base_url: 'http://127.0.0.1:9'}\n",
        &running
    )
    .is_empty());
    let errors = validate_text("log_dir: Elsewhere\n", &running);
    assert_eq!(errors[0].path, "log_dir");
    assert!(errors[0].message.contains("restart"));
}

#[test]
fn writes_keep_a_timestamped_backup() {
    let dir = std::env::temp_dir().join(format!("llmf-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("llm-forward.yaml");
    std::fs::write(&path, "old: 1\n").unwrap();
    let backup = write_with_backup(&path, "new: 2\n", 1_795_000_000_000, false)
        .unwrap()
        .unwrap();
    assert_eq!(
        backup.file_name().unwrap().to_str().unwrap(),
        format!(
            "llm-forward.yaml.{}.bak",
            crate::logrotate::suffix(1_795_000_000_000)
        )
    );
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), "old: 1\n");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new: 2\n");
    // A second write in the same second gets its own backup.
    let again = write_with_backup(&path, "newer: 3\n", 1_795_000_000_000, false)
        .unwrap()
        .unwrap();
    assert_ne!(again, backup);
    assert_eq!(std::fs::read_to_string(&again).unwrap(), "new: 2\n");
    // Backups may hold keys: owner-only whatever the umask, group-readable on request.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&backup), 0o600);
    let grouped = write_with_backup(&path, "newest: 4\n", 1_795_000_000_000, true)
        .unwrap()
        .unwrap();
    assert_eq!(mode(&grouped), 0o640);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn query_params_are_found() {
    assert_eq!(query_param("after=3&private=1", "private"), Some("1"));
    assert_eq!(query_param("after=3&private", "private"), Some(""));
    assert_eq!(query_param("after=3", "limit"), None);
}

#[test]
fn the_console_cannot_add_keys_or_secret_references() {
    let running = config_file::parse_yaml(
        "keys:\n  upstream:\n    - key: ${OPENAI_KEY}\n  forward:\n    - key: fk-known-key\n",
    )
    .unwrap();
    let check = |t: &str| validate_text(t, &running, &config_file::Overrides::default());
    // The running keys, re-levelled and re-ordered: fine.
    assert!(check("keys:\n  upstream:\n    - key: ${OPENAI_KEY}\n      levels: [0, 1]\n  forward:\n    - key: fk-known-key\n      level: 1\n  levels:\n    1: [gpt-4o]\n").is_empty());
    // Removing keys: fine.
    assert!(check("keys:\n  forward:\n    - key: fk-known-key\n").is_empty());
    for (text, path) in [
        (
            "keys:\n  upstream:\n    - file: /home/u/.git-credentials\n",
            "keys.upstream[0]",
        ),
        (
            "keys:\n  upstream:\n    - key: ${OPENAI_KEY}\n    - key: ${HOME}\n",
            "keys.upstream[1]",
        ),
        (
            "keys:\n  upstream:\n    - key: sk-new-literal\n",
            "keys.upstream[0]",
        ),
        (
            "keys:\n  forward:\n    - key: ${AWS_SECRET_ACCESS_KEY}\n",
            "keys.forward[0]",
        ),
    ] {
        let errors = check(text);
        assert_eq!(errors.len(), 1, "{text}: {errors:?}");
        assert_eq!(errors[0].path, path);
        assert!(errors[0].message.contains("cannot add keys"), "{errors:?}");
    }
}

#[test]
fn the_overview_hides_the_redis_password_of_fleet_limits() {
    let limits = llm_forward_core::limits::config::LimitsConfig {
        backend: Some("redis://:hunter2@redis:6379/0".into()),
        ..Default::default()
    };
    let shown = limits_overview(&limits);
    assert_eq!(shown["backend"], "redis://***@redis:6379/0");
    assert!(!shown.to_string().contains("hunter2"));
}
