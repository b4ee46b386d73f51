//! The one way into Envoy: every host call of the filter goes through this module.
//!
//! Non-panicking wrappers: the SDK's trait helpers `unwrap` host statuses; an unexpected status (for
//! example reading headers in a phase where Envoy no longer has them) would then trap the VM. These
//! return or swallow errors. On wasm32 they call the proxy-wasm ABI; in native builds (unit tests)
//! they call [`fake`], a recording stand-in for Envoy, so tests can drive whole exchanges and count
//! the crossings each one costs (`crate::budget_tests`). A source scan test keeps every other module
//! from naming the SDK's `hostcalls` directly.

use llm_forward_core::errors::error_body;
use llm_forward_core::headers::HeaderLookup;
use proxy_wasm::types::{BufferType, Bytes, LogLevel, MapType, MetricType, Status};
use std::time::Duration;

#[cfg(not(target_arch = "wasm32"))]
pub mod fake;
pub mod header_map;
#[cfg(not(target_arch = "wasm32"))]
use fake as sys;
pub use header_map::HeaderMap;

/// The real backend: the SDK's host calls plus two raw ABI calls the SDK wraps with panics.
#[cfg(target_arch = "wasm32")]
mod sys {
    pub use proxy_wasm::hostcalls::*;
    use proxy_wasm::types::MapType;

    // The SDK's `get_map` / `get_map_value` panic (trapping the VM) on a header value that is not
    // UTF-8 (HTTP allows obs-text bytes, so any client or upstream can send one) and on any status
    // besides Ok/NotFound (a cache call that failed after its headers arrived answers BadArgument
    // for `:status`). These call the ABI directly and never panic.
    extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
        fn proxy_get_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
    }

    /// Takes ownership of a buffer the host allocated through the SDK's `proxy_on_memory_allocate`.
    fn host_bytes(data: *mut u8, size: usize) -> Vec<u8> {
        if data.is_null() {
            return Vec::new();
        }
        // SAFETY: the host filled `data` with `size` bytes allocated by the module's allocator as
        // a `Vec<u8>` of that capacity (exactly what the SDK's own wrappers rely on).
        unsafe { Vec::from_raw_parts(data, size, size) }
    }

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_grpc_call(
            upstream_data: *const u8,
            upstream_size: usize,
            service_name_data: *const u8,
            service_name_size: usize,
            method_name_data: *const u8,
            method_name_size: usize,
            initial_metadata_data: *const u8,
            initial_metadata_size: usize,
            message_data: *const u8,
            message_size: usize,
            timeout_milliseconds: u32,
            token_ptr: *mut u32,
        ) -> proxy_wasm::types::Status;
    }

    /// A gRPC call through the raw ABI (the SDK's wrapper panics on an unknown cluster); its
    /// answer reaches no context. True when Envoy accepted it.
    pub fn grpc_call_accepted(
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: std::time::Duration,
    ) -> bool {
        // An empty metadata map: the serialized form is a 4-byte zero count.
        let metadata = [0u8; 4];
        let mut token = 0u32;
        // SAFETY: every pointer/length pair comes from a live slice; the host writes one u32 into
        // `token`, which outlives the call.
        let status = unsafe {
            proxy_grpc_call(
                cluster.as_ptr(),
                cluster.len(),
                service.as_ptr(),
                service.len(),
                method.as_ptr(),
                method.len(),
                metadata.as_ptr(),
                metadata.len(),
                message.as_ptr(),
                message.len(),
                u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
                &mut token,
            )
        };
        status == proxy_wasm::types::Status::Ok
    }

    /// The ABI status and the serialised pairs of a header map.
    pub fn header_map_pairs(map: MapType) -> (u32, Vec<u8>) {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: plain ABI call with out-pointers to locals.
        let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
        (status, host_bytes(data, size))
    }

    /// The ABI status and the bytes of one header.
    pub fn header_map_value(map: MapType, name: &str) -> (u32, Vec<u8>) {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: plain ABI call with a valid key slice and out-pointers to locals.
        let status = unsafe {
            proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size)
        };
        (status, host_bytes(data, size))
    }
}

