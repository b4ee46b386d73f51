//! The per-request context. Each callback reads what it needs from Envoy once, asks the core what to
//! do, and applies the answer.

use crate::host;
use crate::root::Plugin;
use llm_forward_core::routing::match_route;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct RequestFilter {
    plugin: Rc<Plugin>,
    /// Index of the configured route this request matched, if any.
    route: Option<usize>,
}

impl RequestFilter {
    pub fn new(plugin: Rc<Plugin>) -> Self {
        RequestFilter { plugin, route: None }
    }
}

impl Context for RequestFilter {}

impl HttpContext for RequestFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Read the whole map once: later phases may not be allowed to read request headers.
        let headers = host::request_headers();
        let path = host::header(&headers, ":path").unwrap_or("/");
        self.route = match_route(&self.plugin.config.routes, path);
        if let Some(route) = self.route {
            self.plugin.metrics.count_request(route);
        }
        Action::Continue
    }
}
