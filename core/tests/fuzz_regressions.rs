//! Replays the fuzzers' findings in a plain `cargo test` (no nightly): every file in
//! `core/fuzz/regressions/<target>/` goes through the same check as the cargo-fuzz target
//! `<target>` (core/fuzz/checks.rs). A crashing input found by `scripts/fuzz.sh` is copied there
//! once fixed, so the bug stays fixed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::PathBuf;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"));
    files.sort();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "regression input {} fails again",
            file.display()
        );
    }
    // An empty input and a few tiny ones always run, so each check is exercised natively.
    for data in [
        &b""[..],
        b"\x00",
        b"\x01",
        b"\x04",
        b"\x02{}",
        b"\x00data: x\n\n",
    ] {
        check(data);
    }
}

#[test]
fn fuzz_regressions_sse() {
    replay("sse", checks::sse);
}

#[test]
fn fuzz_regressions_answer() {
    replay("answer", checks::answer);
}

#[test]
fn fuzz_regressions_limits() {
    replay("limits", checks::limits);
}

#[test]
fn fuzz_regressions_config() {
    replay("config", checks::config);
}

#[test]
fn fuzz_regressions_request_body() {
    replay("request_body", checks::request_body);
}

#[test]
fn fuzz_regressions_cache_entry() {
    replay("cache_entry", checks::cache_entry);
}

#[test]
fn fuzz_regressions_model_of() {
    replay("model_of", checks::model_of);
}
