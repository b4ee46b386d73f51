//! Fixed and sliding windows over a constant-size state, for proxy-wasm shared data with CAS.
//!
//! Shared data has no delete, no TTL and no listing, so each (limit, subject) gets one fixed key and
//! its value, a [`WindowState`], carries the window it belongs to. A value left over from an old
//! window simply rolls over when it is next read: nothing ever needs to be cleaned up.
//!
//! Windows are aligned to multiples of the period since the Unix epoch (`now_ms - now_ms % period`),
//! so every worker computes the same window from the same clock. (The python `limits` storages start
//! a fixed window at the first hit instead; aligned windows need no extra state and make the reset
//! time the same for every subject.)
//!
//! # Fixed window
//!
//! Count units per aligned window; admit a request of cost `k` when `count + k ≤ N`. At most `N`
//! units per aligned window, but up to `2N` in `P` consecutive milliseconds (`N` at the end of one
//! window, `N` at the start of the next).
//!
//! # Sliding window (the sliding-window-counter approximation)
//!
//! An exact sliding log needs one timestamp per unit; a constant-size value cannot hold it. The
//! counter keeps the count `c` of the current aligned window `w` and the count `p` of window `w−1`,
//! and at elapsed time `e` (`0 ≤ e < P`) into window `w` estimates the use over the last period as
//!
//! ```text
//! E = p·(P − e)/P + c        (window w−1's units assumed spread evenly over it)
//! ```
//!
//! A request of cost `k` is admitted when `E + k ≤ N`, evaluated exactly in integers as
//! `p·(P − e) + (c + k)·P ≤ N·P`. This is the `sliding-window-counter` of `limits` 4+ (and of
//! Cloudflare's and nginx's counters). Guarantees for [`try_acquire`], with times in whole
//! milliseconds, `N = amount`, `P = period_ms ≥ 2`:
//!
//! 1. **Each aligned window admits at most `N` units.** `p·(P − e) ≥ 0`, so an admission needs
//!    `c + k ≤ N`.
//! 2. **Any `P` consecutive milliseconds admit at most `2N − ⌈2N/P⌉` units (< 2N), and this is
//!    tight.** An unaligned interval `[wP − ε, wP + P − ε)` (`1 ≤ ε ≤ P − 1`) holds at most `p`
//!    units of window `w−1`, and in window `w` only units admitted at `e ≤ P − ε − 1`. The last of
//!    those passed `p·(P − e) + c_after·P ≤ N·P`, so `c_after ≤ N − p·(ε + 1)/P`. The total is at
//!    most `p + N − p·(ε + 1)/P ≤ N + N·(P − 2)/P` (using `p ≤ N` from 1 and `ε ≥ 1`), an integer,
//!    hence `≤ ⌊2N − 2N/P⌋`. It is reached when `N` units arrive in the last millisecond of a window
//!    and clients keep retrying through the next: `N = 100` per minute admits 199 in some minute.
//!    (The exact sliding log admits `N`; the fixed window `2N`.) The counter's gain is that such
//!    bursts need a *full* previous window at its very end, and typical traffic stays near `N`.
//! 3. **Error against the exact count.** Let `L` be the units admitted in `(t − P, t]`. Then
//!    `L = c + q` where `q ∈ [0, p]` is the part of window `w−1` later than `t − P`, so
//!    `E − L = p·(P − e)/P − q ∈ [−p·e/P, p·(P − e)/P]`. The estimate is too high when window
//!    `w−1`'s traffic came early (it may refuse up to `p·(P − e)/P ≤ N` units an exact log would
//!    admit) and too low when it came late (it may admit up to `p·e/P < N` units beyond `N`). It is
//!    exact when window `w−1` was uniform.
//!
//! # Token quotas: check first, charge after
//!
//! Token counts are known only when the response ends, so a quota is checked before forwarding
//! ([`check`]: admit while the estimated use is below `N`, without charging) and charged afterwards
//! ([`charge`]: always records, even past `N`; an admitted stream is never cut). Usage can therefore
//! overshoot by the tokens of the requests admitted while it was still below `N`; the guarantees
//! above are for [`try_acquire`].
//!
//! # Time
//!
//! `now_ms` comes from the caller. Workers' clocks can disagree a little and a CAS retry can see a
//! state written by a worker whose `now` was later: a state one window ahead of `now` is used as if
//! `now` were that window's start (conservative); anything older than the previous window, further
//! ahead, for another period, or undecodable counts as fresh.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::grammar::Rate;

