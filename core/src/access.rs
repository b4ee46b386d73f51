//! Access control: forward keys → pooled upstream keys, model permissions per level, model routing,
//! upstream key cooldowns and IP allow/deny lists.
//!
//! Three forms of the same settings live here:
//!
//! - the **file form** ([`KeysConfig`], [`IpConfig`], and the route fields `key_location`,
//!   `pass_through_unknown_keys`, `model_paths`, `models` of [`crate::config::RouteConfig`]),
//!   checked (with the field path of every problem) and turned into the plugin form by
//!   `crate::config`, which holds the routes;
//! - the **plugin form** ([`AccessConfig`]) the gateway hands to the filter as JSON. Secrets given
//!   as `${VAR}` (or `file:`) stay *references* in it: the filter resolves them from its own
//!   environment at configure time, so `llm-forward render` output never contains a real key;
//! - the **compiled form** ([`Access`]), built once per VM by [`Access::compile`], which answers the
//!   per-request questions without allocating much: which forward key is this, which upstream key
//!   is next, may this level use this model, which target serves this model.
//!
//! Differences from OpenAI-Forward (on purpose): unknown or missing keys are rejected locally (401)
//! unless a route sets `pass_through_unknown_keys`; `Authorization` must really be `Bearer`; the model
//! check never depends on logging; keys are compared without early exit; upstream keys answered with
//! 401/403/429 cool down and rotation skips them.
//!
//! One job per module, everything re-exported here: the file and plugin forms (`settings.rs`),
//! secret values and references (`secrets.rs`), where the client's key is (`key_location.rs`), the
//! compiled form (`compiled.rs`) with its memo of recently accepted keys (`key_memo.rs`), key rotation and the cooldown codec (`rotation.rs`), query
//! parameters (`query.rs`), request bodies (`body.rs`), and the model named by non-JSON requests
//! (`model_of`).

pub mod model_of;

mod body;
mod compiled;
mod key_location;
mod key_memo;
mod query;
mod rotation;
mod secrets;
mod settings;

pub use body::*;
pub use compiled::*;
pub use key_location::*;
pub use key_memo::*;
pub use query::*;
pub use rotation::*;
pub use secrets::*;
pub use settings::*;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
