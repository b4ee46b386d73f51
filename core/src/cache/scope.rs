//! Whose cached answers a request may read: its cache scope.
//!
//! Callers authenticated by a forward key share by the configured [`ScopeMode`] (every client,
//! the key's level, or the key). Callers the gateway did not authenticate (no forward keys are
//! configured, or `pass_through_unknown_keys` let an unknown key through) are only ever answered
//! from entries stored for the **same credential**: the upstream checks their key, so an answer
//! stored for one client must not reach a client whose key the upstream never saw (a `junk-key`
//! would otherwise read everything others paid for). The scope holds a keyed hash of the
//! credential (HMAC-SHA256 with a per-deployment random secret), never the credential, so entries
//! cannot be precomputed or attributed by someone who can read the cache. A caller that sends no
//! credential at all gets the `anonymous` scope: it reads only entries stored by other callers
//! without a credential, that is answers the upstream gives to anyone.

use super::ScopeMode;
use crate::access::query_param;
use crate::cache_key::CacheScope;
use crate::headers::HeaderLookup;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Who is asking, as far as the cache is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheCaller<'a> {
    /// Authenticated by the forward key named `key_name` (of level `level`).
    Forward { level: u32, key_name: &'a str },
    /// Not authenticated by the gateway; `credential` is the digest of what it sent (see
    /// [`credential_digest`]), `None` when it sent nothing.
    Unauthenticated { credential: Option<&'a str> },
}

/// The scope of a request's key.
pub fn scope_for(mode: ScopeMode, caller: CacheCaller<'_>) -> CacheScope {
    match caller {
        CacheCaller::Forward { level, key_name } => match mode {
            ScopeMode::Shared => CacheScope::Shared,
            ScopeMode::Level => CacheScope::Level(level),
            ScopeMode::Key => CacheScope::Key(key_name.to_string()),
        },
        // Whatever the mode: the upstream, not the gateway, decides who these callers are.
        CacheCaller::Unauthenticated {
            credential: Some(digest),
        } => CacheScope::Credential(digest.to_string()),
        CacheCaller::Unauthenticated { credential: None } => CacheScope::Anonymous,
    }
}

/// Headers that can identify a caller to the upstream: API keys of the upstreams llm-forward
/// fronts (OpenAI and compatibles, Anthropic, Azure, Gemini), and cookies (a general route's
/// upstream may keep sessions in them).
pub const CREDENTIAL_HEADERS: [&str; 6] = [
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "proxy-authorization",
    "cookie",
];

/// Everything in a request that can act as its credential, as one string: every credential
/// header, the `key` query parameter (Gemini) and the route's own query parameter `query_name`
/// when it has one. `None` when the request carries none. `headers` have lower-case names;
/// `path` is `:path` with its query.
pub fn credential_material<H: HeaderLookup + ?Sized>(
    headers: &H,
    path: &str,
    query_name: Option<&str>,
) -> Option<String> {
    let mut out = String::new();
    for name in CREDENTIAL_HEADERS {
        headers.each_value(name, &mut |v| {
            let v = v.trim();
            if !v.is_empty() {
                out.push_str(&format!("{name}:{}:{v}\n", v.len()));
            }
            true
        });
    }
    let mut params = vec!["key"];
    if let Some(q) = query_name.filter(|q| *q != "key") {
        params.push(q);
    }
    for p in params {
        if let Some(v) = query_param(path, p).filter(|v| !v.is_empty()) {
            out.push_str(&format!("?{p}:{}:{v}\n", v.len()));
        }
    }
    (!out.is_empty()).then_some(out)
}

/// HMAC-SHA256 of `material` under `secret`, first 128 bits in hex: the credential's scope name.
pub fn credential_digest(secret: &[u8], material: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        // HMAC takes keys of any length; this branch is unreachable.
        return String::new();
    };
    mac.update(material.as_bytes());
    let tag = mac.finalize().into_bytes();
    tag.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn forward_keys_follow_the_mode() {
        let alice = CacheCaller::Forward {
            level: 1,
            key_name: "alice",
        };
        assert_eq!(scope_for(ScopeMode::Shared, alice), CacheScope::Shared);
        assert_eq!(scope_for(ScopeMode::Level, alice), CacheScope::Level(1));
        assert_eq!(
            scope_for(ScopeMode::Key, alice),
            CacheScope::Key("alice".into())
        );
    }

    #[test]
    fn unauthenticated_callers_never_share_across_credentials() {
        let secret = [7u8; 32];
        let digest = |pairs: &[(&str, &str)], path: &str| {
            credential_material(&h(pairs), path, None).map(|m| credential_digest(&secret, &m))
        };
        let a = digest(
            &[("authorization", "Bearer sk-client-a")],
            "/v1/chat/completions",
        );
        let junk = digest(
            &[("authorization", "Bearer junk-key")],
            "/v1/chat/completions",
        );
        let gemini = digest(&[], "/v1beta/models/x:generateContent?key=AIza-1");
        let none = digest(
            &[("content-type", "application/json")],
            "/v1/chat/completions",
        );
        let session = digest(&[("cookie", "session=abc")], "/gen/x");
        assert!(session.is_some(), "a cookie session is a credential");
        assert!(a.is_some() && junk.is_some() && gemini.is_some());
        assert_ne!(a, junk);
        assert_eq!(none, None);
        for mode in [ScopeMode::Shared, ScopeMode::Level, ScopeMode::Key] {
            let sa = scope_for(
                mode,
                CacheCaller::Unauthenticated {
                    credential: a.as_deref(),
                },
            );
            let sj = scope_for(
                mode,
                CacheCaller::Unauthenticated {
                    credential: junk.as_deref(),
                },
            );
            let sn = scope_for(mode, CacheCaller::Unauthenticated { credential: None });
            assert_ne!(sa, sj);
            assert_eq!(sn, CacheScope::Anonymous);
            assert_ne!(sa, CacheScope::Shared);
            assert_ne!(sa, CacheScope::Level(0));
            // The scope never shows the key.
            assert!(!sa.to_string().contains("sk-client-a"), "{sa}");
        }
        // Same credential → same scope; another deployment secret → another scope.
        let again = digest(&[("authorization", "Bearer sk-client-a")], "/x");
        assert_eq!(a, again);
        let m =
            credential_material(&h(&[("authorization", "Bearer sk-client-a")]), "/", None).unwrap();
        assert_ne!(
            credential_digest(&[8u8; 32], &m),
            credential_digest(&secret, &m)
        );
        assert_eq!(credential_digest(&secret, &m).len(), 32);
        // Header boundaries cannot be shifted to collide two requests.
        let x = credential_material(&h(&[("x-api-key", "a"), ("api-key", "b")]), "/", None);
        let y = credential_material(&h(&[("x-api-key", "a\napi-key:1:b")]), "/", None);
        assert_ne!(x, y);
    }
}
