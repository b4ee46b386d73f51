//! Response cache glue: look up while the request is held, answer hits locally, copy fresh answers
//! as they stream through, and store them after the stream ended.
//!
//! Decisions live in `llm_forward_core::cache` (which requests, which key, what is stored, how a
//! hit is replayed); this module talks to Envoy:
//! - **worker cache**: a lookup first asks this worker's hot cache (`crate::hot_cache`), which keeps
//!   the entries the worker recently fetched or stored; a live entry is answered at once, with no
//!   call (`x-cache-source: worker`);
//! - **lookup**: `dispatch_http_call` to the `llm_forward_cache` cluster (`GET /entries/<key>`)
//!   with the configured timeout while the request is paused; a hit is sent with
//!   `send_http_response`, anything else (404, error, timeout) resumes the request (fail open);
//! - **store**: the HTTP context hands the finished entry to the worker's root context through a
//!   shared queue, and the root dispatches the `PUT` on its next tick. A call made by the HTTP
//!   context would be cancelled by Envoy when the client's stream ends; the root outlives it.

use crate::exchange::{Caller, Exchange, Step};
use crate::host;
use crate::plugin::Plugin;
use llm_forward_core::access::{is_json_content_type, KeyLocation};
use llm_forward_core::cache::{
    self as core_cache, credential_digest, credential_material, CacheCaller, Directive, Entry,
    FilterCache, Keying, Plan, Replay, CACHE_CLUSTER, CONTROL_HEADER, SOURCE_HEADER, STATUS_HEADER,
    TTL_HEADER,
};
use llm_forward_core::cache_key::{self, CacheScope, CachingField};
use llm_forward_core::config::FilterConfig;
use llm_forward_core::routing::route_path;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::time::Duration;

/// How often the root context sends queued stores.
pub const FLUSH_PERIOD: Duration = Duration::from_millis(20);
/// Stores waiting for the root; beyond this the oldest is dropped (counted as an error).
const MAX_QUEUED: usize = 256;
/// Shared-data key of the secret that keys credential scopes (see `CacheShared::scope_secret`).
const SCOPE_SECRET_KEY: &str = "llm_forward.cache.scope_secret";
/// Timeout of a store call (off the request path).
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// One store waiting to be sent.
#[derive(Debug)]
struct PendingStore {
    key: String,
    value: Vec<u8>,
}

fn counter(name: &str) -> Option<u32> {
    host::define_metric(MetricType::Counter, name).ok()
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = host::increment_metric(id, 1);
    }
}

/// What the cache keeps per worker: counters, the hot cache and the store queue.
#[derive(Debug, Default)]
pub struct CacheShared {
    hit: Option<u32>,
    /// Hits answered from the worker's hot cache (also counted in `hit`).
    hot_hit: Option<u32>,
    /// Entries this worker recently fetched or stored.
    pub hot: crate::hot_cache::WorkerCache,
    miss: Option<u32>,
    error: Option<u32>,
    bypass: Option<u32>,
    store: Option<u32>,
    queue: RefCell<VecDeque<PendingStore>>,
    /// Store calls sent and not answered yet.
    in_flight: Cell<usize>,
}

impl CacheShared {
    /// Counters `llm_forward.cache.<hit|hot_hit|miss|error|bypass|store>_total`, defined only when
    /// the cache is on.
    pub fn configure(config: &FilterConfig) -> CacheShared {
        if config.cache.is_none() {
            return CacheShared::default();
        }
        CacheShared {
            hit: counter("llm_forward.cache.hit_total"),
            hot_hit: counter("llm_forward.cache.hot_hit_total"),
            hot: crate::hot_cache::WorkerCache::configure(config.cache.as_ref()),
            miss: counter("llm_forward.cache.miss_total"),
            error: counter("llm_forward.cache.error_total"),
            bypass: counter("llm_forward.cache.bypass_total"),
            store: counter("llm_forward.cache.store_total"),
            ..CacheShared::default()
        }
    }

