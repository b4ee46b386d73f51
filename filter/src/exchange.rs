//! What one request has revealed so far. Features read and fill it in phase order:
//! access (caller, model) → limits → cache → upstream → logs. Nothing here talks to the host.

use crate::host::HeaderMap;
use llm_forward_core::answer::{Answer, ApiKind};
use llm_forward_core::headers::HeaderLookup;
use std::borrow::Cow;
use std::net::IpAddr;
use std::rc::Rc;

/// Who is calling, as established by the access feature. Never holds the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Level of the forward key (0 = every model); 0 when no forward keys are configured.
    pub level: u32,
    /// Configured name of the forward key, for logs, limits and cache scopes (shared with the
    /// compiled rules: no copy per request).
    pub key_name: Option<Rc<str>>,
}

/// A reply the gateway sends itself instead of forwarding.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalReply {
    pub status: u32,
    pub message: String,
    /// OpenAI's `error.type`, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// OpenAI's `error.code`, e.g. `invalid_api_key`.
    pub code: &'static str,
    pub headers: Vec<(String, String)>,
}

impl LocalReply {
    pub fn new(
        status: u32,
        message: impl Into<String>,
        kind: &'static str,
        code: &'static str,
    ) -> Self {
        LocalReply {
            status,
            message: message.into(),
            kind,
            code,
            headers: Vec::new(),
        }
    }
}

/// What a feature wants after looking at a phase.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Go on with the next feature / let the request proceed.
    Continue,
    /// Answer locally now; later features and the upstream are skipped.
    Reply(LocalReply),
    /// The feature dispatched a call and will resume the request itself.
    Wait,
}

#[derive(Debug, Default)]
pub struct Exchange {
    /// Index of the matched route in the filter config.
    pub route: usize,
    /// `:method`; the standard methods are static strings, not copies. Empty when the request's
    /// features need `:path` alone (`crate::idle::IdleRoutes::path_only`).
    pub method: Cow<'static, str>,
    /// `:path` as received, query included.
    pub path: String,
    /// Request headers, read once in `on_http_request_headers` (names lower-case), looked up by
    /// name in Envoy's serialised map.
    pub request_headers: HeaderMap,
    /// Downstream address as computed by Envoy (XFF trusted only per `xff_num_trusted_hops`).
    pub client_ip: Option<IpAddr>,
    pub caller: Option<Caller>,
    /// Index of the pooled upstream key swapped in by the access feature (never the key itself);
    /// an upstream 401/403/429 puts it in cooldown.
    pub upstream_key: Option<usize>,
    /// A forward key was accepted and the upstream key is not written yet (see
    /// `AccessState::swap_key`).
    pub key_swap_pending: bool,
    /// Which OpenAI API the request targets, when it is one the filter understands.
    pub api: Option<ApiKind>,
    /// The parsed JSON request body (only for routes/paths whose features need it).
    pub body: Option<serde_json::Value>,
    /// True when the body was changed and must be written back before forwarding.
    pub body_changed: bool,
    pub model: Option<String>,
    pub stream: bool,
    /// Upstream (or local) response status.
    pub status: u32,
    /// The filter answered itself (an error or a cache hit): the response phases see its own
    /// reply, whose status, content type and headers it already knows.
    pub local_reply: bool,
    /// Headers every response carries, local replies included (`x-ratelimit-*`, fixed names).
    pub reply_headers: Vec<(&'static str, String)>,
    pub response_content_type: Option<String>,
    /// What the response produced (text, tool calls, usage), filled by the logs feature.
    pub answer: Option<Answer>,
    /// `hit`, `miss`, `bypass` or `None` when the cache did not look.
    pub cache_status: Option<&'static str>,
    /// Wall-clock milliseconds when the request arrived and when the first response byte left.
    pub started_ms: u64,
    pub first_byte_ms: Option<u64>,
}

/// A request method as [`Exchange::method`] holds it: the standard ones without an allocation.
pub fn method(name: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    match KNOWN.iter().find(|m| **m == name) {
        Some(m) => Cow::Borrowed(m),
        None => Cow::Owned(name.to_string()),
    }
}

impl Exchange {
    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.request_headers.first(name)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    #[test]
    fn standard_methods_are_static() {
        assert!(matches!(super::method("POST"), Cow::Borrowed("POST")));
        assert!(matches!(super::method("GET"), Cow::Borrowed("GET")));
        assert!(matches!(super::method("PROPFIND"), Cow::Owned(m) if m == "PROPFIND"));
        assert!(matches!(super::method("post"), Cow::Owned(_)));
    }
}
