use super::*;
use crate::answer::{Choice, ToolCall, Usage};
use serde_json::json;

/// The default settings with caching switched on for openai routes (it is off by default).
fn filter_cache() -> FilterCache {
    let c = CacheConfig {
        openai: true,
        ..CacheConfig::default()
    };
    FilterCache::from_config(&c).unwrap()
}

const CHAT_JSON: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello world"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;

fn chat_sse(with_usage: bool) -> Vec<u8> {
    let mut s = String::new();
    for piece in ["Hel", "lo ", "world"] {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{piece}\"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    s.push_str("data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    if with_usage {
        s.push_str("data: {\"id\":\"chatcmpl-2\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":3,\"total_tokens\":6}}\n\n");
    }
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

fn answer_from_sse(body: &[u8]) -> Answer {
    answer_of_stream(body).unwrap()
}

#[test]
fn default_routes_cache_chat_and_embeddings_on_openai_routes_only() {
    let fc = filter_cache();
    assert_eq!(
        fc.classify(RouteKind::Openai, "/v1/chat/completions", "POST"),
        Some(Keying::Json(ApiKind::Chat))
    );
    assert_eq!(
        fc.classify(RouteKind::Openai, "/v1/embeddings", "POST"),
        Some(Keying::Json(ApiKind::Embedding))
    );
    assert_eq!(
        fc.classify(RouteKind::Openai, "/v1/completions", "POST"),
        None
    );
    assert_eq!(fc.classify(RouteKind::Openai, "/v1/models", "GET"), None);
    assert_eq!(
        fc.classify(RouteKind::General, "/v1/chat/completions", "POST"),
        None,
        "general off by default"
    );
    assert_eq!(
        fc.classify(RouteKind::Openai, "/v1/chat/completions", "GET"),
        None
    );
}

#[test]
fn listed_api_paths_match_on_routes_whose_base_url_ends_in_v1() {
    // Route `/v1` → `http://host/v1` or `/openai` → `https://api.openai.com/v1`: the client's
    // path after the prefix is `/chat/completions` while the default list says `/v1/...`.
    let fc = filter_cache();
    assert_eq!(
        fc.classify(RouteKind::Openai, "/chat/completions", "POST"),
        Some(Keying::Json(ApiKind::Chat))
    );
    assert_eq!(
        fc.classify(RouteKind::Openai, "/embeddings/", "POST"),
        Some(Keying::Json(ApiKind::Embedding))
    );
    assert_eq!(fc.classify(RouteKind::Openai, "/completions", "POST"), None);
    // And a list written without `/v1` matches the `/v1` spelling.
    let c = CacheConfig {
        openai: true,
        routes: vec!["/chat/completions".into()],
        ..CacheConfig::default()
    };
    let fc = FilterCache::from_config(&c).unwrap();
    assert_eq!(
        fc.classify(RouteKind::Openai, "/v1/chat/completions", "POST"),
        Some(Keying::Json(ApiKind::Chat))
    );
    // General routes match their paths literally.
    let c = CacheConfig {
        general: true,
        ..CacheConfig::default()
    };
    let fc = FilterCache::from_config(&c).unwrap();
    assert_eq!(
        fc.classify(RouteKind::General, "/chat/completions", "POST"),
        None
    );
}

#[test]
fn unlisted_openai_api_posts_still_lose_the_caching_field() {
    let c = CacheConfig {
        openai: true,
        routes: vec!["/v1/embeddings".into()],
        ..CacheConfig::default()
    };
    let fc = FilterCache::from_config(&c).unwrap();
    assert!(fc.strips_caching_field(RouteKind::Openai, "/v1/chat/completions", "POST"));
    assert!(fc.strips_caching_field(RouteKind::Openai, "/completions", "POST"));
    assert!(!fc.strips_caching_field(RouteKind::Openai, "/v1/models", "POST"));
    assert!(!fc.strips_caching_field(RouteKind::General, "/v1/chat/completions", "POST"));
}

#[test]
fn routes_list_and_wildcards_select_paths() {
    let c = CacheConfig {
        openai: true,
        general: true,
        routes: vec!["/v1/completions".into(), "/echo/*".into()],
        ..CacheConfig::default()
    };
    let fc = FilterCache::from_config(&c).unwrap();
    assert_eq!(
        fc.classify(RouteKind::Openai, "/v1/completions", "POST"),
        Some(Keying::Json(ApiKind::Completion))
    );
    assert_eq!(
        fc.classify(RouteKind::Openai, "/v1/chat/completions", "POST"),
        None
    );
    assert_eq!(
        fc.classify(RouteKind::General, "/echo/a/b", "POST"),
        Some(Keying::Raw)
    );
    assert_eq!(fc.classify(RouteKind::General, "/echo/a", "DELETE"), None);
    assert_eq!(fc.classify(RouteKind::General, "/other", "POST"), None);
}

#[test]
fn disabled_cache_gives_no_filter_config() {
    let c = CacheConfig {
        openai: false,
        ..CacheConfig::default()
    };
    assert!(FilterCache::from_config(&c).is_none());
}

#[test]
fn plan_combines_header_field_and_default() {
    let chat = Keying::Json(ApiKind::Chat);
    use CachingField::*;
    assert_eq!(plan(Directive::None, Absent, false, chat), Plan::Bypass);
    assert_eq!(plan(Directive::None, Absent, true, chat), Plan::Lookup);
    assert_eq!(plan(Directive::None, Flag(true), false, chat), Plan::Lookup);
    assert_eq!(plan(Directive::None, Flag(false), true, chat), Plan::Bypass);
    assert_eq!(plan(Directive::None, Invalid, false, chat), Plan::Bypass);
    assert_eq!(plan(Directive::Skip, Flag(true), true, chat), Plan::Bypass);
    assert_eq!(plan(Directive::Refresh, Absent, false, chat), Plan::Store);
    assert_eq!(
        plan(Directive::Refresh, Flag(false), false, chat),
        Plan::Bypass
    );
    assert_eq!(
        plan(Directive::None, Absent, false, Keying::Raw),
        Plan::Lookup
    );
    assert_eq!(
        plan(Directive::Skip, Absent, false, Keying::Raw),
        Plan::Bypass
    );
    assert_eq!(Directive::parse(Some(" Refresh ")), Directive::Refresh);
    assert_eq!(Directive::parse(Some("skip")), Directive::Skip);
    assert_eq!(Directive::parse(Some("x")), Directive::None);
}

#[test]
fn scopes_separate_levels_and_keys() {
    let body = json!({"model":"m","messages":[{"role":"user","content":"hi"}]});
    let key = |s: CacheScope| json_key(ApiKind::Chat, &s, "/", &body).unwrap();
    let fwd = |level: u32, key_name: &'static str| CacheCaller::Forward { level, key_name };
    let l1 = key(scope_for(ScopeMode::Level, fwd(1, "alice")));
    let l1b = key(scope_for(ScopeMode::Level, fwd(1, "bob")));
    let l2 = key(scope_for(ScopeMode::Level, fwd(2, "carol")));
    assert_eq!(l1, l1b, "same level shares under the default scope");
    assert_ne!(l1, l2, "different levels never share");
    let a = key(scope_for(ScopeMode::Key, fwd(1, "alice")));
    let b = key(scope_for(ScopeMode::Key, fwd(1, "bob")));
    assert_ne!(a, b);
    assert_eq!(
        key(scope_for(ScopeMode::Shared, fwd(1, "alice"))),
        key(scope_for(ScopeMode::Shared, fwd(2, "carol")))
    );
    // Callers without a forward key never land in a level or shared scope.
    let anon = CacheCaller::Unauthenticated { credential: None };
    assert_eq!(scope_for(ScopeMode::Shared, anon), CacheScope::Anonymous);
    assert_ne!(
        key(scope_for(ScopeMode::Level, anon)),
        key(CacheScope::Level(0))
    );
}

#[test]
fn stream_flag_does_not_change_the_key() {
    let a =
        json!({"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}});
    let b = json!({"messages":[],"model":"m"});
    let s = CacheScope::Level(0);
    assert_eq!(
        json_key(ApiKind::Chat, &s, "/", &a),
        json_key(ApiKind::Chat, &s, "/", &b)
    );
    assert_eq!(stream_mode(&a), (true, true));
    assert_eq!(stream_mode(&b), (false, false));
}

#[test]
fn envelope_round_trips_and_rejects_garbage() {
    let e = Entry::from_response(
        Keying::Json(ApiKind::Chat),
        200,
        Some("application/json"),
        CHAT_JSON.as_bytes().to_vec(),
        42,
    )
    .unwrap();
    let bytes = e.encode();
    assert_eq!(Entry::decode(&bytes), Some(e));
    assert_eq!(Entry::decode(b"LFC1"), None);
    assert_eq!(Entry::decode(b"LFC1\0\0\0\x09{}"), None);
    assert_eq!(Entry::decode(b"nope"), None);
    let raw = Entry::from_response(Keying::Raw, 201, None, vec![0, 159, 146, 150], 1).unwrap();
    assert_eq!(
        Entry::decode(&raw.encode()).unwrap().body,
        vec![0, 159, 146, 150]
    );
}

#[test]
fn only_complete_2xx_answers_are_stored() {
    let chat = Keying::Json(ApiKind::Chat);
    let json_ct = Some("application/json");
    assert!(Entry::from_response(chat, 500, json_ct, CHAT_JSON.into(), 0).is_none());
    assert!(Entry::from_response(
        chat,
        200,
        json_ct,
        br#"{"error":{"message":"x"}}"#.to_vec(),
        0
    )
    .is_none());
    assert!(Entry::from_response(chat, 200, json_ct, b"not json".to_vec(), 0).is_none());
    let sse_ct = Some("text/event-stream; charset=utf-8");
    let full = chat_sse(false);
    assert!(Entry::from_response(chat, 200, sse_ct, full.clone(), 0).is_some());
    let cut = full[..full.len() - "data: [DONE]\n\n".len()].to_vec();
    assert!(
        Entry::from_response(chat, 200, sse_ct, cut, 0).is_none(),
        "no [DONE]"
    );
    assert!(Entry::from_response(Keying::Raw, 404, None, b"x".to_vec(), 0).is_none());
    assert!(Entry::from_response(
        Keying::Json(ApiKind::Embedding),
        200,
        json_ct,
        br#"{"object":"list","data":[{"embedding":[0.1]}],"model":"e","usage":{"prompt_tokens":1,"total_tokens":1}}"#.to_vec(),
        0
    )
    .is_some());
}

#[test]
fn same_mode_replays_the_stored_bytes() {
    let chat = Keying::Json(ApiKind::Chat);
    let e = Entry::from_response(chat, 200, Some("application/json"), CHAT_JSON.into(), 9).unwrap();
    let r = replay(&e, false, false, Some("m")).unwrap();
    assert_eq!(r.body, CHAT_JSON.as_bytes());
    assert_eq!(r.content_type, "application/json");

    let sse = chat_sse(true);
    let e = Entry::from_response(chat, 200, Some("text/event-stream"), sse.clone(), 9).unwrap();
    assert_eq!(replay(&e, true, true, None).unwrap().body, sse);
    // The client did not ask for usage: rebuilt without the usage chunk.
    let r = replay(&e, true, false, None).unwrap();
    assert_ne!(r.body, sse);
    let text = String::from_utf8(r.body.clone()).unwrap();
    assert!(!text.contains("\"usage\""), "{text}");
    assert_eq!(answer_from_sse(&r.body).choices[0].content, "Hello world");
}

#[test]
fn stream_request_is_served_from_a_json_answer() {
    let e = Entry::from_response(
        Keying::Json(ApiKind::Chat),
        200,
        Some("application/json"),
        CHAT_JSON.into(),
        9,
    )
    .unwrap();
    let r = replay(&e, true, true, None).unwrap();
    assert_eq!(r.content_type, "text/event-stream");
    assert!(r.body.ends_with(b"data: [DONE]\n\n"));
    let a = answer_from_sse(&r.body);
    assert_eq!(a.choices[0].content, "Hello world");
    assert_eq!(a.choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(a.usage.as_ref().map(|u| u.total_tokens), Some(5));
    assert_eq!(a.model.as_deref(), Some("m"));
}

#[test]
fn json_request_is_served_from_a_stream_answer() {
    let e = Entry::from_response(
        Keying::Json(ApiKind::Chat),
        200,
        Some("text/event-stream"),
        chat_sse(true),
        1234,
    )
    .unwrap();
    let r = replay(&e, false, false, None).unwrap();
    assert_eq!(r.content_type, "application/json");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello world");
    assert_eq!(v["usage"]["total_tokens"], 6);
    assert_eq!(v["created"], 1234);
    assert_eq!(v["id"], "chatcmpl-2");
}

#[test]
fn tool_calls_survive_the_conversion() {
    let answer = Answer {
        id: Some("x".into()),
        model: Some("m".into()),
        choices: vec![Choice {
            index: 0,
            tool_calls: vec![
                ToolCall {
                    index: 0,
                    id: Some("call_a".into()),
                    kind: Some("function".into()),
                    name: "f".into(),
                    arguments: "{\"a\":1}".into(),
                },
                ToolCall {
                    index: 1,
                    id: Some("call_b".into()),
                    kind: Some("function".into()),
                    name: "g".into(),
                    arguments: "{}".into(),
                },
            ],
            finish_reason: Some("tool_calls".into()),
            ..Choice::default()
        }],
        usage: Some(Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
            total_tokens: 3,
            cached_tokens: None,
        }),
        ..Answer::default()
    };
    let body = answer::to_chat_completion_json(&answer, "m", "x", 1).to_string();
    let e = Entry::from_response(
        Keying::Json(ApiKind::Chat),
        200,
        Some("application/json"),
        body.into_bytes(),
        1,
    )
    .unwrap();
    let r = replay(&e, true, false, None).unwrap();
    let back = answer_from_sse(&r.body);
    assert_eq!(back.choices[0].tool_calls.len(), 2);
    assert_eq!(back.choices[0].tool_calls[0].arguments, "{\"a\":1}");
    assert_eq!(back.choices[0].tool_calls[1].name, "g");
}

#[test]
fn completions_convert_both_ways() {
    let body = r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"text":"abc","index":0,"finish_reason":"stop"}]}"#;
    let e = Entry::from_response(
        Keying::Json(ApiKind::Completion),
        200,
        Some("application/json"),
        body.into(),
        1,
    )
    .unwrap();
    let r = replay(&e, true, false, None).unwrap();
    assert_eq!(answer_from_sse(&r.body).choices[0].content, "abc");
}

#[test]
fn embeddings_and_raw_replay_verbatim() {
    let body = br#"{"object":"list","data":[{"embedding":[0.5]}],"model":"e","usage":{"prompt_tokens":1,"total_tokens":1}}"#;
    let e = Entry::from_response(
        Keying::Json(ApiKind::Embedding),
        200,
        Some("application/json"),
        body.to_vec(),
        1,
    )
    .unwrap();
    assert_eq!(replay(&e, true, false, None).unwrap().body, body.to_vec());
    let raw =
        Entry::from_response(Keying::Raw, 200, Some("text/plain"), b"hi".to_vec(), 1).unwrap();
    let r = replay(&raw, false, false, None).unwrap();
    assert_eq!(
        (r.body.as_slice(), r.content_type.as_str()),
        (&b"hi"[..], "text/plain")
    );
}

#[test]
fn config_checks_and_env_names() {
    let c = CacheConfig {
        ttl_seconds: 0,
        routes: vec!["v1/x".into()],
        backend: CacheBackend::Redis,
        redis_url: "http://x".into(),
        ..CacheConfig::default()
    };
    let mut errors = Vec::new();
    c.check(&mut errors);
    let paths: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
    assert_eq!(
        paths,
        vec!["cache.ttl_seconds", "cache.redis_url", "cache.routes[0]"]
    );

    let mut c = CacheConfig::default();
    let env = |k: &str| match k {
        "CACHE_BACKEND" => Some("LMDB".to_string()),
        "CACHE_GENERAL" => Some("true".to_string()),
        "CACHE_ROUTES" => Some(r#"["/v1/completions"]"#.to_string()),
        "DEFAULT_REQUEST_CACHING_VALUE" => Some("True".to_string()),
        _ => None,
    };
    c.apply_env(&env).unwrap();
    assert_eq!(c.backend, CacheBackend::Disk);
    assert!(c.general && c.default_request_caching);
    // CACHE_ROUTES adds generic paths; chat and embeddings stay cached (OpenAI-Forward).
    assert_eq!(
        c.routes,
        vec!["/v1/chat/completions", "/v1/embeddings", "/v1/completions"]
    );
    let bad = |k: &str| (k == "CACHE_BACKEND").then(|| "mongo".to_string());
    assert_eq!(c.apply_env(&bad).unwrap_err().path, "CACHE_BACKEND");
    assert_eq!(CacheBackend::parse("LevelDB"), Some(CacheBackend::Disk));
    assert_eq!(CacheBackend::parse("MEMORY"), Some(CacheBackend::Memory));
}

#[test]
fn keys_are_checked_by_the_service_rule() {
    let body = json!({"model":"m","messages":[]});
    let k = json_key(ApiKind::Chat, &CacheScope::Level(0), "/", &body).unwrap();
    assert!(valid_key(&k), "{k}");
    assert!(!valid_key("../x"));
    assert!(!valid_key(""));
    assert!(!valid_key(&"a".repeat(MAX_KEY_LEN + 1)));
}

#[test]
fn caching_is_off_unless_configured() {
    let c = CacheConfig::default();
    assert!(
        !c.enabled(),
        "like OpenAI-Forward's CACHE_OPENAI/CACHE_GENERAL, the cache is opt-in"
    );
}

/// The stored content type becomes a response header: a cache service that is not ours (or a
/// writer reaching it) must not be able to set arbitrary headers through it.
#[test]
fn a_stored_content_type_is_sent_only_when_it_is_a_plain_media_type() {
    let raw_with = |ct: &str| {
        let mut e =
            Entry::from_response(Keying::Raw, 200, Some("text/plain"), b"hi".to_vec(), 1).unwrap();
        e.meta.content_type = Some(ct.to_string());
        replay(&e, false, false, None).unwrap().content_type
    };
    assert_eq!(
        raw_with("text/plain; charset=utf-8"),
        "text/plain; charset=utf-8"
    );
    assert_eq!(raw_with("text/event-stream"), "text/event-stream");
    for bad in [
        "text/html\r\nset-cookie: a=b",
        "text/plain\nx: y",
        "",
        "html",
        "a/b\u{0}",
        "text/plain; é=1",
        &"a/".repeat(150),
    ] {
        assert_eq!(raw_with(bad), "application/octet-stream", "{bad:?}");
    }
}