/// The window algorithm (`RATE_LIMIT_STRATEGY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// `"fixed-window"`: count per aligned window. OpenAI-Forward's env default.
    #[default]
    FixedWindow,
    /// `"sliding-window"`: the sliding-window counter. Also read from OpenAI-Forward's
    /// `"moving-window"` (an exact log there; see the module docs for how close the counter is) and
    /// from `limits`' `"sliding-window-counter"`.
    SlidingWindow,
}

impl Strategy {
    /// The canonical name: `"fixed-window"` or `"sliding-window"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::FixedWindow => "fixed-window",
            Strategy::SlidingWindow => "sliding-window",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads the canonical names and OpenAI-Forward's (any case, surrounding whitespace ignored).
///
/// `fixed-window-elastic-expiry` (the window restarts on every hit, rejected ones included) is an
/// error rather than a silent downgrade to the more permissive fixed window; `limits` 5, which
/// OpenAI-Forward installs today, rejects it at startup too.
impl FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        match name.to_ascii_lowercase().as_str() {
            "fixed-window" => Ok(Strategy::FixedWindow),
            "sliding-window" | "moving-window" | "sliding-window-counter" => {
                Ok(Strategy::SlidingWindow)
            }
            "fixed-window-elastic-expiry" => Err(
                "rate limit strategy `fixed-window-elastic-expiry` is not supported (the `limits` \
                 library dropped it too): use `fixed-window` or `sliding-window`"
                    .to_string(),
            ),
            _ => Err(format!(
                "unknown rate limit strategy `{name}` (use `fixed-window` or `sliding-window`; \
                 `moving-window` and `sliding-window-counter` also mean `sliding-window`)"
            )),
        }
    }
}

impl Serialize for Strategy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Strategy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The value kept under one shared-data key: which window, and the units counted in it and in the
/// window before it (the sliding window weighs that one; the fixed window ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowState {
    /// Start of the current window, a multiple of `period_ms`.
    pub window_start_ms: u64,
    /// The period this state was counted for; a state for another period reads as fresh.
    pub period_ms: u64,
    /// Units counted in the window starting at `window_start_ms`.
    pub current: u64,
    /// Units counted in the window before it.
    pub previous: u64,
}

const STATE_VERSION: u8 = 1;

impl WindowState {
    /// Length of [`encode`](Self::encode)'s output: a version byte and four little-endian `u64`s
    /// (`window_start_ms`, `period_ms`, `current`, `previous`).
    pub const ENCODED_LEN: usize = 33;

    pub fn encode(&self) -> Vec<u8> {
        self.to_bytes().to_vec()
    }

    /// [`encode`](Self::encode) without the allocation (what the CAS loop writes).
    pub fn to_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        let (version, fields) = out.split_at_mut(1);
        if let Some(v) = version.first_mut() {
            *v = STATE_VERSION;
        }
        for (chunk, field) in fields.chunks_exact_mut(8).zip([
            self.window_start_ms,
            self.period_ms,
            self.current,
            self.previous,
        ]) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        out
    }

    /// `None` for anything [`encode`](Self::encode) cannot have produced (wrong length or version,
    /// a zero period, a window start that is not a multiple of the period): treat it as fresh.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::ENCODED_LEN {
            return None;
        }
        let (&version, fields) = bytes.split_first()?;
        if version != STATE_VERSION {
            return None;
        }
        let field = |i: usize| -> Option<u64> {
            let raw: [u8; 8] = fields.get(i * 8..i * 8 + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(raw))
        };
        let state = WindowState {
            window_start_ms: field(0)?,
            period_ms: field(1)?,
            current: field(2)?,
            previous: field(3)?,
        };
        state.is_consistent().then_some(state)
    }

    fn is_consistent(&self) -> bool {
        self.window_start_ms.checked_rem(self.period_ms) == Some(0)
    }
}

/// The outcome for one rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The state to CAS-write when `allowed` (for [`try_acquire`], the request's cost is counted
    /// in it). When rejected it is the read state rolled to `now` with nothing added: no need to
    /// write it.
    pub new_state: WindowState,
    /// Whole units still available now, after this request when it was admitted
    /// (`x-ratelimit-remaining-*`).
    pub remaining: u64,
    /// Rejected: milliseconds until this request would be admitted if nothing else arrives
    /// (`Retry-After`); if it never can be (cost above the amount, or an amount of 0), until the
    /// counted use has expired. Allowed: milliseconds until all counted use has expired and the
    /// limit is back to its initial state (`x-ratelimit-reset-*`); 0 when nothing is counted.
    pub reset_after_ms: u64,
    /// The rate's amount (`x-ratelimit-limit-*`).
    pub limit: u64,
}

