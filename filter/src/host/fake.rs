//! A recording stand-in for Envoy, used by native builds (unit tests): the same functions as the
//! real backend, answered from per-thread state, and every call appended to a log. Tests set the
//! request (headers, body, properties), drive the HTTP context's callbacks and read back what the
//! filter did: the host calls it made (its VM crossings), local replies, metrics.

use proxy_wasm::types::{BufferType, Bytes, LogLevel, MapType, MetricType, Status};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// What the fake Envoy holds for the current thread.
#[derive(Debug, Default)]
pub struct State {
    /// Every host call in order, by name (the ABI function it stands for).
    pub calls: Vec<&'static str>,
    /// Every header-map read in order: `HttpRequestHeaders` for a whole map, `HttpRequestHeaders
    /// :path` for one header (`MapType` as debug-printed, then the name).
    pub header_reads: Vec<String>,
    pub now_ms: u64,
    /// Header maps by `MapType as u32`.
    pub maps: HashMap<u32, Vec<(String, String)>>,
    /// Buffers by `BufferType as u32`.
    pub buffers: HashMap<u32, Vec<u8>>,
    /// Properties by path joined with `.`.
    pub properties: HashMap<String, Vec<u8>>,
    pub shared: HashMap<String, (Vec<u8>, u32)>,
    /// Metric names by id (id = index + 1) and their values.
    pub metrics: Vec<(String, i64)>,
    /// Local replies sent: status and headers.
    pub replies: Vec<(u32, Vec<(String, String)>)>,
    pub next_token: u32,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Runs `f` on this thread's fake Envoy.
pub fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

/// Starts over: a fresh Envoy with nothing set.
pub fn reset() {
    with(|s| *s = State::default());
}

/// The host calls made since the last [`take_calls`] (or reset), and forgets them.
pub fn take_calls() -> Vec<&'static str> {
    with(|s| std::mem::take(&mut s.calls))
}

/// The header-map reads made since the last [`take_header_reads`] (or reset), and forgets them.
pub fn take_header_reads() -> Vec<String> {
    with(|s| std::mem::take(&mut s.header_reads))
}

fn record(name: &'static str) {
    with(|s| s.calls.push(name));
}

pub fn set_map(map: MapType, pairs: &[(&str, &str)]) {
    let pairs = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    with(|s| s.maps.insert(map as u32, pairs));
}

pub fn set_buffer_bytes(kind: BufferType, bytes: &[u8]) {
    with(|s| s.buffers.insert(kind as u32, bytes.to_vec()));
}

pub fn set_property_bytes(path: &str, value: &[u8]) {
    with(|s| s.properties.insert(path.to_string(), value.to_vec()));
}

