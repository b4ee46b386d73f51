//! The per-request context. Each callback reads what it needs from Envoy once, hands it to the
//! features in a fixed order, and applies their answer. Features live in their own modules and talk
//! to each other only through [`Exchange`].
//!
//! Phase order: request headers (route, access, limits) → request body, only when a feature needs
//! it (model permission and routing, cache lookup, `stream_options` injection) → response headers →
//! response body (SSE extraction, cache copy) → log (record, token charge, cache store).

use crate::chatlog::ChatLog;
use crate::exchange::{Exchange, LocalReply, Step};
use crate::host::{self, HeaderMap};
use crate::memory::Use;
use crate::plugin::Plugin;
use llm_forward_core::headers::HeaderLookup;
use llm_forward_core::routing::match_route;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;

pub struct RequestFilter {
    plugin: Rc<Plugin>,
    /// None when no configured route matched (Envoy answers 404 itself) or after a local reply.
    exchange: Option<Exchange>,
    /// The request is held until its body has been read.
    reading_body: bool,
    /// Chat logs and usage metrics (response extraction fills `Exchange::answer`).
    chatlog: Option<ChatLog>,
    /// Response cache: lookup while held, hit replies, copy of the answer for storing.
    cache: Option<crate::cache::CacheRequest>,
    /// Rate limits, token quotas and pacing of this request.
    limits: Option<crate::limiter::LimitRequest>,
    /// Envoy's id of this context (the root's tick resumes paced streams by it).
    context_id: u32,
    /// The held body must be read (model check or routing): past the memory budget it is 413,
    /// not forwarded unread.
    body_required: bool,
    /// Fleet limits: the request was fully read (or needs no reading) and waits only for the
    /// rate-limit service's answer to go on.
    ready_after_rls: bool,
}

impl RequestFilter {
    pub fn new(plugin: Rc<Plugin>) -> Self {
        RequestFilter {
            plugin,
            exchange: None,
            reading_body: false,
            chatlog: None,
            cache: None,
            limits: None,
            context_id: 0,
            body_required: false,
            ready_after_rls: false,
        }
    }

    pub fn with_context_id(mut self, context_id: u32) -> Self {
        self.context_id = context_id;
        self
    }

    /// The request goes upstream now: the upstream key replaces the forward key. Every path that
    /// lets the request continue calls this first (a cache hit or a local reply never does).
    fn forward(&mut self) {
        if let Some(ex) = self.exchange.as_mut() {
            self.plugin.access.swap_key(ex);
        }
    }

    fn reply(&mut self, reply: LocalReply) -> Action {
        self.plugin.metrics.count_local_reply(reply.status);
        let mut extra: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(ex) = self.exchange.as_ref() {
            for (k, v) in &ex.reply_headers {
                if !extra.iter().any(|(name, _)| name == k) {
                    extra.push((k, v.as_str()));
                }
            }
        }
        host::send_error(reply.status, &reply.message, reply.kind, reply.code, &extra);
        if let Some(ex) = self.exchange.as_mut() {
            ex.status = reply.status;
            ex.local_reply = true;
            ex.response_content_type = Some("application/json".into());
        }
        Action::Pause
    }

    /// Whether any feature needs the request body before the request may go upstream.
    fn needs_body(&self, ex: &Exchange) -> bool {
        self.plugin.access.needs_body(&self.plugin.config, ex)
            || self.cache.as_ref().is_some_and(|c| c.needs_body())
            || self.limits.as_ref().is_some_and(|l| l.needs_body(ex))
    }

    /// The held body does not fit the worker's memory budget (`crate::memory`): 413 when it must
    /// be read, otherwise it flows on unread (the cache and usage injection skip this request).
    fn over_budget(&mut self) -> Action {
        self.reading_body = false;
        if self.body_required {
            return self.reply(too_large());
        }
        self.cache = None;
        self.plugin
            .memory
            .reserve(self.context_id, Use::RequestBody, 0);
        if self.rls_waiting() {
            // Fleet limits: still held until the rate-limit service answers.
            self.ready_after_rls = true;
            return Action::Pause;
        }
        self.forward();
        Action::Continue
    }

    /// The cache's turn at the end of the request (after access and logs saw the body): it removes
    /// `caching` from `Exchange::body` and may send a lookup. True when the request must stay
    /// paused until the lookup answers.
    fn cache_request_end(&mut self, body: &[u8]) -> bool {
        let rls_waiting = self.rls_waiting();
        let (Some(cache), Some(ex)) = (self.cache.as_mut(), self.exchange.as_mut()) else {
            return false;
        };
        if rls_waiting {
            // A hit must not be sent before the rate-limit service admitted the request.
            cache.hold_until_admitted();
        }
        cache.on_request_end(&self.plugin, ex, body) == Step::Wait
    }

