//! Counters the filter exports. They appear in Envoy stats as `wasmcustom.llm_forward.…`; the rendered
//! config's `stats_tags` turn the name segments into Prometheus labels (`route`, `status`).

use crate::host;
use proxy_wasm::types::MetricType;

/// Statuses the filter may answer locally; each gets its own counter.
pub const LOCAL_REPLY_STATUSES: [u32; 9] = [400, 401, 403, 404, 413, 429, 500, 502, 503];

#[derive(Debug, Default)]
pub struct Metrics {
    /// One counter per configured route, same order as the config's routes.
    route_requests: Vec<Option<u32>>,
    local_replies: Vec<(u32, Option<u32>)>,
}

fn counter(name: &str) -> Option<u32> {
    host::define_metric(MetricType::Counter, name).ok()
}

impl Metrics {
    pub fn define(route_names: &[String]) -> Self {
        Metrics {
            route_requests: route_names
                .iter()
                .map(|n| counter(&format!("llm_forward.route.{n}.requests_total")))
                .collect(),
            local_replies: LOCAL_REPLY_STATUSES
                .iter()
                .map(|s| (*s, counter(&format!("llm_forward.local_reply.{s}.total"))))
                .collect(),
        }
    }

    pub fn count_request(&self, route: usize) {
        if let Some(Some(id)) = self.route_requests.get(route) {
            let _ = host::increment_metric(*id, 1);
        }
    }

    pub fn count_local_reply(&self, status: u32) {
        if let Some((_, Some(id))) = self.local_replies.iter().find(|(s, _)| *s == status) {
            let _ = host::increment_metric(*id, 1);
        }
    }
}
