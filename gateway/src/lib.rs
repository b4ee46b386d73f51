//! The native side of llm-forward: config loading, Envoy bootstrap rendering, process supervision,
//! and the built-in mock upstream used by `run --demo` and the integration tests.

pub mod banner;
pub mod config_file;
pub mod envoy;
pub mod mock;
pub mod render;
pub mod run;
pub mod versions;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
