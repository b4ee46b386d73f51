//! Cache keys: scoped, canonical, and covering everything that changes the answer.
//!
//! A key is `v1:<kind>:<sha256 hex>`, where the hash covers, without ambiguity, the kind (`chat`,
//! `embedding`, `general`), the [`CacheScope`] (who may share the answer), the route prefix (which
//! upstream produced it), and the request. JSON requests are hashed in canonical form
//! ([`canonical_json`]), so key order and whitespace never split the cache. The version tag lets a
//! future change of the key recipe start from an empty cache instead of serving stale matches.
//!
//! # Which body fields are in the key
//!
//! OpenAI-Forward keyed chats on eight fields and ignored `temperature`, `stop`, penalties… so a
//! `temperature: 0.2` request got an answer made at the default. Listing the fields that matter
//! ([`ANSWER_FIELDS`]) cannot keep up with upstream extensions (`top_k`, `min_p`,
//! `repetition_penalty`, `chat_template_kwargs`, `enable_thinking`, … of vLLM, Ollama, Qwen,
//! DeepSeek), and a forgotten field would serve a wrong answer. So the key covers **every top-level
//! field except the few known not to change the answer** ([`NON_ANSWER_FIELDS`]: `stream`,
//! `stream_options`, `user`, `caching`, `metadata`, `store`, …). An unknown field costs at most a
//! cache miss, never a wrong hit. Fields whose value is `null` count as absent (OpenAI's meaning of
//! `null`). Values are compared as JSON: `1` and `1.0` are different keys (a miss, never wrong).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;

/// Version tag at the start of every key.
pub const KEY_VERSION: &str = "v1";

/// Request fields known to change a chat (or completion) answer. Documentation and tests: the key
/// covers these and any other field not in [`NON_ANSWER_FIELDS`].
pub const ANSWER_FIELDS: &[&str] = &[
    "model",
    "messages",
    "prompt",
    "suffix",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "temperature",
    "top_p",
    "n",
    "best_of",
    "max_tokens",
    "max_completion_tokens",
    "response_format",
    "seed",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "echo",
    "reasoning_effort",
    "verbosity",
    "modalities",
    "audio",
    "prediction",
    "web_search_options",
];

/// Request fields that do not change the answer and are left out of chat and embedding keys.
/// `stream`: a streamed answer can serve a non-streamed request and the reverse (the cache stores
/// the answer, the filter rebuilds the response shape). `caching` is the gateway's own flag.
pub const NON_ANSWER_FIELDS: &[&str] = &[
    "stream",
    "stream_options",
    "user",
    "caching",
    "metadata",
    "store",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
];

/// Request fields known to change an embedding. As for chats, the key covers every field not in
/// [`NON_ANSWER_FIELDS`]; `encoding_format` defaults to `"float"` when absent or `null`.
pub const EMBEDDING_FIELDS: &[&str] = &["model", "input", "encoding_format", "dimensions"];

/// Who may share a cached answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CacheScope {
    /// Every client of the route.
    Shared,
    /// Clients whose forward keys have this level.
    Level(u32),
    /// One forward key, named by its configured **name**, never by the secret itself.
    Key(String),
    /// A caller the gateway did not authenticate (no forward keys, or let through by
    /// `pass_through_unknown_keys`): a keyed hash of the credential it sent, never the credential.
    Credential(String),
    /// A caller that sent no credential at all: shares only with other such callers.
    Anonymous,
}

impl fmt::Display for CacheScope {
    /// `shared`, `level:<n>`, `key:<name>`, `cred:<digest>`, `anonymous`: the form hashed into
    /// the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheScope::Shared => write!(f, "shared"),
            CacheScope::Level(n) => write!(f, "level:{n}"),
            CacheScope::Key(name) => write!(f, "key:{name}"),
            CacheScope::Credential(digest) => write!(f, "cred:{digest}"),
            CacheScope::Anonymous => write!(f, "anonymous"),
        }
    }
}

/// `v` as JSON with object keys sorted (by bytes) at every depth and no whitespace. Strings are
/// escaped and numbers printed exactly as `serde_json` does. Independent of whether `serde_json`'s
/// `preserve_order` feature is on somewhere in the build.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