/// Serialises a map the way the proxy-wasm ABI does (see `host::header_map`).
fn encode(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

pub fn header_map_pairs(map: MapType) -> (u32, Vec<u8>) {
    record("get_header_map_pairs");
    with(|s| s.header_reads.push(format!("{map:?}")));
    with(|s| match s.maps.get(&(map as u32)) {
        Some(pairs) => (0, encode(pairs)),
        None => (1, Vec::new()),
    })
}

pub fn header_map_value(map: MapType, name: &str) -> (u32, Vec<u8>) {
    record("get_header_map_value");
    with(|s| s.header_reads.push(format!("{map:?} {name}")));
    with(|s| {
        s.maps
            .get(&(map as u32))
            .and_then(|pairs| pairs.iter().find(|(k, _)| k == name))
            .map_or((1, Vec::new()), |(_, v)| (0, v.as_bytes().to_vec()))
    })
}

pub fn set_map_value(map: MapType, key: &str, value: Option<&str>) -> Result<(), Status> {
    record("replace_header_map_value");
    with(|s| {
        let pairs = s.maps.entry(map as u32).or_default();
        pairs.retain(|(k, _)| k != key);
        if let Some(v) = value {
            pairs.push((key.to_string(), v.to_string()));
        }
    });
    Ok(())
}

pub fn get_current_time() -> Result<SystemTime, Status> {
    record("get_current_time");
    Ok(SystemTime::UNIX_EPOCH + Duration::from_millis(with(|s| s.now_ms)))
}

pub fn log(_level: LogLevel, _message: &str) -> Result<(), Status> {
    record("log");
    Ok(())
}

pub fn get_buffer(
    kind: BufferType,
    start: usize,
    max_size: usize,
) -> Result<Option<Bytes>, Status> {
    record("get_buffer_bytes");
    with(|s| {
        let Some(buffer) = s.buffers.get(&(kind as u32)) else {
            return Ok(None);
        };
        let end = start.saturating_add(max_size).min(buffer.len());
        Ok(buffer.get(start.min(end)..end).map(<[u8]>::to_vec))
    })
}

pub fn set_buffer(kind: BufferType, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
    record("set_buffer_bytes");
    with(|s| {
        let buffer = s.buffers.entry(kind as u32).or_default();
        let start = start.min(buffer.len());
        let end = start.saturating_add(size).min(buffer.len());
        buffer.splice(start..end, value.iter().copied());
    });
    Ok(())
}

pub fn get_property(path: Vec<&str>) -> Result<Option<Bytes>, Status> {
    record("get_property");
    Ok(with(|s| s.properties.get(&path.join(".")).cloned()))
}

pub fn set_property(path: Vec<&str>, value: Option<&[u8]>) -> Result<(), Status> {
    record("set_property");
    with(|s| {
        s.properties
            .insert(path.join("."), value.unwrap_or_default().to_vec())
    });
    Ok(())
}

pub fn get_shared_data(key: &str) -> Result<(Option<Bytes>, Option<u32>), Status> {
    record("get_shared_data");
    Ok(with(|s| match s.shared.get(key) {
        Some((v, cas)) => (Some(v.clone()), Some(*cas)),
        None => (None, None),
    }))
}

pub fn set_shared_data(key: &str, value: Option<&[u8]>, cas: Option<u32>) -> Result<(), Status> {
    record("set_shared_data");
    with(|s| {
        let current = s.shared.get(key).map(|(_, c)| *c);
        if cas.is_some_and(|c| c != 0 && Some(c) != current) {
            return Err(Status::CasMismatch);
        }
        let next = current.unwrap_or(0) + 1;
        s.shared
            .insert(key.to_string(), (value.unwrap_or_default().to_vec(), next));
        Ok(())
    })
}

pub fn define_metric(_kind: MetricType, name: &str) -> Result<u32, Status> {
    record("define_metric");
    with(|s| {
        s.metrics.push((name.to_string(), 0));
        Ok(s.metrics.len() as u32)
    })
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    record("increment_metric");
    with(|s| {
        if let Some((_, v)) = s.metrics.get_mut((id as usize).wrapping_sub(1)) {
            *v += offset;
        }
    });
    Ok(())
}

/// The value of a metric by name (0 when never defined).
pub fn metric(name: &str) -> i64 {
    with(|s| {
        s.metrics
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .sum()
    })
}

pub fn resume_http_request() -> Result<(), Status> {
    record("continue_stream");
    Ok(())
}

pub fn resume_http_response() -> Result<(), Status> {
    record("continue_stream");
    Ok(())
}

pub fn send_http_response(
    status: u32,
    headers: Vec<(&str, &str)>,
    _body: Option<&[u8]>,
) -> Result<(), Status> {
    record("send_local_response");
    let headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    with(|s| s.replies.push((status, headers)));
    Ok(())
}

fn token() -> u32 {
    with(|s| {
        s.next_token += 1;
        s.next_token
    })
}

pub fn dispatch_http_call(
    _cluster: &str,
    _headers: Vec<(&str, &str)>,
    _body: Option<&[u8]>,
    _trailers: Vec<(&str, &str)>,
    _timeout: Duration,
) -> Result<u32, Status> {
    record("dispatch_http_call");
    Ok(token())
}

pub fn dispatch_grpc_call(
    _cluster: &str,
    _service: &str,
    _method: &str,
    _metadata: Vec<(&str, &[u8])>,
    _message: Option<&[u8]>,
    _timeout: Duration,
) -> Result<u32, Status> {
    record("grpc_call");
    Ok(token())
}

pub fn set_effective_context(_context_id: u32) -> Result<(), Status> {
    record("set_effective_context");
    Ok(())
}

pub fn call_foreign_function(
    _name: &str,
    _arguments: Option<&[u8]>,
) -> Result<Option<Bytes>, Status> {
    record("call_foreign_function");
    Ok(None)
}

pub fn set_tick_period(_period: Duration) -> Result<(), Status> {
    record("set_tick_period");
    Ok(())
}

/// The cluster probe: the fake knows every cluster.
pub fn grpc_call_accepted(
    _cluster: &str,
    _service: &str,
    _method: &str,
    _message: &[u8],
    _timeout: Duration,
) -> bool {
    record("grpc_call");
    true
}
