use super::*;
use crate::config_file::{apply_env, parse_yaml};
use crate::openai_forward_env::*;
use llm_forward_core::cache::CacheBackend;
use llm_forward_core::config::RouteKind;
use llm_forward_core::limits::LimitSpec;

/// OpenAI-Forward HEAD's shipped `.env` (reference §9), plus keys and levels.
pub const SHIPPED_ENV: &str = r#"LOG_GENERAL=true
LOG_OPENAI=true

CACHE_GENERAL=true
CACHE_OPENAI=true
CACHE_ROUTES=["/v1/chat/completions","/v1/embeddings"]
# `CACHE_BACKEND`: Options (MEMORY, LMDB, LevelDB)
CACHE_BACKEND=MEMORY

FORWARD_CONFIG=[{"base_url":"https://api.openai.com","route":"/","type":"openai"}]

OPENAI_API_KEY_CONFIG={"sk-second-real-key": [0, 1], "sk-first-real-key": [1]}
FORWARD_KEY_CONFIG={"0": ["fk-zero"], "1": ["fk-one", "fk-eleven"]}
LEVEL_MODELS={"1": ["gpt-4o-mini"]}

# `REQ_RATE_LIMIT`: i.e., Request rate limit
REQ_RATE_LIMIT='{
"/v1/chat/completions":[{"level":0,"limit":"100/2minutes"}],
"/v1/completions":[{"level":0,"limit":"60/minute;600/hour"}]
}'

GLOBAL_RATE_LIMIT=200/minute
RATE_LIMIT_STRATEGY=moving-window

TOKEN_RATE_LIMIT='{
"/v1/chat/completions":[{"level":0,"limit":"100/second"}],
"/v1/completions":[{"level":0,"limit":"60/second"}],
"/benchmark/v1/chat/completions":[{"level":0,"limit":"20/second"}]
}'

TIMEOUT=6
ITER_CHUNK_TYPE=one-by-one
BENCHMARK_MODE=true
DEFAULT_STREAM_RESPONSE=true
TZ=Asia/Shanghai
"#;

fn none(_: &str) -> Option<String> {
    None
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

fn config_with(pairs: &[(&str, &str)]) -> Config {
    let mut c = Config::default();
    apply_env(&mut c, &env_of(pairs)).unwrap();
    c
}

#[test]
fn the_shipped_env_maps_every_key() {
    let overlay = from_dotenv(SHIPPED_ENV, &none);
    let (c, secrets, notes) = migrated(Some(&overlay), &none).unwrap();
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].base_url, "https://api.openai.com");
    assert_eq!(c.routes[0].connect_timeout, 6.0);
    assert!(c.logging.chat);
    assert!(c.cache.openai && c.cache.general);
    assert_eq!(c.cache.backend, CacheBackend::Memory);
    assert_eq!(c.cache.routes, ["/v1/chat/completions", "/v1/embeddings"]);
    // Multi-line single-quoted JSON, in the file's order.
    assert_eq!(c.limits.requests.len(), 2);
    assert_eq!(c.limits.requests[0].path, "/v1/chat/completions");
    assert_eq!(c.limits.requests[0].limit.to_string(), "100/2minutes");
    assert_eq!(c.limits.requests[1].limit.to_string(), "60/minute;600/hour");
    assert_eq!(c.limits.global.to_string(), "200/minute");
    assert_eq!(c.limits.strategy.as_str(), "sliding-window");
    assert_eq!(c.limits.pacing.len(), 3);
    assert_eq!(c.limits.pacing[2].path, "/benchmark/v1/chat/completions");
    // Keys: references only, values in the variables, rotation order kept.
    assert_eq!(c.keys.upstream.len(), 2);
    assert_eq!(
        c.keys.upstream[0].key.as_deref(),
        Some("${LLM_FORWARD_UPSTREAM_KEY_0}")
    );
    assert_eq!(c.keys.upstream[0].levels, [0, 1]);
    assert_eq!(c.keys.upstream[1].levels, [1]);
    assert_eq!(
        secrets,
        [
            (
                "LLM_FORWARD_UPSTREAM_KEY_0".into(),
                "sk-second-real-key".into()
            ),
            (
                "LLM_FORWARD_UPSTREAM_KEY_1".into(),
                "sk-first-real-key".into()
            ),
            ("LLM_FORWARD_FORWARD_KEY_0".into(), "fk-zero".into()),
            ("LLM_FORWARD_FORWARD_KEY_1".into(), "fk-one".into()),
            ("LLM_FORWARD_FORWARD_KEY_2".into(), "fk-eleven".into()),
        ]
    );
    let levels: Vec<u32> = c.keys.forward.iter().map(|k| k.level).collect();
    assert_eq!(levels, [0, 1, 1]);
    assert_eq!(c.keys.levels[&1], ["gpt-4o-mini"]);
    assert!(notes.iter().any(|n| n.contains("401")), "{notes:?}");
    // One warning line per unused key, naming it.
    for key in [
        "LOG_GENERAL",
        "ITER_CHUNK_TYPE",
        "BENCHMARK_MODE",
        "DEFAULT_STREAM_RESPONSE",
        "TZ",
    ] {
        let lines: Vec<&String> = overlay
            .warnings
            .iter()
            .filter(|w| w.contains(&format!(" {key} is ignored")))
            .collect();
        assert_eq!(lines.len(), 1, "{key}: {:?}", overlay.warnings);
    }
    assert_eq!(overlay.warnings.len(), 5, "{:?}", overlay.warnings);
}

