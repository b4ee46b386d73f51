//! The per-request context. Each callback reads what it needs from Envoy once, hands it to the
//! features in a fixed order, and applies their answer. Features live in their own modules and talk
//! to each other only through [`Exchange`].
//!
//! Phase order: request headers (route, access, limits) → request body, only when a feature needs
//! it (model permission and routing, cache lookup, `stream_options` injection) → response headers →
//! response body (SSE extraction, cache copy) → log (record, token charge, cache store).

use crate::exchange::{Exchange, LocalReply, Step};
use crate::host;
use crate::root::Plugin;
use llm_forward_core::routing::match_route;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;

pub struct RequestFilter {
    plugin: Rc<Plugin>,
    /// None when no configured route matched (Envoy answers 404 itself) or after a local reply.
    exchange: Option<Exchange>,
    /// The request is held until its body has been read.
    reading_body: bool,
}

impl RequestFilter {
    pub fn new(plugin: Rc<Plugin>) -> Self {
        RequestFilter {
            plugin,
            exchange: None,
            reading_body: false,
        }
    }

    fn reply(&mut self, reply: LocalReply) -> Action {
        self.plugin.metrics.count_local_reply(reply.status);
        let extra: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        host::send_error(reply.status, &reply.message, reply.kind, reply.code, &extra);
        if let Some(ex) = self.exchange.as_mut() {
            ex.status = reply.status;
        }
        Action::Pause
    }

    /// Whether any feature needs the request body before the request may go upstream.
    fn needs_body(&self, _ex: &Exchange) -> bool {
        false
    }
}

impl Context for RequestFilter {}

impl HttpContext for RequestFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // Read the whole map once: later phases may not be allowed to read request headers.
        let headers = host::request_headers();
        let path = host::header(&headers, ":path").unwrap_or("/").to_string();
        let Some(route) = match_route(&self.plugin.config.routes, &path) else {
            return Action::Continue;
        };
        self.plugin.metrics.count_request(route);
        let ex = Exchange {
            route,
            method: host::header(&headers, ":method")
                .unwrap_or("GET")
                .to_string(),
            path,
            request_headers: headers,
            started_ms: host::now_ms(),
            ..Exchange::default()
        };
        let step = Step::Continue;
        let needs_body = !end_of_stream && self.needs_body(&ex);
        self.exchange = Some(ex);
        if let Step::Reply(reply) = step {
            return self.reply(reply);
        }
        if needs_body {
            // Held here (allow_on_headers_stop_iteration); the body callbacks still arrive.
            self.reading_body = true;
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.reading_body {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.reading_body = false;
        let _body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(ex) = self.exchange.as_mut() {
            let status = hostcalls::get_map_value(MapType::HttpResponseHeaders, ":status")
                .ok()
                .flatten();
            ex.status = status.and_then(|s| s.parse().ok()).unwrap_or(0);
        }
        Action::Continue
    }
}