/// The cache key of a chat or completion request, or `None` when the body is not a JSON object
/// with a string `model`.
pub fn chat_cache_key(scope: &CacheScope, route_prefix: &str, body: &Value) -> Option<String> {
    let obj = body.as_object()?;
    obj.get("model")?.as_str()?;
    let fields = answer_fields(obj);
    Some(json_key("chat", scope, route_prefix, fields))
}

/// The cache key of an embeddings request, or `None` when the body is not a JSON object with a
/// string `model` and an `input`.
pub fn embedding_cache_key(scope: &CacheScope, route_prefix: &str, body: &Value) -> Option<String> {
    let obj = body.as_object()?;
    obj.get("model")?.as_str()?;
    if matches!(obj.get("input"), None | Some(Value::Null)) {
        return None;
    }
    let float = Value::String("float".to_string());
    let mut fields = answer_fields(obj);
    if !fields.iter().any(|(k, _)| *k == "encoding_format") {
        fields.push(("encoding_format", &float));
    }
    Some(json_key("embedding", scope, route_prefix, fields))
}

/// The cache key of any other request: method, path with query, and the raw body bytes, exactly.
pub fn general_cache_key(
    scope: &CacheScope,
    route_prefix: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> String {
    let mut h = KeyHasher::new("general", scope, route_prefix);
    h.framed(method.as_bytes());
    h.framed(path_and_query.as_bytes());
    h.0.update(body);
    h.finish("general")
}

/// What a request said about caching in its top-level `caching` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachingField {
    /// No `caching` field (or the body is not an object): use the route's default.
    Absent,
    /// `"caching": true|false`; the field was removed.
    Flag(bool),
    /// `caching` held something else (`"yes"`, `1`, `null`); the field was removed all the same, so
    /// the upstream never sees the gateway's instruction. The caller decides: use the default, or
    /// reply 400.
    Invalid,
}

impl CachingField {
    /// The client's choice, if it made a valid one.
    pub fn flag(self) -> Option<bool> {
        match self {
            CachingField::Flag(b) => Some(b),
            CachingField::Absent | CachingField::Invalid => None,
        }
    }

    /// True when the body changed and must be re-serialized before forwarding (and its
    /// `content-length` updated).
    pub fn removed(self) -> bool {
        !matches!(self, CachingField::Absent)
    }
}

/// Removes a top-level `caching` field from a request body and says what it held.
pub fn take_caching_flag(v: &mut Value) -> CachingField {
    let Some(obj) = v.as_object_mut() else {
        return CachingField::Absent;
    };
    match obj.remove("caching") {
        None => CachingField::Absent,
        Some(Value::Bool(b)) => CachingField::Flag(b),
        Some(_) => CachingField::Invalid,
    }
}

/// Whether a JSON body is an object with a top-level `caching` field (any value, `null` included),
/// without building a `Value`: keys are read (escapes decoded) and values skipped. `None` when the
/// body is not a JSON object. Lets the filter skip the full parse of requests that cannot be cached.
pub fn caching_field_present(bytes: &[u8]) -> Option<bool> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::borrow::Cow;

    struct Probe;
    impl<'de> Visitor<'de> for Probe {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut found = false;
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                found |= key == "caching";
                map.next_value::<IgnoredAny>()?;
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let found = (&mut de).deserialize_map(Probe).ok()?;
    de.end().ok()?;
    Some(found)
}

/// The top-level fields that go into a chat or embedding key (unsorted).
fn answer_fields(obj: &Map<String, Value>) -> Vec<(&str, &Value)> {
    obj.iter()
        .filter(|(k, v)| !v.is_null() && !NON_ANSWER_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v))
        .collect()
}

fn json_key(
    kind: &str,
    scope: &CacheScope,
    route_prefix: &str,
    fields: Vec<(&str, &Value)>,
) -> String {
    let mut h = KeyHasher::new(kind, scope, route_prefix);
    // The canonical JSON of the fields is the last part of the preimage, so it needs no framing;
    // it is streamed into the hash instead of being built as one (possibly multi-MiB) string.
    write_object(&mut h, fields);
    h.finish(kind)
}