    /// The per-deployment secret that keys credential scopes: 32 random bytes in shared data,
    /// made by the first worker that needs it (WASI `random_get`). Read on each use rather than
    /// kept per worker: when two workers race to create it, the last write wins and every worker
    /// reads that one from then on. `None` when no randomness or shared data is available: such
    /// callers are then not cached at all (never a guessable scope).
    fn scope_secret(&self) -> Option<Vec<u8>> {
        if let Ok((Some(v), _)) = host::get_shared_data(SCOPE_SECRET_KEY) {
            if v.len() == 32 {
                return Some(v);
            }
        }
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).ok()?;
        host::set_shared_data(SCOPE_SECRET_KEY, Some(&fresh), None).ok()?;
        match host::get_shared_data(SCOPE_SECRET_KEY) {
            Ok((Some(v), _)) if v.len() == 32 => Some(v),
            _ => None,
        }
    }

    fn enqueue(&self, store: PendingStore) {
        let mut q = self.queue.borrow_mut();
        if q.len() >= MAX_QUEUED {
            q.pop_front();
            bump(self.error);
        }
        q.push_back(store);
    }

    /// Root context, on tick: send every queued store.
    pub fn flush(&self, ttl_seconds: u64) {
        let ttl = ttl_seconds.to_string();
        loop {
            let Some(item) = self.queue.borrow_mut().pop_front() else {
                return;
            };
            let path = format!("/entries/{}", item.key);
            let headers = vec![
                (":method", "PUT"),
                (":path", path.as_str()),
                (":authority", CACHE_CLUSTER),
                ("content-type", "application/octet-stream"),
                (TTL_HEADER, ttl.as_str()),
            ];
            match host::dispatch_http_call(
                CACHE_CLUSTER,
                headers,
                Some(&item.value),
                vec![],
                STORE_TIMEOUT,
            ) {
                Ok(_) => self.in_flight.set(self.in_flight.get().saturating_add(1)),
                Err(_) => bump(self.error),
            }
        }
    }

    /// Root context: a store call answered.
    pub fn on_store_response(&self) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        let status = host::header_value(MapType::HttpCallResponseHeaders, ":status");
        match status.as_deref() {
            Some("204") | Some("200") => bump(self.store),
            _ => bump(self.error),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the request body.
    Reading,
    /// Lookup sent; the request is paused.
    LookingUp,
    /// Upstream answers; its body is copied when `store` is set.
    Forwarded,
    /// Answered from the cache.
    Hit,
    /// Keyed; the lookup waits for the fleet rate-limit admission (a hit must not skip it).
    Deferred,
    /// Nothing more to do.
    Done,
}

/// The cache's state for one request.
#[derive(Debug)]
pub struct CacheRequest {
    keying: Keying,
    /// The request is not cached; its body is only read to remove a `caching` field.
    strip_only: bool,
    directive: Directive,
    phase: Phase,
    plan: Plan,
    key: Option<String>,
    want_stream: bool,
    include_usage: bool,
    model: Option<String>,
    /// The response copy; `None` once it is known not to be stored.
    copy: Option<Vec<u8>>,
    content_type: Option<String>,
    /// Fleet limits: the admission call is in flight, so no hit may be sent yet.
    hold: bool,
}

fn settings(plugin: &Plugin) -> Option<&FilterCache> {
    plugin.config.cache.as_ref()
}

impl CacheRequest {
    /// Headers phase: `Some` when the request may be cached (its body is then needed).
    pub fn start(plugin: &Plugin, ex: &Exchange) -> Option<CacheRequest> {
        let cache = settings(plugin)?;
        let route = plugin.config.routes.get(ex.route)?;
        let rel = route_path(&route.prefix, &ex.path);
        let (keying, strip_only) = match cache.classify(route.kind, rel, &ex.method) {
            Some(keying) => (keying, false),
            // Not cached, but `caching` must still not reach the upstream.
            None if cache.strips_caching_field(route.kind, rel, &ex.method) => (Keying::Raw, true),
            None => return None,
        };
        // Multipart and form bodies stream through untouched (never held, never keyed).
        if (strip_only || matches!(keying, Keying::Json(_)))
            && !is_json_content_type(ex.request_header("content-type"))
        {
            return None;
        }
        Some(CacheRequest {
            keying,
            strip_only,
            directive: Directive::parse(ex.request_header(CONTROL_HEADER)),
            phase: Phase::Reading,
            hold: false,
            plan: Plan::Bypass,
            key: None,
            want_stream: false,
            include_usage: false,
            model: None,
            copy: None,
            content_type: None,
        })
    }

    /// Whether the body must be held and read before the request goes on.
    pub fn needs_body(&self) -> bool {
        self.phase == Phase::Reading
    }

