//! llm-forward-core: everything llm-forward decides that can be decided in plain Rust.
//!
//! No proxy-wasm and no I/O here: the wasm filter and the native gateway both call into this crate,
//! and every rule is unit-tested natively.

pub mod access;
pub mod answer;
pub mod cache;
pub mod cache_key;
pub mod chatlog;
pub mod cidr;
pub mod config;
pub mod config_base;
pub mod errors;
pub mod headers;
pub mod limits;
pub mod memory;
pub mod models;
pub mod routing;
pub mod secret;
pub mod sse;
pub mod url;
