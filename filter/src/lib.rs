//! llm-forward's proxy-wasm HTTP filter.
//!
//! Glue only: the root context turns the plugin configuration into a validated
//! [`llm_forward_core::config::FilterConfig`] once and shares it with every request through an `Rc`;
//! the HTTP context reads the request header map once and asks `llm-forward-core` what to do.
//! Every host call goes through [`host`], which returns `Result`s instead of panicking: a panic traps
//! the VM and fails every later request on that worker.

pub mod exchange;
pub mod host;
pub mod http;
pub mod metrics;
pub mod root;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::FilterRoot::default())
    });
}}