/// SHA-256 over length-framed parts, so that no two different (kind, scope, route, …) tuples
/// produce the same preimage.
struct KeyHasher(Sha256);

impl KeyHasher {
    fn new(kind: &str, scope: &CacheScope, route_prefix: &str) -> KeyHasher {
        let mut h = KeyHasher(Sha256::new());
        h.framed(b"llm-forward cache key");
        h.framed(KEY_VERSION.as_bytes());
        h.framed(kind.as_bytes());
        h.framed(scope.to_string().as_bytes());
        h.framed(route_prefix.as_bytes());
        h
    }

    fn framed(&mut self, part: &[u8]) {
        self.0.update((part.len() as u64).to_le_bytes());
        self.0.update(part);
    }

    fn finish(self, kind: &str) -> String {
        let digest = self.0.finalize();
        let mut out = String::with_capacity(KEY_VERSION.len() + kind.len() + 2 + 64);
        out.push_str(KEY_VERSION);
        out.push(':');
        out.push_str(kind);
        out.push(':');
        for byte in digest {
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0x0f));
        }
        out
    }
}

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

/// Where canonical JSON goes: a `String`, or straight into a hash.
trait Sink {
    fn put(&mut self, s: &str);
}

impl Sink for String {
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }
}

impl Sink for KeyHasher {
    fn put(&mut self, s: &str) {
        self.0.update(s.as_bytes());
    }
}

fn write_value<S: Sink>(out: &mut S, v: &Value) {
    match v {
        Value::Null => out.put("null"),
        Value::Bool(true) => out.put("true"),
        Value::Bool(false) => out.put("false"),
        Value::Number(n) => out.put(&n.to_string()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.put("[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(",");
                }
                write_value(out, item);
            }
            out.put("]");
        }
        Value::Object(map) => write_object(out, map.iter().map(|(k, v)| (k.as_str(), v)).collect()),
    }
}

fn write_object<S: Sink>(out: &mut S, mut entries: Vec<(&str, &Value)>) {
    // Keys of one object are unique, so an unstable sort is deterministic.
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.put("{");
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.put(",");
        }
        write_string(out, k);
        out.put(":");
        write_value(out, v);
    }
    out.put("}");
}