    /// End of the request (body read, or no body): decide, remove `caching`, look up.
    /// `Step::Wait` when a lookup was sent (the request stays paused until its answer) or when
    /// the worker's hot cache answered (the local reply is sent; the request stays paused).
    pub fn on_request_end(&mut self, plugin: &Plugin, ex: &mut Exchange, body: &[u8]) -> Step {
        self.phase = Phase::Done;
        let Some(cache) = settings(plugin) else {
            return Step::Continue;
        };
        let Some(route) = plugin.config.routes.get(ex.route) else {
            return Step::Continue;
        };
        if self.strip_only {
            if cache_key::caching_field_present(body) == Some(true) {
                if ex.body.is_none() {
                    ex.body = serde_json::from_slice(body).ok();
                }
                if let Some(json) = ex.body.as_mut() {
                    if cache_key::take_caching_flag(json).removed() {
                        ex.body_changed = true;
                    }
                }
            }
            return self.bypass(plugin, ex);
        }
        let default = cache.default_request_caching;
        // The plan is decided before any key is computed: a bypassed request never hashes its body.
        let key = match self.keying {
            Keying::Json(api) => {
                if ex.body.is_none() {
                    // Most requests carry no `caching` field and are not cached by default: a
                    // key scan tells without building the body's `Value`.
                    let absent = cache_key::caching_field_present(body) == Some(false);
                    if absent
                        && core_cache::plan(
                            self.directive,
                            CachingField::Absent,
                            default,
                            self.keying,
                        ) == Plan::Bypass
                    {
                        return self.bypass(plugin, ex);
                    }
                    ex.body = serde_json::from_slice(body).ok();
                }
                let Some(json) = ex.body.as_mut() else {
                    return self.bypass(plugin, ex);
                };
                let field = cache_key::take_caching_flag(json);
                if field.removed() {
                    ex.body_changed = true;
                }
                self.plan = core_cache::plan(self.directive, field, default, self.keying);
                if self.plan == Plan::Bypass {
                    return self.bypass(plugin, ex);
                }
                let (stream, usage) = core_cache::stream_mode(json);
                self.want_stream = stream;
                self.include_usage = usage;
                self.model = json
                    .get("model")
                    .and_then(|m| m.as_str())
                    .map(str::to_string);
                // Computed only now: a bypassed request never hashes its credential.
                let Some(scope) = scope_of(plugin, cache, ex) else {
                    return self.bypass(plugin, ex);
                };
                ex.body
                    .as_ref()
                    .and_then(|json| core_cache::json_key(api, &scope, &route.prefix, json))
            }
            Keying::Raw => {
                self.plan =
                    core_cache::plan(self.directive, CachingField::Absent, default, self.keying);
                if self.plan == Plan::Bypass {
                    return self.bypass(plugin, ex);
                }
                let Some(scope) = scope_of(plugin, cache, ex) else {
                    return self.bypass(plugin, ex);
                };
                Some(cache_key::general_cache_key(
                    &scope,
                    &route.prefix,
                    &ex.method,
                    &ex.path,
                    body,
                ))
            }
        };
        let Some(key) = key else {
            return self.bypass(plugin, ex);
        };
        self.key = Some(key);
        ex.cache_status = Some("miss");
        if self.plan == Plan::Store {
            self.phase = Phase::Forwarded;
            bump(plugin.cache.miss);
            return Step::Continue;
        }
        if self.hold {
            // Resumed by `after_admission` once the rate-limit service admitted the request.
            self.phase = Phase::Deferred;
            return Step::Wait;
        }
        if self.answer_from_worker(plugin, ex) {
            return Step::Wait;
        }
        self.lookup(plugin, cache)
    }

    /// Fleet limits: hold hits and lookups until the admission call answers.
    pub fn hold_until_admitted(&mut self) {
        self.hold = true;
    }

    /// The lookup was deferred by [`CacheRequest::hold_until_admitted`].
    pub fn is_deferred(&self) -> bool {
        self.phase == Phase::Deferred
    }