#[test]
fn forward_keys_in_both_shapes_and_string_levels() {
    // 0.8.1: key → level (numbers or strings); `default` is reported, not a key.
    let (keys, notes) =
        parse_forward_keys(r#"{"fk-0": 0, "fk-1": "1", "fk-2": 2, "default": 1}"#).unwrap();
    assert_eq!(
        keys,
        [("fk-0".into(), 0), ("fk-1".into(), 1), ("fk-2".into(), 2)]
    );
    assert_eq!(notes.len(), 1);
    assert!(notes[0].contains("default"));
    // HEAD: level → keys, string levels, file order kept.
    let (keys, notes) =
        parse_forward_keys(r#"{"2": ["fk-2"], "0": ["fk-0"], "1":["fk-1", "fk-11"]}"#).unwrap();
    assert_eq!(
        keys,
        [
            ("fk-2".into(), 2),
            ("fk-0".into(), 0),
            ("fk-1".into(), 1),
            ("fk-11".into(), 1)
        ]
    );
    assert!(notes.is_empty());
    // A single key instead of a list.
    let (keys, _) = parse_forward_keys(r#"{"1": "fk-x"}"#).unwrap();
    assert_eq!(keys, [("fk-x".into(), 1)]);
    // A key under two levels is an error that does not show the key.
    let err = parse_forward_keys(r#"{"0": ["fk-secret"], "1": ["fk-secret"]}"#).unwrap_err();
    assert!(!err.to_string().contains("fk-secret"), "{err}");
    let err = parse_forward_keys(r#"{"fk-secret": {"level": 1}}"#).unwrap_err();
    assert!(!err.to_string().contains("fk-secret"), "{err}");
    assert!(parse_forward_keys("[1]").is_err());
}

#[test]
fn upstream_keys_levels_and_models() {
    let keys = parse_upstream_keys(r#"{"sk-b": [0, "1"], "sk-a": 2, "${MY_KEY}": [0]}"#).unwrap();
    assert_eq!(
        keys,
        [
            ("sk-b".into(), vec![0, 1]),
            ("sk-a".into(), vec![2]),
            ("${MY_KEY}".into(), vec![0])
        ]
    );
    assert!(parse_upstream_keys(r#"{"sk-a": ["x"]}"#).is_err());
    assert!(parse_upstream_keys("sk-a,sk-b").is_err());
    // A key already written as ${VAR} stays a reference and needs no variable.
    let env = env_of(&[(
        "OPENAI_API_KEY_CONFIG",
        r#"{"sk-b": [0], "${MY_KEY}": [0]}"#,
    )]);
    assert_eq!(secret_vars(&env).unwrap().len(), 1);
    let c = config_with(&[(
        "OPENAI_API_KEY_CONFIG",
        r#"{"sk-b": [0], "${MY_KEY}": [0]}"#,
    )]);
    assert_eq!(c.keys.upstream[1].key.as_deref(), Some("${MY_KEY}"));

    let levels =
        parse_level_models(r#"{"1": ["gpt-4"], "2": ["gpt-3.5-turbo", "qwen*"], "0": ["x"]}"#)
            .unwrap();
    assert_eq!(levels.len(), 2, "level 0 (every model) is dropped");
    assert_eq!(levels[&2], ["gpt-3.5-turbo", "qwen*"]);
    assert!(parse_level_models(r#"{"one": ["gpt-4"]}"#).is_err());
}

#[test]
fn ip_lists_cache_backend_and_folder() {
    let c = config_with(&[
        ("IP_WHITELIST", " 10.0.0.1, ,192.168.0.0/16 "),
        ("IP_BLACKLIST", "10.0.0.9"),
        ("CACHE_BACKEND", "LMDB"),
        ("CACHE_ROOT_PATH_OR_URL", "./FLAXKV_DB"),
    ]);
    assert_eq!(c.ip.allow, ["10.0.0.1", "192.168.0.0/16"]);
    assert_eq!(c.ip.deny, ["10.0.0.9"]);
    assert_eq!(c.cache.backend, CacheBackend::Disk);
    assert_eq!(c.cache.path, "./FLAXKV_DB/cache.redb");
    c.validate().unwrap();
    let c = config_with(&[("CACHE_BACKEND", "leveldb")]);
    assert_eq!(c.cache.backend, CacheBackend::Disk);
    let c = config_with(&[
        ("CACHE_BACKEND", "MEMORY"),
        ("DEFAULT_REQUEST_CACHING_VALUE", "true"),
    ]);
    assert_eq!(c.cache.backend, CacheBackend::Memory);
    assert!(c.cache.default_request_caching);
    let mut c = Config::default();
    assert!(apply_env(&mut c, &env_of(&[("CACHE_BACKEND", "sqlite")])).is_err());
}

#[test]
fn inf_limits_and_string_levels_in_limits() {
    let c = config_with(&[
        ("GLOBAL_RATE_LIMIT", "inf"),
        (
            "REQ_RATE_LIMIT",
            r#"{"/v1/chat/completions":[{"level":"0","limit":"inf"},{"level":"1","limit":"2/minute"}]}"#,
        ),
    ]);
    assert_eq!(c.limits.global, LimitSpec::Unlimited);
    assert_eq!(c.limits.requests[0].level, Some(0));
    assert_eq!(c.limits.requests[0].limit, LimitSpec::Unlimited);
    assert_eq!(c.limits.requests[1].level, Some(1));
    c.validate().unwrap();
}

#[test]
fn the_real_environment_wins_over_the_file() {
    let overlay = from_dotenv("TIMEOUT=6\nLLM_FORWARD_PORT=9100\nLOG_OPENAI=true\n", &none);
    let real = env_of(&[("LLM_FORWARD_PORT", "9200"), ("LOG_OPENAI", "false")]);
    let (c, _, _) = migrated(Some(&overlay), &real).unwrap();
    assert_eq!(c.server.port, 9200);
    assert!(!c.logging.chat);
    assert_eq!(c.routes[0].connect_timeout, 6.0);
    // And the file wins over llm-forward.yaml (apply_env runs after the YAML is read).
    let mut c = parse_yaml("routes:\n  - route: /x\n    base_url: http://a\n").unwrap();
    let env = |k: &str| overlay.get(k).map(str::to_string);
    apply_env(&mut c, &env).unwrap();
    assert_eq!(c.server.port, 9100);
    assert_eq!(
        c.routes[0].route, "/x",
        "FORWARD_CONFIG unset: the file's routes stay"
    );
}

#[test]
fn unknown_and_deprecated_keys_get_advice() {
    for key in [
        "PROXY",
        "ITER_CHUNK_TYPE",
        "BENCHMARK_MODE",
        "PRINT_CHAT",
        "LOG_GENERAL",
        "CUSTOM_MODEL_CONFIG",
        "WEBUI_RESTART_PORT",
        "TZ",
        "DEFAULT_STREAM_RESPONSE",
        "OPENAI_API_KEY",
        "FORWARD_KEY",
    ] {
        let w = key_warning(key).unwrap();
        assert!(w.starts_with(&format!("{key} is ignored: ")), "{w}");
    }
    assert!(key_warning("FOO_BAR").unwrap().contains("FOO_BAR is not"));
    for key in MAPPED
        .iter()
        .chain(["LLM_FORWARD_PORT", "CACHE_PATH"].iter())
    {
        assert_eq!(key_warning(key), None, "{key}");
    }
    // Every mapped key is really read by apply_env: a bad value is an error naming it.
    for key in [
        "FORWARD_CONFIG",
        "OPENAI_API_KEY_CONFIG",
        "FORWARD_KEY_CONFIG",
        "LEVEL_MODELS",
        "REQ_RATE_LIMIT",
        "GLOBAL_RATE_LIMIT",
        "RATE_LIMIT_STRATEGY",
        "TOKEN_RATE_LIMIT",
        "CACHE_OPENAI",
        "CACHE_GENERAL",
        "CACHE_ROUTES",
        "CACHE_BACKEND",
        "DEFAULT_REQUEST_CACHING_VALUE",
        "TIMEOUT",
    ] {
        let mut c = Config::default();
        let err = apply_env(&mut c, &env_of(&[(key, "{bad")])).unwrap_err();
        assert!(err.path.starts_with(key), "{key}: {err}");
    }
}

#[test]
fn openai_forward_yaml_becomes_the_same_variables() {
    let yaml = r#"
log:
  general: true
  openai: true
cache:
  general: true
  openai: true
  routes: ["/v1/chat/completions"]
  backend: LevelDB
  root_path_or_url: ./FLAXKV_DB
  default_request_caching_value: false
forward:
  - base_url: http://127.0.0.1:9000
    route: /
    type: openai
api_key:
  level:
    1: ["gpt-4o-mini"]
  openai_key:
    "sk-b": [0, 1]
    "sk-a": [0]
  forward_key:
    0: ["fk-0"]
    1: ["fk-1", "fk-11"]
rate_limit:
  global_rate_limit: 100/minute
  strategy: moving-window
  iter_chunk: one-by-one
  req_rate_limit:
    - route: /v1/chat/completions
      value:
        - level: 0
          limit: 5/minute
  token_rate_limit:
    - route: /v1/chat/completions
      value:
        - level: 0
          limit: 60/second
timeout: 10
ip_blacklist: ["10.1.1.1", "10.2.0.0/16"]
proxy:
benchmark_mode: true
tz: Asia/Shanghai
"#;
    let overlay = from_openai_forward_yaml(yaml).unwrap();
    assert_eq!(overlay.get("CACHE_BACKEND"), Some("LevelDB"));
    assert_eq!(overlay.get("IP_BLACKLIST"), Some("10.1.1.1,10.2.0.0/16"));
    assert_eq!(overlay.get("PROXY"), None, "empty values are not set");
    let warned = |k: &str| overlay.warnings.iter().any(|w| w.contains(k));
    assert!(
        warned("ITER_CHUNK_TYPE")
            && warned("BENCHMARK_MODE")
            && warned("TZ")
            && warned("LOG_GENERAL")
    );
    let (c, secrets, _) = migrated(Some(&overlay), &none).unwrap();
    assert_eq!(c.routes[0].base_url, "http://127.0.0.1:9000");
    assert_eq!(c.cache.backend, CacheBackend::Disk);
    assert_eq!(c.cache.path, "./FLAXKV_DB/cache.redb");
    assert_eq!(c.limits.requests[0].limit.to_string(), "5/minute");
    assert_eq!(c.limits.pacing[0].limit.to_string(), "60/second");
    assert_eq!(c.limits.global.to_string(), "100/minute");
    assert_eq!(c.routes[0].connect_timeout, 10.0);
    assert_eq!(c.ip.deny.len(), 2);
    assert_eq!(c.keys.forward.len(), 3);
    assert_eq!(
        secrets[0],
        ("LLM_FORWARD_UPSTREAM_KEY_0".into(), "sk-b".into())
    );
    // The top-level req_rate_limit (what OpenAI-Forward's code read) works too.
    let top = from_openai_forward_yaml(
        "req_rate_limit:\n  - route: /v1/chat/completions\n    value: [{level: 0, limit: 1/second}]\n",
    )
    .unwrap();
    let (c, _, _) = migrated(Some(&top), &none).unwrap();
    assert_eq!(c.limits.requests[0].limit.to_string(), "1/second");
    assert!(from_openai_forward_yaml("- a\n").is_err());
}

#[test]
fn migrate_output_is_valid_yaml_without_keys() {
    let overlay = from_dotenv(SHIPPED_ENV, &none);
    let (c, secrets, notes) = migrated(Some(&overlay), &none).unwrap();
    let yaml = to_yaml(&c, ".env", &secrets, &notes);
    for (var, value) in &secrets {
        assert!(yaml.contains(var), "{yaml}");
        assert!(!yaml.contains(value.as_str()), "a key leaked:\n{yaml}");
    }
    // It reads back as the same configuration.
    let back = parse_yaml(&yaml).unwrap();
    assert_eq!(back, c, "\n{yaml}");
    let valid = back.validate().unwrap();
    // Default-valued settings are left out.
    assert!(!yaml.contains("max_answer_bytes"), "{yaml}");
    // The rendered Envoy config holds references, never the keys.
    let rendered = crate::render::to_yaml(&crate::render::bootstrap(
        &valid,
        &crate::render::RenderOptions {
            wasm_path: "/x.wasm".into(),
            log_dir: "/tmp/log".into(),
            ca_bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
            ..Default::default()
        },
    ));
    assert!(rendered.contains("LLM_FORWARD_UPSTREAM_KEY_0"));
    for (_, value) in &secrets {
        assert!(!rendered.contains(value.as_str()), "a key was rendered");
    }
    let keys_file = secrets_env_file(&secrets);
    assert!(keys_file.contains("LLM_FORWARD_FORWARD_KEY_2=fk-eleven\n"));
    // Routes keep only what differs from a route's defaults.
    assert!(yaml.contains("connect_timeout: 6"), "{yaml}");
    assert!(!yaml.contains("stream_idle_timeout"), "{yaml}");
}

#[test]
fn a_bad_level_reference_is_reported_by_validation() {
    // A forward key of a level without LEVEL_MODELS: OpenAI-Forward answered 500 per request.
    let overlay = from_dotenv(
        "OPENAI_API_KEY_CONFIG={\"sk-a\": [0, 2]}\nFORWARD_KEY_CONFIG={\"fk-2\": 2}\n",
        &none,
    );
    let errors = migrated(Some(&overlay), &none).unwrap_err();
    assert!(errors.iter().any(|e| e.contains("level 2")), "{errors:?}");
    assert!(!errors
        .iter()
        .any(|e| e.contains("sk-a") || e.contains("fk-2")));
}

#[test]
fn read_folder_prefers_the_yaml_and_reads_the_env_otherwise() {
    let dir = std::env::temp_dir().join(format!("llm-forward-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(read_folder(&dir, &none).unwrap(), None);
    std::fs::write(dir.join(".env"), "TIMEOUT=3\n").unwrap();
    let o = read_folder(&dir, &none).unwrap().unwrap();
    assert_eq!(o.get("TIMEOUT"), Some("3"));
    std::fs::write(dir.join(YAML_FILE), "  \n").unwrap();
    let o = read_folder(&dir, &none).unwrap().unwrap();
    assert_eq!(o.get("TIMEOUT"), Some("3"), "an empty YAML is not used");
    std::fs::write(dir.join(YAML_FILE), "timeout: 4\n").unwrap();
    let o = read_folder(&dir, &none).unwrap().unwrap();
    assert_eq!(o.get("TIMEOUT"), Some("4"));
    assert!(o.warnings.iter().any(|w| w.contains("not read")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn route_kinds_from_forward_config() {
    let c = config_with(&[(
        "FORWARD_CONFIG",
        r#"[{"base_url":"https://api.openai.com","route":"/","type":"openai"},{"base_url":"https://generativelanguage.googleapis.com","route":"/gemini","type":"general"}]"#,
    )]);
    assert_eq!(c.routes[1].kind, RouteKind::General);
}

/// What `aifd gen_config` (OpenAI-Forward 0.8.1) writes: `""` placeholders instead of keys.
const GEN_CONFIG_ENV: &str = include_str!("aifd-gen-config.env");

#[test]
fn gen_config_empty_cache_routes_keep_chat_and_embeddings_cached() {
    // `aifd gen_config` writes `CACHE_ROUTES=[]`; in OpenAI-Forward that list only adds generic
    // paths: with CACHE_OPENAI=true chat and embeddings are still cached.
    let env = GEN_CONFIG_ENV
        .replace("CACHE_OPENAI=False", "CACHE_OPENAI=True")
        .replace(
            r#"CACHE_ROUTES=["/v1/chat/completions"]"#,
            "CACHE_ROUTES=[]",
        );
    assert!(env.contains("CACHE_ROUTES=[]\n") && env.contains("CACHE_OPENAI=True"));
    let overlay = from_dotenv(&env, &none);
    let (c, _, _) = migrated(Some(&overlay), &none).unwrap();
    assert!(c.cache.openai);
    for path in ["/v1/chat/completions", "/v1/embeddings"] {
        assert!(
            c.cache.routes.iter().any(|r| r == path),
            "{:?}",
            c.cache.routes
        );
    }
}

#[test]
fn gen_config_placeholders_are_no_keys() {
    let overlay = from_dotenv(GEN_CONFIG_ENV, &none);
    let (c, secrets, notes) = migrated(Some(&overlay), &none).unwrap();
    // Like OpenAI-Forward with this file: no key swapped, nobody refused.
    assert!(c.keys.upstream.is_empty() && c.keys.forward.is_empty());
    assert!(secrets.is_empty(), "{secrets:?}");
    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.limits.requests.len(), 3);
    assert!(c.logging.chat && !c.cache.openai);
    for name in ["OPENAI_API_KEY_CONFIG", "FORWARD_KEY_CONFIG"] {
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with(name) && n.contains("placeholder")),
            "{notes:?}"
        );
    }
    assert!(!notes.iter().any(|n| n.contains("401")), "{notes:?}");
    // A real key next to the placeholder keeps its variable index 0.
    let env = env_of(&[
        ("OPENAI_API_KEY_CONFIG", r#"{"": [0], "sk-real": [0]}"#),
        ("FORWARD_KEY_CONFIG", r#"{"": 0, "fk-real": 0}"#),
    ]);
    assert_eq!(
        secret_vars(&env).unwrap(),
        [
            ("LLM_FORWARD_UPSTREAM_KEY_0".into(), "sk-real".into()),
            ("LLM_FORWARD_FORWARD_KEY_0".into(), "fk-real".into()),
        ]
    );
}