/// Wall-clock milliseconds since the Unix epoch as Envoy sees them (0 if unavailable).
pub fn now_ms() -> u64 {
    sys::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn log(level: LogLevel, message: &str) {
    let _ = sys::log(level, message);
}

/// All request headers, read in one host call and kept serialised (looked up by name on demand);
/// empty when unavailable.
pub fn request_headers() -> HeaderMap {
    let (status, bytes) = sys::header_map_pairs(MapType::HttpRequestHeaders);
    if status != 0 {
        return HeaderMap::default();
    }
    HeaderMap::new(bytes)
}

/// One header of a map (first value); `None` when absent or unavailable in this phase.
pub fn header_value(map: MapType, name: &str) -> Option<String> {
    let (status, bytes) = sys::header_map_value(map, name);
    (status == 0).then(|| into_text(bytes))
}

/// Header bytes as text, keeping the host's buffer as the string when it is UTF-8 (nearly
/// always); otherwise invalid bytes become U+FFFD.
fn into_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Several headers of a map in one host call (the whole map crosses once, only `names` are
/// decoded); each `None` when absent or unavailable in this phase.
pub fn header_values<const N: usize>(map: MapType, names: [&str; N]) -> [Option<String>; N] {
    let (status, bytes) = sys::header_map_pairs(map);
    if status != 0 {
        return std::array::from_fn(|_| None);
    }
    let map = HeaderMap::new(bytes);
    names.map(|name| map.first(name).map(str::to_owned))
}

pub fn set_request_header(name: &str, value: Option<&str>) {
    let _ = sys::set_map_value(MapType::HttpRequestHeaders, name, value);
}

pub fn set_response_header(name: &str, value: Option<&str>) {
    let _ = sys::set_map_value(MapType::HttpResponseHeaders, name, value);
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
    if sys::send_http_response(status, headers, Some(&body)).is_err() {
        log(
            LogLevel::Warn,
            &format!("could not send local reply {status}"),
        );
    }
}

/// A response body chunk read from Envoy at most once, by the first feature that needs its bytes;
/// the others (chat log, cache copy, limits) get the same bytes without another crossing.
#[derive(Debug)]
pub struct ResponseChunk {
    size: usize,
    read: Option<Result<Option<Bytes>, Status>>,
}

impl ResponseChunk {
    pub fn new(size: usize) -> Self {
        ResponseChunk { size, read: None }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// The chunk's bytes (`Ok(None)` for an empty chunk or when Envoy has none), read on first use.
    pub fn bytes(&mut self) -> Result<Option<&[u8]>, Status> {
        if self.size == 0 {
            return Ok(None);
        }
        let size = self.size;
        let read = self
            .read
            .get_or_insert_with(|| sys::get_buffer(BufferType::HttpResponseBody, 0, size));
        match read {
            Ok(bytes) => Ok(bytes.as_deref()),
            Err(e) => Err(*e),
        }
    }
}

// The host calls the features make, with the SDK's signatures (errors are the caller's to ignore).

pub fn get_buffer(
    kind: BufferType,
    start: usize,
    max_size: usize,
) -> Result<Option<Bytes>, Status> {
    sys::get_buffer(kind, start, max_size)
}

pub fn set_buffer(kind: BufferType, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
    sys::set_buffer(kind, start, size, value)
}

pub fn get_property(path: Vec<&str>) -> Result<Option<Bytes>, Status> {
    sys::get_property(path)
}

pub fn set_property(path: Vec<&str>, value: Option<&[u8]>) -> Result<(), Status> {
    sys::set_property(path, value)
}

pub fn get_shared_data(key: &str) -> Result<(Option<Bytes>, Option<u32>), Status> {
    sys::get_shared_data(key)
}

pub fn set_shared_data(key: &str, value: Option<&[u8]>, cas: Option<u32>) -> Result<(), Status> {
    sys::set_shared_data(key, value, cas)
}

pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, Status> {
    sys::define_metric(kind, name)
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    sys::increment_metric(id, offset)
}

pub fn resume_http_request() -> Result<(), Status> {
    sys::resume_http_request()
}

pub fn resume_http_response() -> Result<(), Status> {
    sys::resume_http_response()
}

pub fn send_http_response(
    status: u32,
    headers: Vec<(&str, &str)>,
    body: Option<&[u8]>,
) -> Result<(), Status> {
    sys::send_http_response(status, headers, body)
}

pub fn dispatch_http_call(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    body: Option<&[u8]>,
    trailers: Vec<(&str, &str)>,
    timeout: Duration,
) -> Result<u32, Status> {
    sys::dispatch_http_call(cluster, headers, body, trailers, timeout)
}

pub fn dispatch_grpc_call(
    cluster: &str,
    service: &str,
    method: &str,
    metadata: Vec<(&str, &[u8])>,
    message: Option<&[u8]>,
    timeout: Duration,
) -> Result<u32, Status> {
    sys::dispatch_grpc_call(cluster, service, method, metadata, message, timeout)
}

pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    sys::set_effective_context(context_id)
}

pub fn call_foreign_function(
    name: &str,
    arguments: Option<&[u8]>,
) -> Result<Option<Bytes>, Status> {
    sys::call_foreign_function(name, arguments)
}

pub fn set_tick_period(period: Duration) -> Result<(), Status> {
    sys::set_tick_period(period)
}

/// Whether Envoy accepts a gRPC call to `cluster` (sent through the raw ABI, which reports an
/// unknown cluster instead of letting the SDK panic; its answer reaches no context).
pub fn grpc_call_accepted(
    cluster: &str,
    service: &str,
    method: &str,
    message: &[u8],
    timeout: Duration,
) -> bool {
    sys::grpc_call_accepted(cluster, service, method, message, timeout)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    /// Every host call goes through this module (and its fake): no other file names the SDK's
    /// host calls, declares ABI imports, or uses the SDK's context helpers (which cross to Envoy
    /// and `unwrap` its statuses).
    #[test]
    fn only_host_rs_talks_to_envoy() {
        let forbidden = [
            concat!("hostcalls", "::"),
            concat!("extern ", "\"C\""),
            concat!("self", ".get_http_"),
            concat!("self", ".set_http_"),
            concat!("self", ".send_http_response"),
            concat!("self", ".resume_http_"),
            concat!("self", ".get_property"),
            concat!("self", ".set_property"),
            concat!("self", ".dispatch_"),
            concat!("self", ".get_shared_data"),
            concat!("self", ".set_shared_data"),
            concat!("self", ".get_current_time"),
            concat!("self", ".get_plugin_configuration"),
            concat!("self", ".set_tick_period"),
        ];
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut dirs = vec![src.clone()];
        let mut offenders = Vec::new();
        let mut scanned = 0;
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let rel = path
                    .strip_prefix(&src)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                if !rel.ends_with(".rs") || rel == "host.rs" || rel == "host/fake.rs" {
                    continue;
                }
                scanned += 1;
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    if let Some(p) = forbidden.iter().find(|p| line.contains(*p)) {
                        offenders.push(format!("src/{rel}:{}: {p}", n + 1));
                    }
                }
            }
        }
        assert!(scanned >= 10, "scanned only {scanned} files");
        assert!(
            offenders.is_empty(),
            "host calls outside host.rs (add a wrapper there):\n{}",
            offenders.join("\n")
        );
    }

    #[test]
    fn single_values_become_text_lossily() {
        assert_eq!(super::into_text(b"200".to_vec()), "200");
        assert_eq!(super::into_text(b"caf\xe9".to_vec()), "caf\u{fffd}");
    }
}