    /// The request was admitted: answer from the worker's cache or send the lookup now. `Wait`:
    /// answered (`ex.local_reply`) or a lookup is in flight; `Continue`: forward the request.
    pub fn after_admission(&mut self, plugin: &Plugin, ex: &mut Exchange) -> Step {
        self.hold = false;
        if self.phase != Phase::Deferred {
            return Step::Continue;
        }
        let Some(cache) = settings(plugin) else {
            self.phase = Phase::Forwarded;
            return Step::Continue;
        };
        if self.answer_from_worker(plugin, ex) {
            return Step::Wait;
        }
        self.phase = Phase::Forwarded;
        self.lookup(plugin, cache)
    }

    /// The worker's hot cache: true when it held a live entry and the hit was sent.
    fn answer_from_worker(&mut self, plugin: &Plugin, ex: &mut Exchange) -> bool {
        let Some(key) = self.key.as_deref() else {
            return false;
        };
        let (want_stream, include_usage) = (self.want_stream, self.include_usage);
        let model = self.model.as_deref();
        let replay = plugin.cache.hot.with(key, host::now_ms(), |entry| {
            core_cache::replay(entry, want_stream, include_usage, model)
        });
        let Some(Some(replay)) = replay else {
            return false;
        };
        if !self.answer(plugin, ex, &replay, "worker") {
            return false;
        }
        bump(plugin.cache.hot_hit);
        true
    }

    /// Sends a hit. False when Envoy refused the local reply (the request then goes on).
    fn answer(
        &mut self,
        plugin: &Plugin,
        ex: &mut Exchange,
        replay: &Replay,
        source: &str,
    ) -> bool {
        let mut headers = vec![
            ("content-type", replay.content_type.as_str()),
            (STATUS_HEADER, "HIT"),
            (SOURCE_HEADER, source),
        ];
        if replay.content_type.starts_with("text/event-stream") {
            headers.push(("cache-control", "no-cache"));
        }
        headers.extend(ex.reply_headers.iter().map(|(k, v)| (*k, v.as_str())));
        if host::send_http_response(replay.status, headers, Some(&replay.body)).is_err() {
            bump(plugin.cache.error);
            return false;
        }
        bump(plugin.cache.hit);
        self.phase = Phase::Hit;
        self.key = None;
        ex.status = replay.status;
        ex.cache_status = Some("hit");
        ex.local_reply = true;
        ex.response_content_type = Some(replay.content_type.clone());
        // The record and the usage metrics take the stored answer instead of re-reading the reply.
        if replay.answer.is_some() {
            ex.answer = replay.answer.clone();
        }
        true
    }

    fn bypass(&mut self, plugin: &Plugin, ex: &mut Exchange) -> Step {
        self.plan = Plan::Bypass;
        ex.cache_status = Some("bypass");
        bump(plugin.cache.bypass);
        Step::Continue
    }

