//! Request bodies: which content types may be parsed as JSON, and the fields the access checks
//! read (`model`, `stream`).

/// What the access checks need from a JSON request body.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestBody {
    pub json: serde_json::Value,
    pub model: Option<String>,
    pub stream: bool,
}

/// Parses a JSON request body. Not JSON, not an object, or a non-string `model` → the message of
/// a 400 reply.
pub fn parse_body(bytes: &[u8]) -> Result<RequestBody, String> {
    let json: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("We could not parse the JSON body of your request: {e}"))?;
    let obj = json
        .as_object()
        .ok_or_else(|| "The request body must be a JSON object".to_string())?;
    let model = match obj.get("model") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(m)) => Some(m.clone()),
        Some(_) => return Err("`model` must be a string".into()),
    };
    let stream = obj
        .get("stream")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    Ok(RequestBody {
        json,
        model,
        stream,
    })
}

/// True when a `content-type` is one whose body may be buffered and parsed as JSON: JSON, or no
/// type at all (many clients omit it). Multipart uploads and forms are never buffered.
pub fn is_json_content_type(content_type: Option<&str>) -> bool {
    match content_type.map(str::trim) {
        None => true,
        Some(c) => {
            !(starts_with_ignore_case(c, "multipart/")
                || starts_with_ignore_case(c, "application/x-www-form-urlencoded"))
        }
    }
}

/// `s.to_ascii_lowercase().starts_with(prefix)` for a lower-case ASCII `prefix`, without a copy.
pub fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// `s.to_ascii_lowercase().ends_with(suffix)` for a lower-case ASCII `suffix`, without a copy.
pub fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()
            .get(s.len() - suffix.len()..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes()))
}

/// `s.to_ascii_lowercase().contains(needle)` for a lower-case ASCII `needle`, without a copy.
pub fn contains_ignore_case(s: &str, needle: &str) -> bool {
    needle.is_empty()
        || s.as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The previous, allocating version.
    fn is_json_content_type_lowercased(content_type: Option<&str>) -> bool {
        match content_type.map(|c| c.trim().to_ascii_lowercase()) {
            None => true,
            Some(c) => {
                !(c.starts_with("multipart/") || c.starts_with("application/x-www-form-urlencoded"))
            }
        }
    }

    #[test]
    fn content_types() {
        for (ct, json) in [
            (None, true),
            (Some("application/json"), true),
            (Some(" Multipart/Form-Data; boundary=x"), false),
            (Some("APPLICATION/X-WWW-FORM-URLENCODED"), false),
            (Some("text/plain"), true),
            (Some(""), true),
            (Some("multipart"), true),
            (Some("é/multipart/"), true),
        ] {
            assert_eq!(is_json_content_type(ct), json, "{ct:?}");
        }
        assert!(ends_with_ignore_case("application/Vnd.X+JSON", "+json"));
        assert!(!ends_with_ignore_case("json", "+json"));
        assert!(contains_ignore_case("Application/JSON; x", "json"));
        assert!(!contains_ignore_case("text/plain", "json"));
        assert!(!contains_ignore_case("", "json"));
    }

    proptest! {
        #[test]
        fn matches_the_lowercasing_versions(s in "[ a-zA-Z/+;=é-]{0,40}", needle in "[a-z/+-]{0,6}") {
            prop_assert_eq!(is_json_content_type(Some(&s)), is_json_content_type_lowercased(Some(&s)));
            let lower = s.to_ascii_lowercase();
            prop_assert_eq!(starts_with_ignore_case(&s, &needle), lower.starts_with(&needle));
            prop_assert_eq!(ends_with_ignore_case(&s, &needle), lower.ends_with(&needle));
            prop_assert_eq!(contains_ignore_case(&s, &needle), lower.contains(&needle));
        }

        #[test]
        fn json_check_matches_on_any_text(s in any::<String>()) {
            prop_assert_eq!(is_json_content_type(Some(&s)), is_json_content_type_lowercased(Some(&s)));
        }
    }
}
