//! Where a route carries the client's API key (a header, `Authorization: Bearer`, or a query
//! parameter) and reading it from a request.

use super::query::query_param;
use crate::headers::HeaderLookup;
use crate::secret::bearer_token;
use std::borrow::Cow;

/// Where a route carries the API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// `Authorization: Bearer <key>` (the default).
    Bearer,
    /// The whole value of a header (`x-api-key`, `x-goog-api-key`, `api-key`); lower-case name.
    Header(String),
    /// A query parameter (`query:key` → `?key=…`, Gemini).
    Query(String),
}

impl KeyLocation {
    pub const DEFAULT: &'static str = "authorization";

    pub fn parse(s: &str) -> Result<KeyLocation, String> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        match lower.as_str() {
            "authorization" | "bearer" => return Ok(KeyLocation::Bearer),
            "x-api-key" | "x-goog-api-key" | "api-key" => {
                return Ok(KeyLocation::Header(lower));
            }
            _ => {}
        }
        if let Some(name) = t.strip_prefix("query:") {
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
            return if ok {
                Ok(KeyLocation::Query(name.to_string()))
            } else {
                Err(format!(
                    "`{s}`: the query parameter name must be letters, digits, `_`, `-` or `.`"
                ))
            };
        }
        Err(format!(
            "`{s}` is not a key location; use authorization, x-api-key, x-goog-api-key, api-key or query:<name>"
        ))
    }

    /// The key the client presented here, if any. `headers` are lower-case names; `path` is `:path`.
    /// Borrowed from the header when it can be (only a query parameter is decoded into a copy).
    pub fn extract<'a, H: HeaderLookup + ?Sized>(
        &self,
        headers: &'a H,
        path: &str,
    ) -> Option<Cow<'a, str>> {
        match self {
            KeyLocation::Bearer => {
                let v = headers.first("authorization")?;
                bearer_token(v).map(Cow::Borrowed)
            }
            KeyLocation::Header(name) => {
                let v = headers.first(name)?.trim();
                (!v.is_empty()).then_some(Cow::Borrowed(v))
            }
            KeyLocation::Query(name) => {
                let v = query_param(path, name)?;
                (!v.is_empty()).then_some(Cow::Owned(v))
            }
        }
    }
}
