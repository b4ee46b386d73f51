//! The root context: configuration, metrics, and the factory for per-request contexts.

use crate::host::log;
use crate::http::RequestFilter;
use crate::metrics::Metrics;
use llm_forward_core::config::FilterConfig;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};
use std::rc::Rc;

/// What every request of this worker shares, immutable after `on_configure`.
#[derive(Debug)]
pub struct Plugin {
    pub config: FilterConfig,
    pub metrics: Metrics,
}

#[derive(Default)]
pub struct FilterRoot {
    plugin: Option<Rc<Plugin>>,
}

impl Context for FilterRoot {}

impl RootContext for FilterRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        match FilterConfig::from_json(&bytes) {
            Ok(config) => {
                let names: Vec<String> = config.routes.iter().map(|r| r.name.clone()).collect();
                let metrics = Metrics::define(&names);
                log(
                    LogLevel::Info,
                    &format!(
                        "llm-forward filter configured: {} route(s)",
                        config.routes.len()
                    ),
                );
                self.plugin = Some(Rc::new(Plugin { config, metrics }));
                true
            }
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("llm-forward: invalid plugin configuration: {e}"),
                );
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy only creates HTTP contexts after a successful on_configure.
        let plugin = self.plugin.clone()?;
        Some(Box::new(RequestFilter::new(plugin)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