    fn lookup(&mut self, plugin: &Plugin, cache: &FilterCache) -> Step {
        let Some(key) = self.key.as_deref() else {
            return Step::Continue;
        };
        let path = format!("/entries/{key}");
        let headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", CACHE_CLUSTER),
        ];
        let timeout = Duration::from_millis(cache.timeout_ms);
        match host::dispatch_http_call(CACHE_CLUSTER, headers, None, vec![], timeout) {
            Ok(_) => {
                self.phase = Phase::LookingUp;
                Step::Wait
            }
            Err(e) => {
                host::log(LogLevel::Debug, &format!("cache lookup not sent: {e:?}"));
                bump(plugin.cache.error);
                self.phase = Phase::Forwarded;
                Step::Continue
            }
        }
    }

    /// The lookup answered (or failed: no headers). Returns true when the request was answered
    /// from the cache; otherwise the caller resumes it.
    pub fn on_lookup_response(
        &mut self,
        plugin: &Plugin,
        ex: &mut Exchange,
        body_size: usize,
    ) -> bool {
        if self.phase != Phase::LookingUp {
            return false;
        }
        self.phase = Phase::Forwarded;
        let status = host::header_value(MapType::HttpCallResponseHeaders, ":status");
        match status.as_deref() {
            Some("200") => {}
            Some("404") => {
                bump(plugin.cache.miss);
                return false;
            }
            _ => {
                // Timeout, cache down, backend error: a miss that is counted apart.
                bump(plugin.cache.error);
                return false;
            }
        }
        let bytes = host::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let Some(entry) = Entry::decode(&bytes) else {
            bump(plugin.cache.error);
            return false;
        };
        let replay = core_cache::replay(
            &entry,
            self.want_stream,
            self.include_usage,
            self.model.as_deref(),
        );
        let Some(replay) = replay else {
            bump(plugin.cache.error);
            return false;
        };
        let key = self.key.take();
        if !self.answer(plugin, ex, &replay, "service") {
            self.key = key;
            return false;
        }
        // Kept by this worker: the next identical request is answered without a call.
        if let Some(key) = key {
            plugin
                .cache
                .hot
                .put(&key, entry, bytes.len(), host::now_ms());
        }
        true
    }

    /// True once the request was answered from the cache (its response is the local reply).
    pub fn is_hit(&self) -> bool {
        self.phase == Phase::Hit
    }

    /// Response headers: say what the cache did; start copying a storable answer.
    pub fn on_response_headers(&mut self, plugin: &Plugin, ex: &mut Exchange) {
        match self.phase {
            Phase::Hit => return,
            _ if self.plan == Plan::Bypass => {
                host::set_response_header(STATUS_HEADER, Some("BYPASS"));
                return;
            }
            _ => host::set_response_header(STATUS_HEADER, Some("MISS")),
        }
        if self.key.is_none() || !(200..300).contains(&ex.status) {
            self.key = None;
            return;
        }
        let content_type = match ex.response_content_type.clone() {
            Some(ct) => Some(ct),
            None => {
                let ct = host::header_value(MapType::HttpResponseHeaders, "content-type");
                ex.response_content_type = ct.clone();
                ct
            }
        };
        self.content_type = content_type;
        let _ = plugin;
        self.copy = Some(Vec::new());
    }

    /// Response body: copy the chunk (bounded); at the end, queue the entry for the root.
    pub fn on_response_chunk(
        &mut self,
        plugin: &Plugin,
        ex: &Exchange,
        chunk: &mut host::ResponseChunk,
        end_of_stream: bool,
    ) {
        let body_size = chunk.size();
        let Some(cache) = settings(plugin) else {
            return;
        };
        let Some(copy) = self.copy.as_mut() else {
            return;
        };
        if body_size > 0 {
            let limit = cache.max_entry_bytes as usize;
            if copy.len().saturating_add(body_size) > limit {
                // Too big to store: stop copying, let the rest flow.
                self.copy = None;
                self.key = None;
                return;
            }
            match chunk.bytes() {
                Ok(Some(chunk)) => copy.extend_from_slice(chunk),
                Ok(None) => {}
                Err(_) => {
                    self.copy = None;
                    self.key = None;
                    return;
                }
            }
        }
        if !end_of_stream {
            return;
        }
        let (Some(body), Some(key)) = (self.copy.take(), self.key.take()) else {
            return;
        };
        let created = host::now_ms() / 1000;
        let entry = Entry::from_response(
            self.keying,
            ex.status,
            self.content_type.as_deref(),
            body,
            created,
        );
        if let Some(entry) = entry {
            let value = entry.encode();
            // Also kept by this worker (replacing an older entry: `refresh`).
            plugin
                .cache
                .hot
                .put(&key, entry, value.len(), host::now_ms());
            plugin.cache.enqueue(PendingStore { key, value });
        }
    }
}

/// The cache scope of a request: by the forward key for authenticated callers, by a keyed hash of
/// the credential they sent for everyone else (`llm_forward_core::cache::scope`). `None` when the
/// credential cannot be hashed (no secret): the request is then not cached.
fn scope_of(plugin: &Plugin, cache: &FilterCache, ex: &Exchange) -> Option<CacheScope> {
    if let Some(Caller {
        level,
        key_name: Some(name),
    }) = ex.caller.as_ref()
    {
        let caller = CacheCaller::Forward {
            level: *level,
            key_name: name,
        };
        return Some(core_cache::scope_for(cache.scope, caller));
    }
    let query_name = match plugin.access.rules.route(ex.route).map(|r| &r.location) {
        Some(KeyLocation::Query(name)) => Some(name.as_str()),
        _ => None,
    };
    let digest = match credential_material(&ex.request_headers, &ex.path, query_name) {
        Some(material) => Some(credential_digest(&plugin.cache.scope_secret()?, &material)),
        None => None,
    };
    let caller = CacheCaller::Unauthenticated {
        credential: digest.as_deref(),
    };
    Some(core_cache::scope_for(cache.scope, caller))
}
