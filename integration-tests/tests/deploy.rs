//! Deployment artefacts stay valid: docker-compose.yml, the Kubernetes manifests, the Istio
//! WasmPlugin, and the documentation's copy-paste examples (docs/deploy.md "Use it in your own
//! Envoy" and "Use it in Istio", docs/migration.md "Example"), read from the pages by `doc_block`.

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_core::config::FilterConfig;
use llm_forward_integration_tests::*;
use serde_yaml::Value;
use std::path::Path;
use std::process::{Command, Output};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `llm-forward render -c <path> [args]` from an empty folder (no `.env` around).
fn render(path: &Path, args: &[&str]) -> Output {
    let cwd = TempDir::new("deploy-render");
    Command::new(gateway_bin())
        .args(["render", "-c"])
        .arg(path)
        .args(args)
        .current_dir(&cwd.0)
        .env_remove("LLM_FORWARD_CONFIG")
        .output()
        .unwrap()
}

fn render_text(name: &str, config: &str, args: &[&str]) -> String {
    let dir = TempDir::new("deploy-config");
    let path = dir.0.join(name);
    std::fs::write(&path, config).unwrap();
    let out = render(&path, args);
    assert!(
        out.status.success(),
        "{name} does not render:\n{}",
        text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.split("\n---\n")
        .map(|doc| serde_yaml::from_str::<Value>(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

/// `${VAR}` names used in a config text.
fn references(config: &str) -> Vec<String> {
    let without_comments: String = config
        .lines()
        .map(|l| match l.find('#') {
            Some(i) if i == 0 || l[..i].ends_with(' ') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
        .collect()
}

#[test]
fn docker_compose_file_parses_and_its_config_renders() {
    let root = workspace_root();
    let out = Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| {
            panic!("docker-compose is needed (scripts/setup-test.sh installs it): {e}")
        });
    assert!(out.status.success(), "{}", text(&out));

    let compose = &documents(&root.join("docker-compose.yml"))[0];
    let services = compose.get("services").unwrap();
    for name in ["gateway", "upstream", "redis"] {
        assert!(services.get(name).is_some(), "service {name} is missing");
    }
    let command = |s: &str| -> Vec<String> {
        services[s]["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        command("upstream")[..3],
        ["mock", "--listen", "0.0.0.0:9000"]
    );
    let gateway = command("gateway");
    assert_eq!(gateway[0], "run");
    // The mounted config is the one in deploy/compose, and it renders.
    let mount = services["gateway"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|v| v.ends_with(&format!("{}:ro", gateway[2])))
        .expect("the config given to `run --config` is mounted");
    let local = mount.split(':').next().unwrap();
    let config_path = root.join(local);
    let config = std::fs::read_to_string(&config_path).unwrap();
    let out = render(&config_path, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("upstream"));
    // Every key the config references is passed to the container.
    let env = &services["gateway"]["environment"];
    for var in references(&config) {
        assert!(
            env.get(var.as_str()).is_some(),
            "{var} is not passed to the gateway"
        );
    }
    assert!(
        !root.join(".env").exists()
            || std::fs::read_to_string(root.join(".gitignore"))
                .unwrap()
                .contains(".env")
    );
    compose_fleet(&root, services);
}

/// Profile `fleet`: two gateway replicas asking the `ratelimit` service (on the `redis` service),
/// behind one Envoy port.
fn compose_fleet(root: &Path, services: &Value) {
    let command = |s: &str| -> Vec<String> {
        services[s]["command"]
            .as_sequence()
            .unwrap_or_else(|| panic!("service {s} has no command"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let rls = command("ratelimit");
    assert_eq!(rls[..3], ["ratelimit", "--listen", "0.0.0.0:8081"]);
    let redis_url = &rls[rls.iter().position(|a| a == "--redis").unwrap() + 1];
    let redis_host = redis_url
        .trim_start_matches("redis://")
        .split(':')
        .next()
        .unwrap();
    assert!(
        services.get(redis_host).is_some(),
        "--redis names no service"
    );
    for replica in ["gateway-a", "gateway-b"] {
        assert_eq!(command(replica)[0], "run");
        let mount = services[replica]["volumes"][0].as_str().unwrap();
        let config_path = root.join(mount.split(':').next().unwrap());
        let config = std::fs::read_to_string(&config_path).unwrap();
        assert!(
            config.contains("service: grpc://ratelimit:8081"),
            "{replica} does not ask the ratelimit service"
        );
        let out = render(&config_path, &[]);
        assert!(out.status.success(), "{}", text(&out));
        let env = &services[replica]["environment"];
        for var in references(&config) {
            assert!(
                env.get(var.as_str()).is_some(),
                "{var} is not passed to {replica}"
            );
        }
    }
    // The one port: an Envoy config that Envoy accepts and that lists both replicas.
    let front = services["front"]["volumes"][0].as_str().unwrap();
    let front_path = root.join(front.split(':').next().unwrap());
    let front_config = std::fs::read_to_string(&front_path).unwrap();
    for replica in ["gateway-a", "gateway-b"] {
        assert!(front_config.contains(&format!("address: {replica},")));
    }
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&front_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn kubernetes_manifests_validate_and_their_configs_render() {
    let root = workspace_root();
    let dir = root.join("deploy/kubernetes");
    let files = ["gateway.yaml", "gateway-redis.yaml", "gateway-fleet.yaml"];
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .args(files.iter().map(|f| dir.join(f)))
        .arg(dir.join("ratelimit.yaml"))
        .output()
        .unwrap_or_else(|e| {
            panic!("kubernetes-validate is needed (scripts/setup-test.sh installs it): {e}")
        });
    assert!(out.status.success(), "{}", text(&out));

    for file in files {
        let docs = documents(&dir.join(file));
        let kinds: Vec<&str> = docs.iter().filter_map(|d| str_at(d, &["kind"])).collect();
        for kind in ["ConfigMap", "Deployment", "Service"] {
            assert!(kinds.contains(&kind), "{file}: no {kind}");
        }
        let config = docs
            .iter()
            .find(|d| str_at(d, &["kind"]) == Some("ConfigMap"))
            .and_then(|d| str_at(d, &["data", "llm-forward.yaml"]))
            .unwrap_or_else(|| panic!("{file}: the ConfigMap holds no llm-forward.yaml"));
        render_text("llm-forward.yaml", config, &[]);
        // The gateway Deployment runs `llm-forward run` on the mounted ConfigMap, with keys from a Secret.
        let gateway = docs
            .iter()
            .filter(|d| str_at(d, &["kind"]) == Some("Deployment"))
            .find(|d| {
                d["spec"]["template"]["spec"]["containers"][0]["args"][0].as_str() == Some("run")
            })
            .unwrap_or_else(|| panic!("{file}: no Deployment runs `llm-forward run`"));
        let container = &gateway["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["args"][2].as_str(),
            Some("/etc/llm-forward/llm-forward.yaml")
        );
        let secret_name = container["envFrom"][0]["secretRef"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: keys do not come from a Secret"));
        if file == "gateway.yaml" {
            let secret = docs
                .iter()
                .find(|d| str_at(d, &["kind"]) == Some("Secret"))
                .expect("gateway.yaml has a Secret");
            assert_eq!(str_at(secret, &["metadata", "name"]), Some(secret_name));
            for var in references(config) {
                assert!(
                    secret["stringData"].get(var.as_str()).is_some(),
                    "the Secret lacks {var}"
                );
            }
        } else if file == "gateway-fleet.yaml" {
            assert!(gateway["spec"]["replicas"].as_u64().unwrap() >= 3);
            kubernetes_fleet_service(&dir, config);
        } else {
            assert!(config.contains("backend: redis"));
            assert!(gateway["spec"]["replicas"].as_u64().unwrap() > 1);
            let redis_service = docs.iter().any(|d| {
                str_at(d, &["kind"]) == Some("Service")
                    && config.contains(&format!(
                        "redis://{}:",
                        str_at(d, &["metadata", "name"]).unwrap()
                    ))
            });
            assert!(redis_service, "redis_url names no Service of the file");
        }
    }
}

/// deploy/kubernetes/ratelimit.yaml: the service the fleet's `limits.service` names, with ≥ 2
/// stateless replicas on the Redis Service of the same file.
fn kubernetes_fleet_service(dir: &Path, gateway_config: &str) {
    let docs = documents(&dir.join("ratelimit.yaml"));
    let of_kind = |kind: &'static str| {
        docs.iter()
            .filter(move |d| str_at(d, &["kind"]) == Some(kind))
    };
    let rls = of_kind("Deployment")
        .find(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["args"][0].as_str() == Some("ratelimit")
        })
        .expect("ratelimit.yaml: no Deployment runs `llm-forward ratelimit`");
    assert!(rls["spec"]["replicas"].as_u64().unwrap() >= 2);
    let container = &rls["spec"]["template"]["spec"]["containers"][0];
    let redis_url = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some("LLM_FORWARD_RATELIMIT_REDIS"))
        .and_then(|e| e["value"].as_str())
        .expect("the Redis URL is given");
    let service_names: Vec<&str> = of_kind("Service")
        .filter_map(|d| str_at(d, &["metadata", "name"]))
        .collect();
    let redis_host = redis_url
        .trim_start_matches("redis://")
        .split(':')
        .next()
        .unwrap();
    assert!(
        service_names.contains(&redis_host),
        "{redis_url} names no Service"
    );
    let named = service_names
        .iter()
        .any(|name| gateway_config.contains(&format!("service: grpc://{name}:8081")));
    assert!(named, "limits.service names no Service of ratelimit.yaml");
}

#[test]
fn istio_wasm_plugin_matches_a_fresh_render() {
    let root = workspace_root();
    let committed = &documents(&root.join("deploy/istio/wasmplugin.yaml"))[0];
    assert_eq!(
        str_at(committed, &["apiVersion"]),
        Some("extensions.istio.io/v1alpha1")
    );
    assert_eq!(str_at(committed, &["kind"]), Some("WasmPlugin"));
    let spec = &committed["spec"];
    assert!(str_at(spec, &["url"]).unwrap().starts_with("oci://"));
    assert!(spec["selector"]["matchLabels"]
        .as_mapping()
        .is_some_and(|m| !m.is_empty()));
    assert!(["AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE"]
        .contains(&str_at(spec, &["phase"]).unwrap()));
    let plugin = serde_json::to_vec(&spec["pluginConfig"]).unwrap();
    let filter = FilterConfig::from_json(&plugin).unwrap();
    assert!(!filter.routes.is_empty());
    // Every ${VAR} key of the plugin config is read from the gateway pod's environment.
    let env: Vec<&str> = spec["vmConfig"]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["valueFrom"].as_str(), Some("HOST"));
            e["name"].as_str().unwrap()
        })
        .collect();
    for var in references(&String::from_utf8(plugin).unwrap()) {
        assert!(env.contains(&var.as_str()), "{var} is not in vmConfig.env");
    }
    // It is what `render --istio` makes of deploy/istio/llm-forward.yaml today.
    let out = render(&root.join("deploy/istio/llm-forward.yaml"), &["--istio"]);
    assert!(out.status.success(), "{}", text(&out));
    let fresh: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert!(
        &fresh == committed,
        "deploy/istio/wasmplugin.yaml is stale: llm-forward render --istio -c deploy/istio/llm-forward.yaml > deploy/istio/wasmplugin.yaml"
    );
}

#[test]
fn docs_own_envoy_example_renders_and_envoy_loads_it() {
    let dir = TempDir::new("docs-envoy");
    let config = doc_block("docs/deploy.md", "## Use it in your own Envoy", "yaml");
    let log_dir = dir.0.join("log");
    let rendered = render_text(
        "llm-forward.yaml",
        &config,
        &[
            "--wasm-path",
            &wasm_path().display().to_string(),
            "--log-dir",
            &log_dir.display().to_string(),
        ],
    );
    // The page's folder step, then Envoy loads the config and the filter accepts its configuration.
    std::fs::create_dir_all(log_dir.join("root")).unwrap();
    let path = dir.0.join("envoy.yaml");
    std::fs::write(&path, rendered).unwrap();
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&path)
        .env("OPENAI_KEY", "sk-docs")
        .env("FK_ALICE", "fk-docs")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn docs_istio_example_renders_a_wasm_plugin() {
    let out = render_text(
        "llm-forward.yaml",
        &doc_block("docs/deploy.md", "## Use it in Istio", "yaml"),
        &["--istio"],
    );
    let manifest: Value = serde_yaml::from_str(&out).unwrap();
    assert_eq!(str_at(&manifest, &["kind"]), Some("WasmPlugin"));
    FilterConfig::from_json(&serde_json::to_vec(&manifest["spec"]["pluginConfig"]).unwrap())
        .unwrap();
}

#[test]
fn docs_migration_example_migrates_and_renders() {
    let dir = TempDir::new("docs-migrate");
    std::fs::write(
        dir.0.join(".env"),
        doc_block("docs/migration.md", "## Example", "bash"),
    )
    .unwrap();
    let out = Command::new(gateway_bin())
        .args(["migrate", "--dir"])
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let yaml = String::from_utf8(out.stdout).unwrap();
    for key in ["sk-xxx1", "sk-xxx2", "fk-11"] {
        assert!(!yaml.contains(key), "a key leaked:\n{yaml}");
    }
    assert!(yaml.contains("backend: disk"), "{yaml}");
    let rendered = render_text("llm-forward.yaml", &yaml, &[]);
    assert!(rendered.contains("LLM_FORWARD_UPSTREAM_KEY_1"));
}
