//! Rate limits and token quotas: the limit grammar, the window math and the header formats.
//!
//! Everything here is pure: time is always passed in as milliseconds (`now_ms`), state is a small
//! byte string the caller keeps in proxy-wasm shared data, and nothing panics.
//!
//! - [`grammar`]: `"60/minute;600/hour"` → [`LimitSpec`], compatible with OpenAI-Forward (python `limits`).
//! - [`window`]: fixed and sliding windows over a constant-size [`WindowState`], with
//!   [`try_acquire`] for request limits, [`check`]/[`charge`] for token quotas charged after the
//!   fact, [`refund`] and [`combine`] for several rates at once.
//! - [`config`]: the `limits:` config section, rule selection, subjects and shared-data key names.
//! - [`store`]: this protocol over a two-call [`store::SharedStore`] trait (the filter implements it
//!   with proxy-wasm shared data), including the creation lock for keys seen the first time.
//! - [`headers`]: OpenAI's `x-ratelimit-reset-*` duration format and `Retry-After` seconds.
//!
//! # How a caller uses this with shared data (one rate)
//!
//! ```text
//! now = current time (ms), read once per request
//! loop (bounded, e.g. 8 tries):
//!     (bytes, cas) = get_shared_data(key)            // one fixed key per (limit, subject)
//!     d = try_acquire(strategy, &rate, bytes.and_then(WindowState::decode), now, 1)
//!     if !d.allowed: reply 429 ("Rate limit exceeded: {rate}", Retry-After: retry_after_secs(d.reset_after_ms))
//!     if set_shared_data(key, d.new_state.encode(), cas) == Ok: continue the request
//!     // CasMismatch: someone else wrote in between; read again and decide again
//! out of tries: count it in a metric and decide (fail closed = 429, or fail open)
//! ```
//!
//! # Several rates at once (`"60/minute;600/hour"`)
//!
//! A request passes only if *every* rate admits it, and a rejected request must not consume any
//! window. So:
//!
//! 1. Read all states and call [`try_acquire`] for each rate (nothing is written yet).
//! 2. [`combine`] the decisions. If it is rejected, write nothing and reply 429 naming
//!    `rates[first_failing]`, with `Retry-After` from the combined `reset_after_ms`.
//! 3. Otherwise CAS-write each `new_state` in turn. When a CAS fails, re-read *that* key and call
//!    [`try_acquire`] again for that rate only; if it is still allowed, write and go on. If it is now
//!    rejected (a concurrent request took the last unit), undo the writes already made with
//!    [`refund`] (a CAS loop per key too) and reply 429.
//!
//! Between a write and its refund another request may see the extra unit and be rejected: the
//! protocol can briefly under-admit under contention, never over-admit.

pub mod config;
pub mod fleet;
pub mod grammar;
pub mod headers;
pub mod store;
pub mod stream;
pub mod window;

pub use grammar::{parse_limit, LimitSpec, Rate};
pub use headers::{decimal, format_reset, push_decimal, push_reset, retry_after_secs};
pub use window::{
    charge, check, combine, refund, try_acquire, Combined, Decision, Strategy, WindowState,
};