    /// Fleet limits: the admission call is still in flight.
    fn rls_waiting(&self) -> bool {
        self.limits.as_ref().is_some_and(|l| l.waiting())
    }
}

impl Context for RequestFilter {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        // The only HTTP calls an HTTP context makes are cache lookups.
        let (Some(cache), Some(ex)) = (self.cache.as_mut(), self.exchange.as_mut()) else {
            self.forward();
            let _ = host::resume_http_request();
            return;
        };
        if ex.local_reply {
            // Refused meanwhile (fleet limits answered first).
            return;
        }
        if !cache.on_lookup_response(&self.plugin, ex, body_size) {
            if self.rls_waiting() {
                // The rate-limit answer resumes (or refuses) the request.
                self.ready_after_rls = true;
                return;
            }
            self.forward();
            let _ = host::resume_http_request();
        }
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        // The only gRPC calls an HTTP context makes are fleet-limit admissions.
        let (Some(limits), Some(ex)) = (self.limits.as_mut(), self.exchange.as_mut()) else {
            return;
        };
        let Some(step) =
            limits.on_rls_response(&self.plugin, ex, token_id, status_code, response_size)
        else {
            return;
        };
        if ex.local_reply {
            // Answered meanwhile (a cache hit): nothing to resume.
            return;
        }
        if step != Step::Wait && !matches!(step, Step::Reply(_)) {
            // Admitted: a deferred cache lookup goes now (it resumes or answers the request).
            if let Some(cache) = self.cache.as_mut().filter(|c| c.is_deferred()) {
                self.ready_after_rls = false;
                if cache.after_admission(&self.plugin, ex) == Step::Wait {
                    // Answered from the worker's cache, or the lookup's answer resumes it.
                    return;
                }
                self.forward();
                let _ = host::resume_http_request();
                return;
            }
        }
        match step {
            Step::Reply(reply) => {
                self.reading_body = false;
                self.reply(reply);
            }
            _ if self.ready_after_rls => {
                self.ready_after_rls = false;
                self.forward();
                let _ = host::resume_http_request();
            }
            // Still reading the body or waiting for the cache: that phase goes on by itself.
            _ => {}
        }
    }
}