/// Request limits: admit `cost` units (usually 1) if the rate allows, counting them in
/// `new_state`. A rejected request counts nothing.
pub fn try_acquire(
    strategy: Strategy,
    rate: &Rate,
    state: Option<WindowState>,
    now_ms: u64,
    cost: u64,
) -> Decision {
    let view = View::new(rate, state, now_ms);
    let free = u128::from(rate.amount).checked_sub(u128::from(cost));
    let threshold = free.map(|free| free * view.period());
    let allowed = threshold.is_some_and(|t| view.load(strategy) <= t);
    if allowed {
        let mut after = view;
        after.state.current = after.state.current.saturating_add(cost);
        after.decision(strategy, rate, true, after.full_reset(strategy))
    } else {
        view.decision(strategy, rate, false, view.wait_until(strategy, threshold))
    }
}

/// Token quotas, before forwarding: admitted while the (estimated) use is below the amount.
/// Charges nothing; `new_state` is the read state rolled to `now`.
pub fn check(strategy: Strategy, rate: &Rate, state: Option<WindowState>, now_ms: u64) -> Decision {
    let view = View::new(rate, state, now_ms);
    // use < amount  ⇔  load < amount·P  ⇔  load ≤ amount·P − 1
    let threshold = (u128::from(rate.amount) * view.period()).checked_sub(1);
    let allowed = threshold.is_some_and(|t| view.load(strategy) <= t);
    let reset = if allowed {
        view.full_reset(strategy)
    } else {
        view.wait_until(strategy, threshold)
    };
    view.decision(strategy, rate, allowed, reset)
}

/// Token quotas, after the response: record `tokens` in the window of `now_ms`, even beyond the
/// amount. `strategy` does not change how units are recorded; it is taken for symmetry.
pub fn charge(
    _strategy: Strategy,
    rate: &Rate,
    state: Option<WindowState>,
    now_ms: u64,
    tokens: u64,
) -> WindowState {
    let mut view = View::new(rate, state, now_ms);
    view.state.current = view.state.current.saturating_add(tokens);
    view.state
}

/// Takes back `cost` units counted in the window starting at `charged_window_start_ms` (the
/// `new_state.window_start_ms` of the decision that counted them), for a request that was counted
/// in one rate and then rejected by another. Units of a window that no longer weighs are left
/// alone.
pub fn refund(
    rate: &Rate,
    state: Option<WindowState>,
    now_ms: u64,
    charged_window_start_ms: u64,
    cost: u64,
) -> WindowState {
    let mut state = View::new(rate, state, now_ms).state;
    if state.window_start_ms == charged_window_start_ms {
        state.current = state.current.saturating_sub(cost);
    } else if charged_window_start_ms.checked_add(state.period_ms) == Some(state.window_start_ms) {
        state.previous = state.previous.saturating_sub(cost);
    }
    state
}

/// Several rates that must all hold (`"60/minute;600/hour"`), summarised for the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Combined {
    /// Every rate allowed.
    pub allowed: bool,
    /// Index of the first rate that refused (its [`Rate`] goes in the 429 message).
    pub first_failing: Option<usize>,
    /// Allowed: the smallest `remaining`. Rejected: the first refusing rate's (the others'
    /// `remaining` assumed an admission that did not happen).
    pub remaining: u64,
    /// The `limit` of the rate `remaining` was taken from (the first with the smallest one).
    pub limit: u64,
    /// Rejected: the largest `reset_after_ms` among the refusing rates (all must free up before a
    /// retry can pass). Allowed: the largest among all.
    pub reset_after_ms: u64,
}

/// Summarises the decisions for each rate of one limit, in rate order. With no decisions (an
/// unlimited spec): allowed, `remaining` and `limit` `u64::MAX`, reset 0; emit no headers then.
pub fn combine(decisions: &[Decision]) -> Combined {
    let first_failing = decisions.iter().position(|d| !d.allowed);
    let shown = match first_failing {
        Some(i) => decisions.get(i),
        None => decisions.iter().min_by_key(|d| d.remaining),
    };
    let relevant = decisions
        .iter()
        .filter(|d| first_failing.is_none() || !d.allowed);
    Combined {
        allowed: first_failing.is_none(),
        first_failing,
        remaining: shown.map_or(u64::MAX, |d| d.remaining),
        limit: shown.map_or(u64::MAX, |d| d.limit),
        reset_after_ms: relevant.map(|d| d.reset_after_ms).max().unwrap_or(0),
    }
}

