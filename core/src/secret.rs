//! Handling secrets: comparing them without timing leaks, showing them without revealing them, and
//! reading them from `Authorization` headers.

/// Compares two byte strings in time that depends only on their lengths, not on where they differ.
///
/// Different lengths return `false` at once: the length of a key is not treated as secret (key
/// formats such as `sk-…` have well-known lengths anyway). For equal lengths every byte is
/// examined; `black_box` keeps the optimiser from turning the fold back into an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

/// A key shortened for logs and banners: `sk-…wxyz`, or `sk-***` when the key is short.
///
/// - A short scheme prefix ending in `-` (at most 4 characters: `sk-`, `fk-`, `key-`) is kept.
/// - The last 4 characters are shown only when at least 8 other secret characters stay hidden;
///   otherwise nothing of the secret part is shown (`***`).
///
/// Works on characters, never splits UTF-8.
pub fn mask(key: &str) -> String {
    const TAIL: usize = 4;
    const MIN_HIDDEN: usize = 8;
    let prefix = match key.find('-') {
        Some(i) if key.get(..=i).is_some_and(|p| p.chars().count() <= 4) => {
            key.get(..=i).unwrap_or("")
        }
        _ => "",
    };
    let rest = key.get(prefix.len()..).unwrap_or("");
    let n = rest.chars().count();
    if n >= TAIL + MIN_HIDDEN {
        let tail: String = rest.chars().skip(n - TAIL).collect();
        format!("{prefix}…{tail}")
    } else {
        format!("{prefix}***")
    }
}

/// The token of an `Authorization: Bearer <token>` header value, or `None`.
///
/// The scheme is matched case-insensitively and surrounding whitespace is ignored, but the scheme
/// must be `Bearer` (OpenAI-Forward cut 7 characters off whatever came, so `Token fk-0` worked
/// too) and the token must be one non-empty word without whitespace or control characters.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.trim().split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some(token)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"fk-secret", b"fk-secret"));
        assert!(!constant_time_eq(b"fk-secret", b"fk-secreT"));
        assert!(!constant_time_eq(b"Fk-secret", b"fk-secret"));
        assert!(!constant_time_eq(b"fk-secret", b"fk-secre"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(!constant_time_eq(&[0x80], &[0x00]));
    }

    #[test]
    fn mask_long_keys_shows_prefix_and_four_chars() {
        assert_eq!(mask("sk-abcdefghijklmnopqrstuvwxyz"), "sk-…wxyz");
        assert_eq!(mask("fk-0123456789ab"), "fk-…89ab");
        assert_eq!(mask("sk-proj-abcdefghijklmnop"), "sk-…mnop");
        assert_eq!(mask("key-abcdefghijkl"), "key-…ijkl");
        assert_eq!(mask("abcdefghijklmnop"), "…mnop");
        // A long "prefix" is part of the secret, not a scheme.
        assert_eq!(mask("secret-abcdefghijkl"), "…ijkl");
    }

    #[test]
    fn mask_short_keys_shows_no_secret_characters() {
        assert_eq!(mask("fk-0"), "fk-***");
        assert_eq!(mask("sk-12345678901"), "sk-***"); // 11 secret chars: too few to show 4
        assert_eq!(mask("sk-123456789012"), "sk-…9012");
        assert_eq!(mask("short"), "***");
        assert_eq!(mask(""), "***");
        assert_eq!(mask("-"), "-***");
    }

    #[test]
    fn mask_is_utf8_safe_and_never_shows_more_than_four() {
        assert_eq!(mask("sk-ééééééééééééé"), "sk-…éééé");
        assert_eq!(mask("ключ-абвгдежзийклмн"), "…клмн"); // "ключ-" is 5 chars: not a scheme prefix
        assert_eq!(mask("ки-абвгдежзийклмн"), "ки-…клмн");
        for key in [
            "sk-abcdefghijklmnopqrstuvwxyz",
            "x".repeat(200).as_str(),
            "sk-ab",
        ] {
            let m = mask(key);
            let shown = m.rsplit(['…', '-']).next().unwrap_or("");
            assert!(shown.chars().count() <= 4, "{m}");
        }
    }

    #[test]
    fn bearer_token_accepts_only_bearer() {
        assert_eq!(bearer_token("Bearer fk-0"), Some("fk-0"));
        assert_eq!(bearer_token("bearer fk-0"), Some("fk-0"));
        assert_eq!(bearer_token("BEARER fk-0"), Some("fk-0"));
        assert_eq!(bearer_token("  Bearer   fk-0  "), Some("fk-0"));
        assert_eq!(bearer_token("Bearer\tfk-0"), Some("fk-0"));
        assert_eq!(bearer_token("Token  fk-0"), None);
        assert_eq!(bearer_token("Basic Zm9vOmJhcg=="), None);
        assert_eq!(bearer_token("Bearerfk-0"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer    "), None);
        assert_eq!(bearer_token(""), None);
        assert_eq!(bearer_token("fk-0"), None);
        assert_eq!(bearer_token("Bearer fk-0 extra"), None);
        assert_eq!(bearer_token("Bearer fk\u{0}0"), None);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn constant_time_eq_agrees_with_eq(a in proptest::collection::vec(any::<u8>(), 0..16), b in proptest::collection::vec(any::<u8>(), 0..16)) {
                prop_assert_eq!(constant_time_eq(&a, &b), a == b);
                prop_assert!(constant_time_eq(&a, &a));
            }

            #[test]
            fn mask_never_reveals_more_than_four_secret_chars(key in "\\PC{0,40}") {
                let m = mask(&key);
                let shown_tail = m.split_once('…').map(|(_, t)| t.chars().count()).unwrap_or(0);
                prop_assert!(shown_tail <= 4);
                prop_assert!(m.ends_with("***") || m.contains('…'));
            }

            #[test]
            fn bearer_token_never_panics(s in "\\PC{0,30}") {
                if let Some(t) = bearer_token(&s) {
                    prop_assert!(!t.is_empty());
                }
            }
        }
    }
}
