//! llm-forward's proxy-wasm HTTP filter.
//!
//! Glue only: the root context turns the plugin configuration into a validated
//! [`llm_forward_core::config::FilterConfig`] once and shares it with every request through an `Rc`;
//! the HTTP context reads the request header map once and asks `llm-forward-core` what to do.
//! Every host call goes through [`host`], which returns `Result`s instead of panicking: a panic traps
//! the VM and fails every later request on that worker.

pub mod access;
#[cfg(test)]
mod budget_tests;
pub mod cache;
pub mod chatlog;
pub mod exchange;
pub mod fleet;
pub mod host;
pub mod hot_cache;
pub mod http;
pub mod idle;
pub mod limiter;
pub mod memory;
pub mod metrics;
pub mod plugin;
pub mod root;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::FilterRoot::new(id))
    });
}}

/// The filter's version, readable from the `.wasm` file without running it (a custom section), so
/// `llm-forward --version` can report which filter it found.
#[cfg(target_arch = "wasm32")]
#[used]
#[link_section = "llm_forward_version"]
static VERSION_SECTION: [u8; VERSION.len()] = version_bytes();

#[cfg(target_arch = "wasm32")]
const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(target_arch = "wasm32")]
const fn version_bytes() -> [u8; VERSION.len()] {
    let mut out = [0u8; VERSION.len()];
    let bytes = VERSION.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}
