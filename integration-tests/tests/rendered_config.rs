//! The shipped Envoy examples stay in sync with the renderer, and Envoy accepts what we render.

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_gateway::config_file;
use llm_forward_gateway::render::{bootstrap, to_yaml, RenderOptions};
use llm_forward_integration_tests::*;
use std::process::Command;

fn example_options(wasm_path: &str, log_dir: &str) -> RenderOptions {
    RenderOptions {
        wasm_path: wasm_path.into(),
        log_dir: log_dir.into(),
        ca_bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
        ..Default::default()
    }
}

fn render_example(wasm_path: &str, log_dir: &str) -> String {
    let path = workspace_root().join("envoy/llm-forward.example.yaml");
    let valid = config_file::load(Some(&path), &|_| None).unwrap();
    to_yaml(&bootstrap(&valid, &example_options(wasm_path, log_dir)))
}

#[test]
fn envoy_example_matches_the_renderer() {
    let rendered = render_example(
        "/etc/llm-forward/llm_forward_filter.wasm",
        "/var/log/llm-forward",
    );
    let committed =
        std::fs::read_to_string(workspace_root().join("envoy/envoy.yaml")).unwrap_or_default();
    if rendered != committed && std::env::var("UPDATE_EXAMPLES").is_ok() {
        std::fs::write(workspace_root().join("envoy/envoy.yaml"), &rendered).unwrap();
        return;
    }
    assert!(rendered == committed, "envoy/envoy.yaml is stale: rerun with UPDATE_EXAMPLES=1 cargo test -p llm-forward-integration-tests --test rendered_config");
}

fn validate(dir: &TempDir, yaml: &str) -> std::process::Output {
    // Envoy opens the per-route chat logs at load and does not create their folders (`run` does).
    let example = workspace_root().join("envoy/llm-forward.example.yaml");
    let valid = config_file::load(Some(&example), &|_| None).unwrap();
    llm_forward_gateway::render::create_log_dirs(&valid, &dir.0.display().to_string()).unwrap();
    let path = dir.0.join("envoy.yaml");
    std::fs::write(&path, yaml).unwrap();
    Command::new(envoy_bin())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn envoy_validates_the_rendered_example_with_the_real_filter() {
    // `--mode validate` loads the VM and runs on_configure, so this proves the plugin config too.
    let dir = TempDir::new("validate");
    let out = validate(
        &dir,
        &render_example(
            &wasm_path().display().to_string(),
            &dir.0.display().to_string(),
        ),
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bad_plugin_config_fails_on_configure_with_the_field_named() {
    let dir = TempDir::new("validate-bad");
    let rendered = render_example(
        &wasm_path().display().to_string(),
        &dir.0.display().to_string(),
    );
    // Corrupt one field of the plugin configuration the way a hand edit might.
    let broken = rendered.replacen(r#""type":"openai""#, r#""type":"grpc""#, 1);
    assert!(
        broken != rendered,
        "the plugin JSON should contain a route type to corrupt"
    );
    let out = validate(&dir, &broken);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "Envoy accepted a broken plugin config:\n{log}"
    );
    assert!(
        log.contains("routes[0].type"),
        "the error should name the field:\n{log}"
    );
}