impl HttpContext for RequestFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // A route with nothing to do costs its counter only (`crate::idle`).
        let idle = &self.plugin.idle;
        if let Some(route) = idle.catch_all() {
            self.plugin.metrics.count_request(route);
            return Action::Continue;
        }
        // Read the whole map once (later phases may not be allowed to read request headers),
        // unless every route needs `:path` alone (usage metrics only, or idle): then no feature
        // reads the method or another header, and they stay empty.
        let (path, method, headers) = if idle.path_only() {
            let path = host::header_value(MapType::HttpRequestHeaders, ":path");
            (
                path.unwrap_or_else(|| "/".into()),
                "".into(),
                HeaderMap::default(),
            )
        } else {
            let headers = host::request_headers();
            let path = headers.first(":path").unwrap_or("/").to_string();
            let method = crate::exchange::method(headers.first(":method").unwrap_or("GET"));
            (path, method, headers)
        };
        let Some(route) = match_route(&self.plugin.config.routes, &path) else {
            return Action::Continue;
        };
        self.plugin.metrics.count_request(route);
        if self.plugin.idle.route(route) {
            return Action::Continue;
        }
        let mut ex = Exchange {
            route,
            method,
            path,
            request_headers: headers,
            // Only the chat record, limits and key rotation read the arrival time: no host call
            // otherwise (they fall back to reading the clock themselves when it is 0).
            started_ms: if self.plugin.config.logging.chat
                || !self.plugin.config.limits.is_empty()
                || self.plugin.access.rules.upstream_count() > 1
            {
                host::now_ms()
            } else {
                0
            },
            ..Exchange::default()
        };
        // Access first (IP list, key swap): it sets `caller` for the features after it.
        let mut step = self
            .plugin
            .access
            .on_request_headers(&self.plugin.config, &mut ex);
        // Then limits (token quota check, request limit; fills `reply_headers`), before anything
        // costly.
        if step == Step::Continue {
            let (limits, limit_step) =
                crate::limiter::LimitRequest::start(&self.plugin, &mut ex, self.context_id);
            self.limits = limits;
            // `Wait`: the admission call is in flight; the request is held below until it answers.
            if limit_step != Step::Wait {
                step = limit_step;
            }
        }
        self.cache = crate::cache::CacheRequest::start(&self.plugin, &ex);
        let needs_body = !end_of_stream && self.needs_body(&ex);
        if step == Step::Continue {
            step =
                self.plugin
                    .access
                    .check_model_at_headers(&self.plugin.config, &ex, end_of_stream);
        }
        self.body_required = needs_body && self.plugin.access.needs_body(&self.plugin.config, &ex);
        let mut needs_body = needs_body;
        // A declared body (`content-length`, looked up only for a body to be held) that cannot fit
        // the worker's memory budget is refused or not held.
        let declared = || {
            ex.request_header("content-length")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let memory = &self.plugin.memory;
        if needs_body
            && step == Step::Continue
            && !memory.fits(self.context_id, Use::RequestBody, declared())
        {
            memory.count_refusal();
            if self.body_required {
                step = Step::Reply(too_large());
            } else {
                needs_body = false;
                self.cache = None;
            }
        }
        self.chatlog = self
            .plugin
            .config
            .routes
            .get(route)
            .and_then(|r| ChatLog::start(&self.plugin, r, &ex));
        self.exchange = Some(ex);
        if let Step::Reply(reply) = step {
            return self.reply(reply);
        }
        if end_of_stream && self.cache_request_end(&[]) {
            return Action::Pause;
        }
        if needs_body {
            // Held here (allow_on_headers_stop_iteration); the body callbacks still arrive.
            self.reading_body = true;
            return Action::Pause;
        }
        if self.rls_waiting() {
            self.ready_after_rls = true;
            return Action::Pause;
        }
        self.forward();
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.reading_body {
            // Flowing to the upstream untouched; the log copies it (bounded) when it needs it.
            if let (Some(log), Some(ex)) = (self.chatlog.as_mut(), self.exchange.as_mut()) {
                log.on_request_chunk(ex, body_size, end_of_stream);
            }
            if self.rls_waiting() {
                // Held until the rate-limit service answers: `Continue` here would let the
                // headers and body go upstream before the decision.
                return Action::Pause;
            }
            return Action::Continue;
        }
        let plugin = Rc::clone(&self.plugin);
        let memory = &plugin.memory;
        if !memory.reserve(self.context_id, Use::RequestBody, body_size as u64) {
            return self.over_budget();
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.reading_body = false;
        let _body = host::get_buffer(BufferType::HttpRequestBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        // The features below may parse the body into a `Value`, which can cost many times its
        // size (`[0,0,…]`): reserved before any parse.
        let json = self.exchange.as_ref().is_some_and(|ex| {
            llm_forward_core::access::is_json_content_type(ex.request_header("content-type"))
        });
        let parse_cost = if json {
            llm_forward_core::memory::json_parse_cost(&_body)
        } else {
            0
        };
        let held = (body_size as u64).saturating_add(parse_cost);
        if !memory.reserve(self.context_id, Use::RequestBody, held) {
            return self.over_budget();
        }
        // Parses the JSON body once into `Exchange::body`, checks and routes the model.
        if let Some(ex) = self.exchange.as_mut() {
            let step = self
                .plugin
                .access
                .on_request_body(&self.plugin.config, ex, &_body);
            if let Step::Reply(reply) = step {
                return self.reply(reply);
            }
        }
        if let (Some(log), Some(ex)) = (self.chatlog.as_mut(), self.exchange.as_mut()) {
            log.on_request_body(ex, &_body);
        }
        // `stream_options.include_usage` for token quotas.
        if let (Some(limits), Some(ex)) = (self.limits.as_mut(), self.exchange.as_mut()) {
            limits.on_request_body(ex, &_body);
        }
        // Last in the body phase: features that changed `Exchange::body` get it written back.
        let waiting = self.cache_request_end(&_body);
        if let Some(ex) = self.exchange.as_mut() {
            crate::access::write_back_body(ex, body_size);
            // Only the chat record reads the parsed body later; otherwise it goes now.
            if self.chatlog.is_none() {
                ex.body = None;
            }
            let kept = if ex.body.is_some() { parse_cost } else { 0 };
            memory.reserve(self.context_id, Use::RequestBody, kept);
        }
        if waiting {
            // Resumed (or answered) when the cache lookup returns.
            return Action::Pause;
        }
        if self.rls_waiting() {
            // Resumed (or refused) when the rate-limit service answers.
            self.ready_after_rls = true;
            return Action::Pause;
        }
        self.forward();
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.reading_body {
            // The body ended with trailers instead of end-of-stream: the body phase never saw its
            // end, so the model check, cache lookup and key swap did not run. JSON APIs never send
            // request trailers; refuse rather than forward an unchecked request.
            self.reading_body = false;
            return self.reply(LocalReply::new(
                400,
                "Request trailers are not supported on this endpoint.",
                "invalid_request_error",
                "unsupported_trailers",
            ));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(ex) = self.exchange.as_mut() {
            if !needs_response_headers(
                ex,
                self.chatlog.as_ref(),
                self.limits.is_some(),
                self.cache.is_some(),
            ) {
                if let Some(log) = self.chatlog.as_mut() {
                    log.on_response_headers_unread(ex);
                }
                return Action::Continue;
            }
            // Logs and limits also want `content-type`: then one read of the whole (small) map
            // costs fewer VM crossings than two single-value reads.
            let status = if ex.local_reply {
                // Our own reply: status and content type were set when it was sent.
                Some(ex.status)
            } else if self.chatlog.is_some() || self.limits.is_some() {
                let [status, content_type] =
                    host::header_values(MapType::HttpResponseHeaders, [":status", "content-type"]);
                ex.response_content_type = Some(content_type.unwrap_or_default());
                status.and_then(|s| s.parse().ok())
            } else {
                host::header_value(MapType::HttpResponseHeaders, ":status")
                    .and_then(|s| s.parse().ok())
            };
            ex.status = status.unwrap_or(0);
            self.plugin.access.on_response_headers(ex);
            if let Some(log) = self.chatlog.as_mut() {
                log.on_response_headers(ex);
            }
            if let Some(cache) = self.cache.as_mut() {
                cache.on_response_headers(&self.plugin, ex);
            }
            if let Some(limits) = self.limits.as_mut() {
                limits.on_response_headers(ex, self.chatlog.is_some());
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Chunks flow on untouched (Continue); the log reads them as they pass and fills
        // `Exchange::answer` at the end of the stream. Features using the answer come after it.
        // Read from Envoy at most once, by the first feature that wants the bytes.
        let mut chunk = host::ResponseChunk::new(body_size);
        if let (Some(log), Some(ex)) = (self.chatlog.as_mut(), self.exchange.as_mut()) {
            log.on_response_chunk(ex, &mut chunk, end_of_stream);
        }
        if let (Some(cache), Some(ex)) = (self.cache.as_mut(), self.exchange.as_ref()) {
            cache.on_response_chunk(&self.plugin, ex, &mut chunk, end_of_stream);
        }
        // Last: it may rewrite the chunk (usage the client did not ask for) or hold it (pacing).
        if let (Some(limits), Some(ex)) = (self.limits.as_mut(), self.exchange.as_mut()) {
            return limits.on_response_body(&self.plugin, ex, &mut chunk, end_of_stream);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        // First: completes `Exchange::answer` when the stream was cut; then the record and counters.
        if let (Some(log), Some(ex)) = (self.chatlog.as_mut(), self.exchange.as_mut()) {
            if let Some(route) = self.plugin.config.routes.get(ex.route) {
                log.on_log(&self.plugin, route, ex);
            }
        }
        // After the log completed `Exchange::answer`: charge token quotas.
        if let (Some(limits), Some(ex)) = (self.limits.as_mut(), self.exchange.as_mut()) {
            limits.on_log(&self.plugin, ex);
        }
    }
}

/// Whether a feature needs the response's status or content type. Usage metrics alone do not (the
/// body tells JSON from SSE, `ChatLog::reads_without_response_headers`); an upstream key (cooled
/// down on a failure), a limit or the cache do, and so does a local reply's own bookkeeping.
fn needs_response_headers(
    ex: &Exchange,
    chatlog: Option<&ChatLog>,
    limits: bool,
    cache: bool,
) -> bool {
    ex.local_reply
        || ex.upstream_key.is_some()
        || limits
        || cache
        || chatlog.is_some_and(|l| !l.reads_without_response_headers())
}

/// 413 for a body the worker cannot hold now (`crate::memory`).
fn too_large() -> LocalReply {
    LocalReply::new(
        413,
        "The gateway is holding too many large request bodies right now; retry shortly or send a \
         smaller body.",
        "invalid_request_error",
        "request_too_large",
    )
}

impl Drop for RequestFilter {
    /// Whatever this request held counts against the worker's budget no more.
    fn drop(&mut self) {
        self.plugin.memory.release(self.context_id);
    }
}
