//! Thin, non-panicking wrappers over proxy-wasm host calls.
//!
//! The SDK's trait helpers `unwrap` host statuses; an unexpected status (for example reading headers
//! in a phase where Envoy no longer has them) would then trap the VM. These return or swallow errors.

use llm_forward_core::errors::error_body;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType};

/// Wall-clock milliseconds since the Unix epoch as Envoy sees them (0 if unavailable).
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// All request headers, read in one host call.
pub fn request_headers() -> Vec<(String, String)> {
    hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default()
}

pub fn set_request_header(name: &str, value: Option<&str>) {
    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
}

pub fn set_response_header(name: &str, value: Option<&str>) {
    let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value);
}

/// Answer the request locally with an OpenAI-shaped JSON error; the upstream is never contacted.
pub fn send_error(
    status: u32,
    message: &str,
    kind: &str,
    code: &str,
    extra_headers: &[(&str, &str)],
) {
    let body = error_body(message, kind, code);
    let mut headers: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        ("x-llm-forward-error", code),
    ];
    headers.extend_from_slice(extra_headers);
    if hostcalls::send_http_response(status, headers, Some(&body)).is_err() {
        log(
            LogLevel::Warn,
            &format!("could not send local reply {status}"),
        );
    }
}

/// The value of a header in a header list read by [`request_headers`] (names are lower-case in Envoy).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
