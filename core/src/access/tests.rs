use super::*;
use crate::answer::ApiKind;
use crate::config::{Config, RouteConfig, RouteKind};
use std::net::IpAddr;

fn cfg(yaml_like: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    c.routes[0].base_url = "http://127.0.0.1:9000".into();
    yaml_like(&mut c);
    c
}

fn up(key: &str, levels: &[u32]) -> UpstreamKeyConfig {
    UpstreamKeyConfig {
        key: Some(key.into()),
        file: None,
        levels: levels.to_vec(),
        routes: vec![],
    }
}

fn fwd(name: &str, key: &str, level: u32) -> ForwardKeyConfig {
    ForwardKeyConfig {
        name: Some(name.into()),
        key: key.into(),
        level,
    }
}

fn errors(c: Config) -> Vec<String> {
    c.validate()
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

fn env_none(_: &str) -> Option<String> {
    None
}

fn compile(c: &Config) -> Access {
    let valid = c.clone().validate().unwrap();
    let plugin = AccessConfig::from_config(&valid.raw);
    Access::compile(&plugin, valid.routes.len(), &env_none).unwrap()
}

fn standard() -> Config {
    cfg(|c| {
        c.keys.upstream = vec![up("sk-a", &[0, 1]), up("sk-b", &[0, 1]), up("sk-c", &[2])];
        c.keys.forward = vec![
            fwd("admin", "fk-admin", 0),
            fwd("alice", "fk-alice", 1),
            fwd("bob", "fk-bob", 2),
        ];
        c.keys
            .levels
            .insert(1, vec!["gpt-4o-mini".into(), "gpt-3.5*".into()]);
        c.keys.levels.insert(2, vec!["gpt-4o".into()]);
    })
}

#[test]
fn standard_config_is_valid() {
    assert_eq!(errors(standard()), Vec::<String>::new());
}

#[test]
fn key_lookup_finds_each_forward_key_and_nothing_else() {
    let a = compile(&standard());
    assert_eq!(a.lookup("fk-admin"), Some(0));
    assert_eq!(a.lookup("fk-alice"), Some(1));
    assert_eq!(a.lookup("fk-bob"), Some(2));
    assert_eq!(a.lookup("fk-bo"), None);
    assert_eq!(a.lookup("fk-bobb"), None);
    assert_eq!(a.lookup("FK-BOB"), None);
    assert_eq!(a.lookup(""), None);
    assert_eq!(a.lookup("sk-a"), None, "upstream keys are not forward keys");
    assert_eq!(a.forward_key(1).unwrap().name, "alice");
    assert_eq!(a.forward_key(1).unwrap().level, 1);
}

#[test]
fn remembered_keys_get_the_same_answers() {
    let c = cfg(|c| {
        c.keys.forward = (0..12)
            .map(|i| fwd(&format!("k{i}"), &format!("fk-{i}"), 0))
            .collect();
    });
    let a = compile(&c);
    // More keys than the memo holds, each asked several times, interleaved with unknown ones.
    for round in 0..3 {
        for i in 0..12 {
            assert_eq!(a.lookup(&format!("fk-{i}")), Some(i), "round {round}");
            assert_eq!(a.lookup(&format!("fk-{i}x")), None);
        }
        for i in (0..12).rev() {
            assert_eq!(a.lookup(&format!("fk-{i}")), Some(i), "round {round}");
        }
    }
    assert_eq!(a.authenticate(0, Some("fk-3")), KeyDecision::Forward(3));
    assert_eq!(
        a.authenticate(0, Some("fk-3 ")),
        KeyDecision::Reject { missing: false }
    );
}

#[test]
fn a_reload_forgets_remembered_keys() {
    let a = compile(&standard());
    assert_eq!(a.lookup("fk-bob"), Some(2));
    assert_eq!(a.lookup("fk-bob"), Some(2));
    let mut revoked = standard();
    revoked.keys.forward.retain(|k| k.key != "fk-bob");
    let b = compile(&revoked);
    assert_eq!(b.lookup("fk-bob"), None);
    assert_eq!(
        a.clone().lookup("fk-bob"),
        Some(2),
        "a copy looks the key up again"
    );
}

#[test]
fn authenticate_decisions() {
    let mut c = standard();
    c.routes.push(RouteConfig::new(
        "/own",
        "http://127.0.0.1:9001",
        RouteKind::General,
    ));
    c.routes[1].pass_through_unknown_keys = true;
    let a = compile(&c);
    assert_eq!(a.authenticate(0, Some("fk-alice")), KeyDecision::Forward(1));
    assert_eq!(
        a.authenticate(0, Some("sk-own")),
        KeyDecision::Reject { missing: false }
    );
    assert_eq!(
        a.authenticate(0, None),
        KeyDecision::Reject { missing: true }
    );
    assert_eq!(a.authenticate(1, Some("sk-own")), KeyDecision::PassThrough);
    assert_eq!(a.authenticate(1, None), KeyDecision::PassThrough);
    assert_eq!(a.authenticate(1, Some("fk-bob")), KeyDecision::Forward(2));

    let open = compile(&cfg(|_| {}));
    assert_eq!(open.authenticate(0, Some("anything")), KeyDecision::Open);
    assert_eq!(open.authenticate(0, None), KeyDecision::Open);
    assert!(!open.keys_required());
}

#[test]
fn pools_are_per_level_in_config_order_and_can_be_limited_to_routes() {
    let mut c = standard();
    c.routes.push(RouteConfig::new(
        "/gemini",
        "http://127.0.0.1:9001",
        RouteKind::General,
    ));
    c.keys.upstream.push(UpstreamKeyConfig {
        routes: vec!["gemini/".into()],
        ..up("g-1", &[0, 1, 2])
    });
    let a = compile(&c);
    assert_eq!(a.pool(0, 0), &[0, 1]);
    assert_eq!(a.pool(0, 1), &[0, 1]);
    assert_eq!(a.pool(0, 2), &[2]);
    assert_eq!(a.pool(1, 1), &[0, 1, 3]);
    assert_eq!(a.pool(1, 2), &[2, 3]);
    assert_eq!(a.pool(0, 7), &[] as &[usize]);
    assert_eq!(a.pool(9, 0), &[] as &[usize]);
    assert_eq!(a.upstream_key(3).unwrap().secret(), "g-1");
}

#[test]
fn model_permissions_per_level() {
    let a = compile(&standard());
    assert!(a.model_allowed(0, "anything"));
    assert!(a.model_allowed(1, "gpt-4o-mini"));
    assert!(a.model_allowed(1, "gpt-3.5-turbo"));
    assert!(!a.model_allowed(1, "gpt-4o"));
    assert!(!a.model_allowed(1, "gpt-4o-mini-2024"));
    assert!(a.model_allowed(2, "gpt-4o"));
    assert!(!a.model_allowed(2, "gpt-4o-mini"));
    assert!(
        !a.model_allowed(5, "gpt-4o"),
        "unknown level allows nothing"
    );
    assert!(a.level_allows_all(0));
    assert!(!a.level_allows_all(1));
}

#[test]
fn json_paths_and_api_kinds() {
    let mut c = standard();
    c.routes[0].model_paths = vec!["/v1/responses".into()];
    c.routes.push(RouteConfig::new(
        "/gen",
        "http://127.0.0.1:9001",
        RouteKind::General,
    ));
    let a = compile(&c);
    let o = RouteKind::Openai;
    assert_eq!(
        a.json_path(0, o, "/v1/chat/completions").unwrap().api,
        Some(ApiKind::Chat)
    );
    assert_eq!(
        a.json_path(0, o, "/chat/completions").unwrap().api,
        Some(ApiKind::Chat)
    );
    assert_eq!(
        a.json_path(0, o, "/v1/completions").unwrap().api,
        Some(ApiKind::Completion)
    );
    assert_eq!(
        a.json_path(0, o, "/v1/embeddings").unwrap().api,
        Some(ApiKind::Embedding)
    );
    assert_eq!(a.json_path(0, o, "/v1/responses").unwrap().api, None);
    assert!(a.json_path(0, o, "/v1/models").is_none());
    assert!(a.json_path(0, o, "/v1/audio/transcriptions").is_none());
    assert!(a.json_path(0, o, "/v1/chat/completionsx").is_none());
    assert!(a
        .json_path(1, RouteKind::General, "/v1/chat/completions")
        .is_none());
}

#[test]
fn model_routing_prefers_exact_then_longest_prefix() {
    let mut c = standard();
    c.routes[0].models = vec![
        ModelTargetConfig {
            pattern: "gpt-*".into(),
            base_url: "https://api.openai.com".into(),
            rename: None,
        },
        ModelTargetConfig {
            pattern: "qwen*".into(),
            base_url: "http://127.0.0.1:11434".into(),
            rename: Some("qwen2:7b".into()),
        },
        ModelTargetConfig {
            pattern: "gpt-3.5-turbo".into(),
            base_url: "http://127.0.0.1:11434".into(),
            rename: Some("qwen2:7b".into()),
        },
    ];
    let a = compile(&c);
    assert!(a.routes_models(0));
    assert_eq!(a.route_model(0, "gpt-4o"), Some((0, None)));
    assert_eq!(a.route_model(0, "qwen-7b"), Some((1, Some("qwen2:7b"))));
    assert_eq!(
        a.route_model(0, "gpt-3.5-turbo"),
        Some((2, Some("qwen2:7b")))
    );
    assert_eq!(a.route_model(0, "claude"), None);
}

#[test]
fn ip_policy_with_ipv4_and_ipv6_cidrs() {
    let c = cfg(|c| {
        c.ip.allow = vec!["10.0.0.0/8".into(), "2001:db8::/32".into(), "::1".into()];
        c.ip.deny = vec!["10.6.6.0/24".into()];
    });
    let a = compile(&c);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(!a.ip_open());
    assert!(a.ip_permits(&ip("10.1.2.3")));
    assert!(!a.ip_permits(&ip("10.6.6.6")), "deny wins");
    assert!(a.ip_permits(&ip("2001:db8:1::5")));
    assert!(!a.ip_permits(&ip("2001:db9::1")));
    assert!(a.ip_permits(&ip("::1")));
    assert!(a.ip_permits(&ip("::ffff:10.0.0.1")), "IPv4-mapped");
    assert!(!a.ip_permits(&ip("192.168.0.1")));
    assert!(compile(&cfg(|_| {})).ip_open());
}

#[test]
fn validation_errors_name_the_field() {
    let mut c = standard();
    c.ip.allow = vec!["10.0.0.0/8".into(), "::1".into(), "10.0.0.1/8".into()];
    c.ip.deny = vec!["nonsense".into()];
    c.keys.forward[0].level = 3;
    c.keys.levels.insert(4, vec!["*-turbo".into()]);
    c.keys.upstream[2].levels = vec![9];
    c.routes[0].key_location = Some("cookie".into());
    c.routes[0].model_paths = vec!["v1/x".into()];
    let errs = errors(c);
    let has = |p: &str| errs.iter().any(|e| e.starts_with(p));
    assert!(has("ip.allow[2]: `10.0.0.1/8`: bits beyond"), "{errs:?}");
    assert!(has("ip.deny[0]: `nonsense`"), "{errs:?}");
    assert!(
        has("keys.forward[0].level: level 3 has no entry"),
        "{errs:?}"
    );
    assert!(has("keys.levels.4[0]: model pattern `*-turbo`"), "{errs:?}");
    assert!(has("keys.upstream[2].levels[0]: level 9"), "{errs:?}");
    assert!(has("routes[0].key_location:"), "{errs:?}");
    assert!(has("routes[0].model_paths[0]:"), "{errs:?}");
    // upstream[2] no longer serves level 2, so bob's level has no upstream key.
    assert!(has("keys.forward[2].level: no upstream key"), "{errs:?}");
    assert_eq!(errs.len(), 8, "{errs:?}");
}

#[test]
fn level_without_upstream_key_is_an_error_only_when_upstream_keys_exist() {
    let c = cfg(|c| {
        c.keys.upstream = vec![up("sk-a", &[1])];
        c.keys.levels.insert(1, vec!["*".into()]);
        c.keys.forward = vec![fwd("a", "fk-a", 0), fwd("b", "fk-b", 1)];
    });
    assert_eq!(
        errors(c),
        vec!["keys.forward[0].level: no upstream key (keys.upstream) serves level 0"]
    );
    let c = cfg(|c| c.keys.forward = vec![fwd("a", "fk-a", 0)]);
    assert!(
        errors(c).is_empty(),
        "forward keys alone authenticate clients"
    );
}

#[test]
fn key_and_name_errors() {
    let c = cfg(|c| {
        c.keys.upstream = vec![
            UpstreamKeyConfig {
                key: None,
                file: None,
                levels: vec![0],
                routes: vec![],
            },
            UpstreamKeyConfig {
                key: Some("x".into()),
                file: Some("/f".into()),
                levels: vec![0],
                routes: vec![],
            },
            up("${1BAD}", &[0]),
            up("sk-a", &[]),
            UpstreamKeyConfig {
                routes: vec!["/nope".into()],
                ..up("sk-b", &[0])
            },
            up("sk-b", &[0]),
        ];
        c.keys.forward = vec![
            fwd("a", "fk-a", 0),
            fwd("a", "fk-b", 0),
            fwd("bad name", "fk-c", 0),
            fwd("d", "fk-a", 0),
            fwd("e", "pre${X}", 0),
        ];
        c.keys.levels.insert(0, vec!["gpt-4".into()]);
    });
    let errs = errors(c);
    let has = |p: &str| errs.iter().any(|e| e.starts_with(p));
    assert!(
        has("keys.upstream[0]: `key` or `file` is required"),
        "{errs:?}"
    );
    assert!(has("keys.upstream[1]: give either"), "{errs:?}");
    assert!(has("keys.upstream[2]: `${1BAD}`"), "{errs:?}");
    assert!(has("keys.upstream[3].levels: at least one"), "{errs:?}");
    assert!(has("keys.upstream[4].routes[0]: `/nope`"), "{errs:?}");
    assert!(has("keys.upstream[5].key: the same key"), "{errs:?}");
    assert!(
        has("keys.forward[1].name: `a` is already used by keys.forward[0]"),
        "{errs:?}"
    );
    assert!(has("keys.forward[2].name:"), "{errs:?}");
    assert!(
        has("keys.forward[3].key: the same key as keys.forward[0]"),
        "{errs:?}"
    );
    assert!(
        has("keys.forward[4].key: a `${VAR}` reference must be the whole value"),
        "{errs:?}"
    );
    assert!(
        has("keys.levels.0: level 0 may use every model"),
        "{errs:?}"
    );
}

#[test]
fn model_routing_validation() {
    let mut c = cfg(|_| {});
    c.routes[0].models = vec![
        ModelTargetConfig {
            pattern: "q*x*".into(),
            base_url: "http://h".into(),
            rename: None,
        },
        ModelTargetConfig {
            pattern: "q".into(),
            base_url: "ftp://h".into(),
            rename: Some(" ".into()),
        },
    ];
    c.routes.push(RouteConfig::new(
        "/g",
        "http://127.0.0.1:1",
        RouteKind::General,
    ));
    c.routes[1].models = vec![ModelTargetConfig {
        pattern: "q".into(),
        base_url: "http://h".into(),
        rename: None,
    }];
    let errs = errors(c);
    let has = |p: &str| errs.iter().any(|e| e.starts_with(p));
    assert!(has("routes[0].models[0].match:"), "{errs:?}");
    assert!(has("routes[0].models[1].base_url:"), "{errs:?}");
    assert!(has("routes[0].models[1].rename:"), "{errs:?}");
    assert!(
        has("routes[1].models: a general route needs model_paths"),
        "{errs:?}"
    );
    assert_eq!(errs.len(), 4, "{errs:?}");
}

#[test]
fn env_secrets_stay_references_in_the_plugin_config_and_resolve_at_compile() {
    let c = cfg(|c| {
        c.keys.upstream = vec![
            up("${OPENAI_KEY_1}", &[0]),
            UpstreamKeyConfig {
                key: None,
                file: Some("/run/secrets/k".into()),
                levels: vec![0],
                routes: vec![],
            },
            up("sk-literal", &[0]),
        ];
        c.keys.forward = vec![fwd("a", "${FK_A}", 0)];
    });
    let valid = c.clone().validate().unwrap();
    let plugin = AccessConfig::from_config(&valid.raw);
    let json = serde_json::to_string(&plugin).unwrap();
    assert!(json.contains("\"${OPENAI_KEY_1}\""), "{json}");
    assert!(json.contains("\"${LLM_FORWARD_SECRET_0}\""), "{json}");
    assert!(json.contains("\"${FK_A}\""), "{json}");
    assert!(!json.contains("/run/secrets"), "{json}");
    let vars: Vec<String> = secret_env_vars(&valid.raw)
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    assert_eq!(vars, vec!["OPENAI_KEY_1", "LLM_FORWARD_SECRET_0", "FK_A"]);

    let env = |k: &str| match k {
        "OPENAI_KEY_1" => Some("sk-from-env\n".to_string()),
        "LLM_FORWARD_SECRET_0" => Some("sk-from-file".to_string()),
        "FK_A" => Some("fk-a".to_string()),
        _ => None,
    };
    let a = Access::compile(&plugin, 1, &env).unwrap();
    assert_eq!(a.upstream_key(0).unwrap().secret(), "sk-from-env");
    assert_eq!(a.upstream_key(1).unwrap().secret(), "sk-from-file");
    assert_eq!(a.upstream_key(2).unwrap().secret(), "sk-literal");
    // The `authorization` value is built from the resolved key, once.
    assert_eq!(a.upstream_key(0).unwrap().bearer(), "Bearer sk-from-env");
    assert_eq!(a.upstream_key(2).unwrap().bearer(), "Bearer sk-literal");
    assert_eq!(a.lookup("fk-a"), Some(0));

    let err = Access::compile(&plugin, 1, &env_none).unwrap_err();
    assert_eq!(err.path, "access.upstream_keys[0].key");
    assert!(err.message.contains("OPENAI_KEY_1"), "{err}");
    assert!(
        !err.to_string().contains("sk-"),
        "the error never shows a key"
    );
}

#[test]
fn plugin_config_round_trips_through_json() {
    let mut c = standard();
    c.routes[0].key_location = Some("query:key".into());
    c.routes[0].models = vec![ModelTargetConfig {
        pattern: "qwen*".into(),
        base_url: "http://127.0.0.1:1".into(),
        rename: Some("q".into()),
    }];
    let valid = c.validate().unwrap();
    let plugin = AccessConfig::from_config(&valid.raw);
    let back: AccessConfig =
        serde_json::from_str(&serde_json::to_string(&plugin).unwrap()).unwrap();
    assert_eq!(back, plugin);
    let a = Access::compile(&back, 1, &env_none).unwrap();
    assert_eq!(
        a.route(0).unwrap().location,
        KeyLocation::Query("key".into())
    );
    // An empty plugin section (older gateway) means: no access control.
    let empty: AccessConfig = serde_json::from_str("{}").unwrap();
    let a = Access::compile(&empty, 2, &env_none).unwrap();
    assert!(!a.keys_required() && a.ip_open());
    assert_eq!(a.route(1).unwrap().location, KeyLocation::Bearer);
}

#[test]
fn key_locations() {
    assert_eq!(KeyLocation::parse("authorization"), Ok(KeyLocation::Bearer));
    assert_eq!(
        KeyLocation::parse("X-Goog-Api-Key"),
        Ok(KeyLocation::Header("x-goog-api-key".into()))
    );
    assert_eq!(
        KeyLocation::parse("api-key"),
        Ok(KeyLocation::Header("api-key".into()))
    );
    assert_eq!(
        KeyLocation::parse("query:key"),
        Ok(KeyLocation::Query("key".into()))
    );
    assert!(KeyLocation::parse("query:").is_err());
    assert!(KeyLocation::parse("query:a&b").is_err());
    assert!(KeyLocation::parse("cookie").is_err());

    let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let headers = h(&[
        ("authorization", "Bearer fk-1"),
        ("x-goog-api-key", " fk-2 "),
    ]);
    assert_eq!(
        KeyLocation::Bearer.extract(&headers, "/"),
        Some("fk-1".into())
    );
    assert_eq!(
        KeyLocation::Header("x-goog-api-key".into()).extract(&headers, "/"),
        Some("fk-2".into())
    );
    assert_eq!(
        KeyLocation::Header("x-api-key".into()).extract(&headers, "/"),
        None
    );
    assert_eq!(
        KeyLocation::Bearer.extract(&h(&[("authorization", "Token fk-1")]), "/"),
        None
    );
    let q = KeyLocation::Query("key".into());
    assert_eq!(
        q.extract(&[], "/v1/x?a=1&key=fk%2D3&b"),
        Some("fk-3".into())
    );
    assert_eq!(q.extract(&[], "/v1/x?key="), None);
    assert_eq!(q.extract(&[], "/v1/x"), None);
    assert_eq!(q.extract(&[], "/v1/x?keys=1"), None);
}

#[test]
fn query_rewrite_replaces_or_removes_only_that_parameter() {
    assert_eq!(
        replace_query_param("/x?a=1&key=fk&b=2", "key", Some("sk-a")),
        "/x?a=1&key=sk-a&b=2"
    );
    assert_eq!(
        replace_query_param("/x?key=fk", "key", Some("s k/+")),
        "/x?key=s%20k%2F%2B"
    );
    assert_eq!(
        replace_query_param("/x?key=fk&key=fk2", "key", Some("s")),
        "/x?key=s"
    );
    assert_eq!(replace_query_param("/x?a=1&key=fk", "key", None), "/x?a=1");
    assert_eq!(replace_query_param("/x?key=fk", "key", None), "/x");
    assert_eq!(replace_query_param("/x", "key", Some("s")), "/x?key=s");
    assert_eq!(replace_query_param("/x", "key", None), "/x");
    assert_eq!(
        replace_query_param("/x?keyx=1", "key", Some("s")),
        "/x?keyx=1&key=s"
    );
}

#[test]
fn rotation_is_round_robin_and_skips_cooling_keys() {
    let pool = [3, 5];
    let none: [u64; 0] = [];
    // Four requests: 3, 5, 3, 5.
    let mut counter = 0;
    let mut seen = vec![];
    for _ in 0..4 {
        let (k, next) = pick_key(&pool, counter, &none, 1000).unwrap();
        seen.push(k);
        counter = next;
    }
    assert_eq!(seen, vec![3, 5, 3, 5]);
    // Key 3 cooling until 2000: skipped while now < 2000.
    let mut cool = vec![0u64; 6];
    cool[3] = 2000;
    assert_eq!(pick_key(&pool, 0, &cool, 1000), Some((5, 2)));
    assert_eq!(pick_key(&pool, 1, &cool, 1000), Some((5, 2)));
    assert_eq!(
        pick_key(&pool, 0, &cool, 2000),
        Some((3, 1)),
        "cooldown over"
    );
    // All cooling: the one that failed first (earliest end) is used.
    cool[5] = 1500;
    assert_eq!(pick_key(&pool, 0, &cool, 1000), Some((5, 2)));
    cool[5] = 2500;
    assert_eq!(pick_key(&pool, 1, &cool, 1000), Some((3, 3)));
    assert_eq!(pick_key(&[], 0, &cool, 1000), None);
    assert_eq!(pick_key(&pool, u64::MAX, &none, 0), Some((5, 0)), "wraps");
}

#[test]
fn cooldown_table_and_counter_encoding() {
    let t = vec![1u64, 0, u64::MAX];
    let b = encode_cooldowns(&t);
    assert_eq!(decode_cooldowns(&b, 3), t);
    assert_eq!(decode_cooldowns(&b, 4), vec![1, 0, u64::MAX, 0]);
    assert_eq!(decode_cooldowns(&b[..9], 3), vec![1, 0, 0]);
    assert_eq!(decode_counter(&7u64.to_le_bytes()), 7);
    assert_eq!(decode_counter(b"xx"), 0);
    assert!(is_key_failure(429) && is_key_failure(401) && is_key_failure(403));
    assert!(!is_key_failure(500) && !is_key_failure(200));
}

#[test]
fn bodies() {
    let b = parse_body(br#"{"model":"gpt-4o","stream":true,"messages":[]}"#).unwrap();
    assert_eq!(b.model.as_deref(), Some("gpt-4o"));
    assert!(b.stream);
    let b = parse_body(br#"{"input":"x"}"#).unwrap();
    assert_eq!(b.model, None);
    assert!(!b.stream);
    assert!(parse_body(b"{not json").is_err());
    assert!(parse_body(b"[1]").is_err());
    assert!(parse_body(br#"{"model":4}"#).is_err());
    assert!(parse_body(b"").is_err());
    assert!(is_json_content_type(None));
    assert!(is_json_content_type(Some(
        "application/json; charset=utf-8"
    )));
    assert!(is_json_content_type(Some("text/plain")));
    assert!(!is_json_content_type(Some(
        "multipart/form-data; boundary=x"
    )));
    assert!(!is_json_content_type(Some(
        "Application/X-WWW-Form-Urlencoded"
    )));
}

#[test]
fn yaml_shaped_json_parses_into_the_config() {
    let c = Config::from_json(
        br#"{"keys":{"upstream":[{"key":"${K1}","levels":[0,1]},{"file":"/run/k"}],
             "forward":[{"name":"alice","key":"fk-alice","level":1}],
             "levels":{"1":["gpt-4o-mini","gpt-3.5*"]},"cooldown_seconds":30},
            "ip":{"allow":["10.0.0.0/8","::1"]},
            "routes":[{"route":"/","base_url":"http://127.0.0.1:1","key_location":"x-goog-api-key",
              "models":[{"match":"qwen*","base_url":"http://127.0.0.1:2","rename":"qwen2:7b"}]}]}"#,
    )
    .unwrap();
    assert_eq!(c.keys.upstream[1].levels, vec![0]);
    assert_eq!(c.keys.cooldown_seconds, 30);
    assert!(c.clone().validate().is_ok(), "{:?}", c.validate());
    let err = Config::from_json(br#"{"keys":{"levels":{"one":["x"]}}}"#).unwrap_err();
    assert!(
        err.to_string().contains("`one` is not a level number"),
        "{err}"
    );
    let err = Config::from_json(br#"{"keys":{"forward":[{"key":"x","levle":1}]}}"#).unwrap_err();
    assert!(err.path.starts_with("keys.forward[0]"), "{err}");
}
