//! The native side of llm-forward: config loading, Envoy bootstrap rendering, process supervision,
//! and the built-in mock upstream used by `run --demo` and the integration tests.

pub mod banner;
pub mod cache;
pub mod config_file;
pub mod console;
pub mod convert;
pub mod dotenv;
pub mod envoy;
pub mod fleet;
pub mod http_server;
pub mod istio;
pub mod logrotate;
pub mod migrate;
pub mod mock;
pub mod openai_forward_env;
pub mod private_files;
pub mod ratelimit;
pub mod redis_client;
pub mod redis_server;
pub mod reload;
pub mod render;
pub mod run;
pub mod versions;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