/// A state rolled to the window of `now`, with the arithmetic on it. Loads are in units × ms
/// (`u128`), so comparisons against `amount·P` are exact.
#[derive(Debug, Clone, Copy)]
struct View {
    state: WindowState,
    /// `now` − window start, `< period`.
    elapsed: u64,
    /// How far the state's window is ahead of `now` (clock skew between workers), else 0.
    skew: u64,
}

impl View {
    fn new(rate: &Rate, state: Option<WindowState>, now_ms: u64) -> View {
        let period = rate.period_ms.max(1);
        let start = now_ms - now_ms % period;
        let fresh = WindowState {
            window_start_ms: start,
            period_ms: period,
            current: 0,
            previous: 0,
        };
        let at = |state: WindowState, now: u64| View {
            state,
            elapsed: now.saturating_sub(state.window_start_ms),
            skew: now.saturating_sub(now_ms),
        };
        let Some(old) = state.filter(|s| s.period_ms == period && s.is_consistent()) else {
            return at(fresh, now_ms);
        };
        if old.window_start_ms == start {
            at(old, now_ms)
        } else if start.checked_add(period) == Some(old.window_start_ms) {
            // Written by a worker whose clock is ahead: use its window from its start.
            at(old, old.window_start_ms)
        } else if old.window_start_ms.checked_add(period) == Some(start) {
            at(
                WindowState {
                    previous: old.current,
                    ..fresh
                },
                now_ms,
            )
        } else {
            at(fresh, now_ms)
        }
    }

    fn period(&self) -> u128 {
        u128::from(self.state.period_ms)
    }

    /// Units of the previous window that still weigh: all of them for the sliding window's
    /// estimate, none for the fixed window.
    fn previous_weight(&self, strategy: Strategy) -> u128 {
        match strategy {
            Strategy::FixedWindow => 0,
            Strategy::SlidingWindow => u128::from(self.state.previous),
        }
    }

    /// Estimated use × P: `p·(P − e) + c·P`.
    fn load(&self, strategy: Strategy) -> u128 {
        let left = self.period().saturating_sub(u128::from(self.elapsed));
        let previous = self.previous_weight(strategy).saturating_mul(left);
        previous.saturating_add(u128::from(self.state.current) * self.period())
    }

    fn remaining(&self, strategy: Strategy, amount: u64) -> u64 {
        let capacity = u128::from(amount) * self.period();
        let free = capacity.saturating_sub(self.load(strategy)) / self.period();
        u64::try_from(free).unwrap_or(u64::MAX)
    }

    /// Ms until every counted unit has stopped weighing.
    fn full_reset(&self, strategy: Strategy) -> u128 {
        let (p, e) = (self.period(), u128::from(self.elapsed));
        let weighs_next_window = strategy == Strategy::SlidingWindow;
        if self.state.current > 0 && weighs_next_window {
            2 * p - e
        } else if self.state.current > 0 || self.previous_weight(strategy) > 0 {
            p - e
        } else {
            0
        }
    }

    /// Ms until `load ≤ threshold` with no further traffic (`None`: never; then until the window
    /// has fully reset, at least to the window's end).
    fn wait_until(&self, strategy: Strategy, threshold: Option<u128>) -> u128 {
        let (p, e) = (self.period(), u128::from(self.elapsed));
        let Some(t) = threshold else {
            return self.full_reset(strategy).max(p - e);
        };
        if self.load(strategy) <= t {
            return 0;
        }
        let current_load = u128::from(self.state.current) * p;
        if current_load <= t {
            // Only the previous window's weight is in the way: wait until pw·(P − e') ≤ t − c·P.
            // (pw > 0 here, since the load exceeds t.)
            let m = (t - current_load) / self.previous_weight(strategy).max(1);
            (p - e).saturating_sub(m)
        } else {
            // Not in this window. In the next one, this window's count is the previous one:
            // wait until c·(P − e'') ≤ t there (the fixed window forgets it at once).
            let next_weight = match strategy {
                Strategy::FixedWindow => 0,
                Strategy::SlidingWindow => u128::from(self.state.current),
            };
            let m = t.checked_div(next_weight).unwrap_or(p);
            (p - e) + p.saturating_sub(m)
        }
    }

    fn decision(&self, strategy: Strategy, rate: &Rate, allowed: bool, wait: u128) -> Decision {
        let wait = wait.saturating_add(u128::from(self.skew));
        Decision {
            allowed,
            new_state: self.state,
            remaining: self.remaining(strategy, rate.amount),
            reset_after_ms: u64::try_from(wait).unwrap_or(u64::MAX),
            limit: rate.amount,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