/// A JSON string literal, escaped exactly like `serde_json`: `"` and `\`, the short escapes
/// `\b \t \n \f \r`, other control characters as `\u00xx`; everything else verbatim.
fn write_string<S: Sink>(out: &mut S, s: &str) {
    out.put("\"");
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\u{08}' => Some("\\b"),
            '\t' => Some("\\t"),
            '\n' => Some("\\n"),
            '\u{0c}' => Some("\\f"),
            '\r' => Some("\\r"),
            c if u32::from(c) < 0x20 => None,
            _ => continue,
        };
        out.put(s.get(start..i).unwrap_or(""));
        match short {
            Some(escape) => out.put(escape),
            None => out.put(&format!("\\u{:04x}", u32::from(c))),
        }
        start = i + c.len_utf8();
    }
    out.put(s.get(start..).unwrap_or(""));
    out.put("\"");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(body: &Value) -> String {
        chat_cache_key(&CacheScope::Shared, "/", body).unwrap()
    }

    #[test]
    fn caching_probe_agrees_with_take_caching_flag() {
        for (body, want) in [
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
                Some(false),
            ),
            (r#"{"model":"m","caching":true}"#, Some(true)),
            (r#"{"caching":null}"#, Some(true)),
            (r#"{"caching":"yes","model":"m"}"#, Some(true)),
            (r#"{"\u0063aching":false}"#, Some(true)),
            (
                r#"{"messages":[{"caching":true}],"meta":{"caching":1}}"#,
                Some(false),
            ),
            (r#"{"model":"caching"}"#, Some(false)),
            (r#"[{"caching":true}]"#, None),
            (r#"{"model":"m""#, None),
            (r#"{"model":"m"} x"#, None),
            ("", None),
        ] {
            assert_eq!(caching_field_present(body.as_bytes()), want, "{body}");
            if let Ok(mut v) = serde_json::from_str::<Value>(body) {
                if v.is_object() {
                    let present = take_caching_flag(&mut v) != CachingField::Absent;
                    assert_eq!(Some(present), want, "{body}");
                }
            }
        }
    }

    fn base() -> Value {
        json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]})
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_without_whitespace() {
        let v: Value = serde_json::from_str(
            r#" { "b" : 1, "a" : { "z" : [ 3, { "y": null, "x": true } ], "c": "s" } } "#,
        )
        .unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"s","z":[3,{"x":true,"y":null}]},"b":1}"#
        );
        assert_eq!(canonical_json(&json!([])), "[]");
        assert_eq!(canonical_json(&json!({})), "{}");
        assert_eq!(canonical_json(&json!(null)), "null");
        assert_eq!(canonical_json(&json!(false)), "false");
    }

    #[test]
    fn canonical_json_numbers_and_strings_match_serde_json() {
        for v in [
            json!(0.7),
            json!(1.0),
            json!(-3),
            json!(u64::MAX),
            json!(1e300),
            json!(0.1 + 0.2),
        ] {
            assert_eq!(canonical_json(&v), v.to_string());
        }
        for s in [
            "",
            "plain",
            "quote\" back\\ slash/",
            "\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f}",
            "中文 é 🦀",
        ] {
            let v = Value::String(s.to_string());
            assert_eq!(canonical_json(&v), v.to_string());
        }
        // Byte order, so uppercase sorts before lowercase and "a" before "a\u{0}".
        assert_eq!(
            canonical_json(&json!({"b": 1, "B": 2, "a": 3})),
            r#"{"B":2,"a":3,"b":1}"#
        );
    }

    #[test]
    fn key_shape_has_version_and_kind() {
        let k = chat(&base());
        let (prefix, hex) = k.split_at(8);
        assert_eq!(prefix, "v1:chat:");
        assert_eq!(hex.len(), 64);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        let e = embedding_cache_key(
            &CacheScope::Shared,
            "/",
            &json!({"model": "m", "input": "x"}),
        )
        .unwrap();
        assert!(e.starts_with("v1:embedding:"));
        let g = general_cache_key(&CacheScope::Shared, "/", "POST", "/x", b"");
        assert!(g.starts_with("v1:general:"));
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a: Value = serde_json::from_str(
            r#"{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#,
        )
        .unwrap();
        let b: Value =
            serde_json::from_str("{\n  \"temperature\": 0.5,\n  \"messages\": [ {\"content\": \"hi\", \"role\": \"user\"} ],\n  \"model\": \"gpt-4\"\n}").unwrap();
        assert_eq!(chat(&a), chat(&b));
    }

    #[test]
    fn deterministic() {
        assert_eq!(chat(&base()), chat(&base()));
    }

    #[test]
    fn scopes_are_separate() {
        let keys: Vec<String> = [
            CacheScope::Shared,
            CacheScope::Level(0),
            CacheScope::Level(1),
            CacheScope::Key("team-a".into()),
            CacheScope::Key("team-b".into()),
            CacheScope::Key("1".into()),
        ]
        .iter()
        .map(|s| chat_cache_key(s, "/", &base()).unwrap())
        .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in keys.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
        assert_eq!(CacheScope::Level(3).to_string(), "level:3");
        assert_eq!(CacheScope::Key("k".into()).to_string(), "key:k");
        assert_eq!(CacheScope::Shared.to_string(), "shared");
    }

    #[test]
    fn routes_are_separate() {
        let s = CacheScope::Shared;
        let root = chat_cache_key(&s, "/", &base()).unwrap();
        let other = chat_cache_key(&s, "/dropai", &base()).unwrap();
        assert_ne!(root, other);
        // Framing: moving characters between scope and route never collides.
        let a = chat_cache_key(&CacheScope::Key("a".into()), "b/c", &base()).unwrap();
        let b = chat_cache_key(&CacheScope::Key("ab".into()), "/c", &base()).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn stream_and_bookkeeping_fields_do_not_change_the_key() {
        let k = chat(&base());
        for (field, value) in [
            ("stream", json!(true)),
            ("stream_options", json!({"include_usage": true})),
            ("user", json!("u-1")),
            ("caching", json!(true)),
            ("metadata", json!({"a": "b"})),
            ("store", json!(true)),
            ("service_tier", json!("flex")),
            ("prompt_cache_key", json!("p")),
            ("safety_identifier", json!("s")),
        ] {
            let mut b = base();
            b[field] = value;
            assert_eq!(chat(&b), k, "{field} must not change the key");
        }
    }

    #[test]
    fn null_fields_count_as_absent() {
        let mut b = base();
        b["temperature"] = Value::Null;
        b["tools"] = Value::Null;
        assert_eq!(chat(&b), chat(&base()));
    }

    #[test]
    fn temperature_changes_the_key() {
        let mut a = base();
        a["temperature"] = json!(0.2);
        let mut b = base();
        b["temperature"] = json!(0.9);
        assert_ne!(chat(&a), chat(&base()));
        assert_ne!(chat(&a), chat(&b));
    }

    #[test]
    fn every_answer_field_changes_the_key() {
        let k = chat(&base());
        for field in ANSWER_FIELDS {
            let mut b = base();
            b[*field] = json!("changed-value");
            assert_ne!(chat(&b), k, "{field} must change the key");
            let mut c = base();
            c[*field] = json!("other-value");
            assert_ne!(
                chat(&b),
                chat(&c),
                "{field}: different values must give different keys"
            );
        }
        for field in NON_ANSWER_FIELDS {
            assert!(!ANSWER_FIELDS.contains(field), "{field} is in both lists");
        }
    }

    #[test]
    fn unknown_fields_change_the_key() {
        let mut b = base();
        b["top_k"] = json!(5);
        assert_ne!(chat(&b), chat(&base()));
        let mut c = base();
        c["chat_template_kwargs"] = json!({"enable_thinking": false});
        assert_ne!(chat(&c), chat(&base()));
    }

    #[test]
    fn nested_changes_change_the_key() {
        let mut b = base();
        b["messages"][0]["content"] = json!("hi!");
        assert_ne!(chat(&b), chat(&base()));
        let mut c = base();
        c["messages"] = json!([{"role": "system", "content": "hi"}]);
        assert_ne!(chat(&c), chat(&base()));
    }

    #[test]
    fn chat_key_needs_an_object_with_a_model() {
        let s = CacheScope::Shared;
        assert_eq!(chat_cache_key(&s, "/", &json!([1, 2])), None);
        assert_eq!(chat_cache_key(&s, "/", &json!("x")), None);
        assert_eq!(chat_cache_key(&s, "/", &json!({"messages": []})), None);
        assert_eq!(
            chat_cache_key(&s, "/", &json!({"model": null, "messages": []})),
            None
        );
        assert_eq!(
            chat_cache_key(&s, "/", &json!({"model": 4, "messages": []})),
            None
        );
        assert!(chat_cache_key(&s, "/", &json!({"model": "m", "prompt": "p"})).is_some());
    }

    fn emb(body: Value) -> Option<String> {
        embedding_cache_key(&CacheScope::Shared, "/", &body)
    }

    #[test]
    fn embedding_keys() {
        let k = emb(json!({"model": "text-embedding-3-small", "input": "hello"})).unwrap();
        assert_eq!(
            emb(
                json!({"input": "hello", "model": "text-embedding-3-small", "encoding_format": "float"})
            ),
            Some(k.clone())
        );
        assert_eq!(
            emb(
                json!({"input": "hello", "model": "text-embedding-3-small", "encoding_format": null})
            ),
            Some(k.clone())
        );
        assert_eq!(
            emb(
                json!({"model": "text-embedding-3-small", "input": "hello", "user": "u", "caching": true})
            ),
            Some(k.clone())
        );
        assert_ne!(
            emb(
                json!({"model": "text-embedding-3-small", "input": "hello", "encoding_format": "base64"})
            ),
            Some(k.clone())
        );
        assert_ne!(
            emb(json!({"model": "text-embedding-3-small", "input": "hello", "dimensions": 256})),
            Some(k.clone())
        );
        assert_ne!(
            emb(json!({"model": "text-embedding-3-large", "input": "hello"})),
            Some(k.clone())
        );
        assert_ne!(
            emb(json!({"model": "text-embedding-3-small", "input": ["hello"]})),
            Some(k.clone())
        );
        assert_ne!(
            emb(json!({"model": "text-embedding-3-small", "input": "hello!"})),
            Some(k.clone())
        );
        let chat_k = chat_cache_key(
            &CacheScope::Shared,
            "/",
            &json!({"model": "text-embedding-3-small", "input": "hello", "encoding_format": "float"}),
        );
        assert_ne!(chat_k, Some(k), "kinds are separate");
        assert_eq!(emb(json!({"model": "m"})), None);
        assert_eq!(emb(json!({"model": "m", "input": null})), None);
        assert_eq!(emb(json!({"input": "x"})), None);
        assert_eq!(emb(json!("x")), None);
    }

    #[test]
    fn general_keys_cover_every_part() {
        let s = CacheScope::Shared;
        let k = general_cache_key(&s, "/gen", "POST", "/v1/x?a=1", b"{\"a\":1}");
        assert_eq!(
            k,
            general_cache_key(&s, "/gen", "POST", "/v1/x?a=1", b"{\"a\":1}")
        );
        assert_ne!(
            k,
            general_cache_key(
                &CacheScope::Level(1),
                "/gen",
                "POST",
                "/v1/x?a=1",
                b"{\"a\":1}"
            )
        );
        assert_ne!(
            k,
            general_cache_key(&s, "/other", "POST", "/v1/x?a=1", b"{\"a\":1}")
        );
        assert_ne!(
            k,
            general_cache_key(&s, "/gen", "PUT", "/v1/x?a=1", b"{\"a\":1}")
        );
        assert_ne!(
            k,
            general_cache_key(&s, "/gen", "POST", "/v1/x?a=2", b"{\"a\":1}")
        );
        assert_ne!(
            k,
            general_cache_key(&s, "/gen", "POST", "/v1/x?a=1", b"{\"a\": 1}")
        );
        // Framing: the boundary between method and path is not ambiguous.
        assert_ne!(
            general_cache_key(&s, "/", "GET", "/x", b""),
            general_cache_key(&s, "/", "GE", "T/x", b"")
        );
        assert_ne!(
            general_cache_key(&s, "/", "GET", "/x", b"y"),
            general_cache_key(&s, "/", "GET", "/xy", b"")
        );
        // Bytes that are not UTF-8 are fine.
        let _ = general_cache_key(&s, "/", "POST", "/", &[0xff, 0x00, 0xfe]);
    }

    #[test]
    fn known_digest() {
        // Pins the recipe: changing it must come with a new KEY_VERSION.
        let k = chat_cache_key(
            &CacheScope::Shared,
            "/",
            &json!({"model": "gpt-4", "messages": []}),
        )
        .unwrap();
        let mut h = Sha256::new();
        for part in [
            &b"llm-forward cache key"[..],
            b"v1",
            b"chat",
            b"shared",
            b"/",
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.update(br#"{"messages":[],"model":"gpt-4"}"#);
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(k, format!("v1:chat:{hex}"));
    }

    #[test]
    fn take_caching_flag_removes_the_field() {
        let mut v = json!({"model": "m", "caching": true});
        assert_eq!(take_caching_flag(&mut v), CachingField::Flag(true));
        assert_eq!(v, json!({"model": "m"}));

        let mut v = json!({"model": "m", "caching": false});
        let f = take_caching_flag(&mut v);
        assert_eq!(
            (f, f.flag(), f.removed()),
            (CachingField::Flag(false), Some(false), true)
        );
        assert_eq!(v, json!({"model": "m"}));

        for bad in [json!("yes"), json!(1), json!(null), json!({"x": true})] {
            let mut v = json!({"model": "m", "caching": bad});
            let f = take_caching_flag(&mut v);
            assert_eq!(
                (f, f.flag(), f.removed()),
                (CachingField::Invalid, None, true)
            );
            assert_eq!(v, json!({"model": "m"}));
        }

        let mut v = json!({"model": "m", "extra": {"caching": true}});
        let f = take_caching_flag(&mut v);
        assert_eq!(
            (f, f.flag(), f.removed()),
            (CachingField::Absent, None, false)
        );
        assert_eq!(
            v,
            json!({"model": "m", "extra": {"caching": true}}),
            "only the top level counts"
        );

        let mut v = json!([{"caching": true}]);
        assert_eq!(take_caching_flag(&mut v), CachingField::Absent);
    }

    #[test]
    fn caching_flag_does_not_change_the_key() {
        let mut with = base();
        with["caching"] = json!(true);
        let before = chat(&with);
        take_caching_flag(&mut with);
        assert_eq!(chat(&with), before);
        assert_eq!(before, chat(&base()));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn arb_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                any::<u64>().prop_map(|n| json!(n)),
                // Dyadic fractions with few digits parse back to the same f64 without
                // serde_json's `float_roundtrip` feature.
                (-1e6f64..1e6).prop_map(|f| json!((f * 64.0).round() / 64.0)),
                "\\PC{0,8}".prop_map(Value::String),
                "[\\x00-\\x1f\"\\\\/a]{0,6}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    proptest::collection::vec(("[a-dA-D_\\x00-\\x02é]{0,4}", inner), 0..6)
                        .prop_map(|kvs| Value::Object(kvs.into_iter().collect())),
                ]
            })
        }

        /// Writes `v` as JSON text with object entries shuffled (a small LCG seeded by the test)
        /// and whitespace sprinkled between tokens.
        fn next(seed: &mut u64) -> usize {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (*seed >> 33) as usize
        }

        fn scrambled(v: &Value, seed: &mut u64, out: &mut String) {
            let ws = |n: usize| [" ", "", "\n", "\t ", ""][n % 5];
            match v {
                Value::Array(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(ws(next(seed)));
                        scrambled(item, seed, out);
                    }
                    out.push(']');
                }
                Value::Object(map) => {
                    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                    // Fisher-Yates with the local generator.
                    for i in (1..entries.len()).rev() {
                        let j = next(seed) % (i + 1);
                        entries.swap(i, j);
                    }
                    out.push('{');
                    for (i, (k, val)) in entries.into_iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(ws(next(seed)));
                        out.push_str(&Value::String(k.clone()).to_string());
                        out.push_str(ws(next(seed)));
                        out.push(':');
                        scrambled(val, seed, out);
                    }
                    out.push_str(ws(next(seed)));
                    out.push('}');
                }
                other => out.push_str(&other.to_string()),
            }
        }

        proptest! {
            #[test]
            fn canonical_json_is_invariant_under_key_shuffles_and_whitespace(v in arb_json(), seed in any::<u64>()) {
                let mut seed = seed;
                let mut text = String::new();
                scrambled(&v, &mut seed, &mut text);
                let reparsed: Value = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(canonical_json(&reparsed), canonical_json(&v));
                let mut other = String::new();
                scrambled(&v, &mut seed, &mut other);
                let reparsed_other: Value = serde_json::from_str(&other).unwrap();
                prop_assert_eq!(canonical_json(&reparsed_other), canonical_json(&reparsed));
            }

            #[test]
            fn canonical_json_is_valid_json_of_the_same_value(v in arb_json()) {
                let text = canonical_json(&v);
                let back: Value = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(back, v);
            }

            #[test]
            fn string_escaping_matches_serde_json(s in "\\PC{0,16}|[\\x00-\\x7f]{0,16}") {
                let v = Value::String(s);
                prop_assert_eq!(canonical_json(&v), v.to_string());
            }

            #[test]
            fn chat_key_is_invariant_under_shuffles(msgs in proptest::collection::vec("\\PC{0,8}", 1..4), t in 0u8..20, seed in any::<u64>()) {
                let v = json!({
                    "model": "m",
                    "messages": msgs.iter().map(|m| json!({"role": "user", "content": m})).collect::<Vec<_>>(),
                    "temperature": f64::from(t) / 10.0,
                    "stream": seed % 2 == 0,
                });
                let mut seed = seed;
                let mut text = String::new();
                scrambled(&v, &mut seed, &mut text);
                let reparsed: Value = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(chat_cache_key(&CacheScope::Level(1), "/", &reparsed), chat_cache_key(&CacheScope::Level(1), "/", &v));
            }
        }
    }
}
