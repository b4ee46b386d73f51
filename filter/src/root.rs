//! The root context: configuration, metrics, and the factory for per-request contexts.

use crate::host::{self, log};
use crate::http::RequestFilter;
use crate::metrics::Metrics;
// Kept at its old path for code written before `Plugin` had its own module.
pub use crate::plugin::Plugin;
use llm_forward_core::config::FilterConfig;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};
use std::rc::Rc;

#[derive(Default)]
pub struct FilterRoot {
    plugin: Option<Rc<Plugin>>,
    /// Envoy's id of this root context (token charges are sent as it).
    id: u32,
}

impl FilterRoot {
    pub fn new(id: u32) -> Self {
        FilterRoot { plugin: None, id }
    }

    /// What `on_configure` built (None before or after a failed configuration).
    pub fn plugin(&self) -> Option<Rc<Plugin>> {
        self.plugin.clone()
    }
}

impl Context for FilterRoot {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        _num_headers: usize,
        _body_size: usize,
        _num_trailers: usize,
    ) {
        // The root's only calls are cache stores.
        if let Some(plugin) = &self.plugin {
            plugin.cache.on_store_response();
        }
    }
}

impl RootContext for FilterRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = host::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        match FilterConfig::from_json(&bytes) {
            Ok(config) => {
                let names: Vec<String> = config.routes.iter().map(|r| r.name.clone()).collect();
                let metrics = Metrics::define(&names);
                let cache = crate::cache::CacheShared::configure(&config);
                if config.cache.is_some() {
                    // The root sends the cache stores queued by finished requests.
                    let _ = host::set_tick_period(crate::cache::FLUSH_PERIOD);
                }
                let access = match crate::access::AccessState::configure(&config) {
                    Ok(a) => a,
                    Err(e) => {
                        log(
                            LogLevel::Error,
                            &format!("llm-forward: invalid plugin configuration: {e}"),
                        );
                        return false;
                    }
                };
                log(
                    LogLevel::Info,
                    &format!(
                        "llm-forward filter configured: {} route(s)",
                        config.routes.len()
                    ),
                );
                let limits = crate::limiter::LimitsShared::configure(&config, self.id);
                if crate::limiter::LimitsShared::needs_tick(&config) {
                    // Pacing releases events from the tick; a faster tick only flushes the
                    // cache queue more often.
                    let _ = host::set_tick_period(crate::limiter::TICK);
                }
                let memory = crate::memory::MemoryBudget::configure(config.memory_budget_bytes);
                let idle = crate::idle::IdleRoutes::of(&config);
                self.plugin = Some(Rc::new(Plugin {
                    idle,
                    memory,
                    config,
                    metrics,
                    usage: Default::default(),
                    access,
                    cache,
                    limits,
                    log_keys: names
                        .iter()
                        .map(|n| format!("{}.{n}", crate::chatlog::LOG_PROPERTY))
                        .collect(),
                }));
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

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy only creates HTTP contexts after a successful on_configure.
        let plugin = self.plugin.clone()?;
        Some(Box::new(
            RequestFilter::new(plugin).with_context_id(context_id),
        ))
    }

    fn on_tick(&mut self) {
        if let Some(plugin) = &self.plugin {
            plugin.limits.on_tick();
            if let Some(cache) = &plugin.config.cache {
                plugin.cache.flush(cache.ttl_seconds);
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
