use std::collections::BTreeMap;

use proptest::prelude::{
    any, prop_assert, prop_assert_eq, prop_oneof, proptest, Just, ProptestConfig,
};
use proptest::strategy::Strategy as _;

use super::*;

const SEC: u64 = 1_000;
const MIN: u64 = 60 * SEC;
const FIXED: Strategy = Strategy::FixedWindow;
const SLIDING: Strategy = Strategy::SlidingWindow;

fn rate(amount: u64, period_ms: u64) -> Rate {
    Rate { amount, period_ms }
}

/// One shared-data key: the state travels as bytes, as it does between workers.
#[derive(Default)]
struct Key(Option<Vec<u8>>);

impl Key {
    fn state(&self) -> Option<WindowState> {
        self.0.as_deref().and_then(WindowState::decode)
    }

    fn acquire(&mut self, strategy: Strategy, rate: &Rate, now: u64, cost: u64) -> Decision {
        let d = try_acquire(strategy, rate, self.state(), now, cost);
        if d.allowed {
            self.0 = Some(d.new_state.encode());
        }
        d
    }

    fn check(&self, strategy: Strategy, rate: &Rate, now: u64) -> Decision {
        check(strategy, rate, self.state(), now)
    }

    fn charge(&mut self, strategy: Strategy, rate: &Rate, now: u64, tokens: u64) {
        self.0 = Some(charge(strategy, rate, self.state(), now, tokens).encode());
    }
}

// ---------------------------------------------------------------- fixed window

#[test]
fn fixed_admits_exactly_n_per_window_and_resets_at_the_boundary() {
    let r = rate(5, MIN);
    let mut key = Key::default();
    let t0 = 10 * MIN + 15 * SEC;
    let got: Vec<(bool, u64, u64)> = (0..7)
        .map(|i| key.acquire(FIXED, &r, t0 + i, 1))
        .map(|d| (d.allowed, d.remaining, d.reset_after_ms))
        .collect();
    assert_eq!(
        got,
        vec![
            (true, 4, 45_000),
            (true, 3, 44_999),
            (true, 2, 44_998),
            (true, 1, 44_997),
            (true, 0, 44_996),
            (false, 0, 44_995),
            (false, 0, 44_994),
        ]
    );
    let last_ms = key.acquire(FIXED, &r, 11 * MIN - 1, 1);
    assert_eq!(
        (last_ms.allowed, last_ms.reset_after_ms, last_ms.limit),
        (false, 1, 5)
    );

    let next = key.acquire(FIXED, &r, 11 * MIN, 1);
    assert_eq!(
        (next.allowed, next.remaining, next.reset_after_ms),
        (true, 4, MIN)
    );
    assert_eq!(next.new_state.window_start_ms, 11 * MIN);
    assert_eq!(next.new_state.current, 1);
}

#[test]
fn fixed_window_admits_a_burst_at_the_edge() {
    let r = rate(10, MIN);
    let mut key = Key::default();
    let times = [10 * MIN + 59 * SEC; 10]
        .into_iter()
        .chain([11 * MIN + SEC; 10]);
    let admitted = times
        .filter(|&t| key.acquire(FIXED, &r, t, 1).allowed)
        .count();
    assert_eq!(admitted, 20);
}

#[test]
fn a_rejected_request_counts_nothing() {
    let r = rate(2, MIN);
    let mut key = Key::default();
    for _ in 0..5 {
        key.acquire(FIXED, &r, 5 * MIN, 1);
    }
    assert_eq!(key.state().map(|s| s.current), Some(2));
    let d = try_acquire(FIXED, &r, key.state(), 5 * MIN + 1, 1);
    assert!(!d.allowed);
    assert_eq!(
        d.new_state,
        WindowState {
            window_start_ms: 5 * MIN,
            period_ms: MIN,
            current: 2,
            previous: 0
        }
    );
}

#[test]
fn costs_above_one_and_above_the_amount() {
    let r = rate(10, MIN);
    let mut key = Key::default();
    assert!(key.acquire(FIXED, &r, 0, 7).allowed);
    let d = key.acquire(FIXED, &r, 1, 4);
    assert_eq!(
        (d.allowed, d.remaining, d.reset_after_ms),
        (false, 3, MIN - 1)
    );
    assert!(key.acquire(FIXED, &r, 2, 3).allowed);

    // A cost above the amount never fits: the hint is the window's end.
    let d = try_acquire(FIXED, &r, None, 30 * SEC, 11);
    assert_eq!(
        (d.allowed, d.remaining, d.reset_after_ms),
        (false, 10, 30 * SEC)
    );
}

#[test]
fn amount_zero_blocks_everything() {
    for strategy in [FIXED, SLIDING] {
        let d = try_acquire(strategy, &rate(0, MIN), None, 10 * MIN + 20 * SEC, 1);
        assert_eq!(
            (d.allowed, d.remaining, d.reset_after_ms, d.limit),
            (false, 0, 40 * SEC, 0)
        );
        let d = check(strategy, &rate(0, MIN), None, 10 * MIN + 20 * SEC);
        assert_eq!(
            (d.allowed, d.remaining, d.reset_after_ms),
            (false, 0, 40 * SEC)
        );
    }
}

#[test]
fn cost_zero_is_free_and_nothing_counted_means_reset_zero() {
    let d = try_acquire(FIXED, &rate(1, MIN), None, 123, 0);
    assert_eq!((d.allowed, d.remaining, d.reset_after_ms), (true, 1, 0));
}

// -------------------------------------------------------------- sliding window

#[test]
fn sliding_window_blocks_the_edge_burst_that_fixed_admits() {
    let r = rate(10, MIN);
    let mut key = Key::default();
    let first: Vec<bool> = (0..10)
        .map(|_| key.acquire(SLIDING, &r, 10 * MIN + 59 * SEC, 1).allowed)
        .collect();
    assert!(first.iter().all(|a| *a));
    // One second into the next window, 59/60 of the 10 still weigh: 9.83 used, no whole unit left.
    let d = key.acquire(SLIDING, &r, 11 * MIN + SEC, 1);
    assert_eq!((d.allowed, d.remaining), (false, 0));
    // 10·(60 − e)/60 + 1 ≤ 10 ⇔ e ≥ 6 s: five more seconds.
    assert_eq!(d.reset_after_ms, 5 * SEC);
    assert!(!key.acquire(SLIDING, &r, 11 * MIN + 6 * SEC - 1, 1).allowed);
    let d = key.acquire(SLIDING, &r, 11 * MIN + 6 * SEC, 1);
    assert!(d.allowed);
    // Estimate after it: 10·54/60 + 1 = 10 → nothing left; fully clear at the end of the next window.
    assert_eq!((d.remaining, d.reset_after_ms), (0, 2 * MIN - 6 * SEC));
}

#[test]
fn sliding_remaining_follows_the_weighted_estimate() {
    let r = rate(10, MIN);
    let mut key = Key::default();
    for _ in 0..10 {
        key.acquire(SLIDING, &r, 10 * MIN + 59 * SEC, 1);
    }
    // Half-way through the next window: 10·30/60 = 5 used.
    let d = key.check(SLIDING, &r, 11 * MIN + 30 * SEC);
    assert_eq!(
        (d.allowed, d.remaining, d.reset_after_ms),
        (true, 5, 30 * SEC)
    );
    let d = key.acquire(SLIDING, &r, 11 * MIN + 30 * SEC, 1);
    assert_eq!(
        (d.allowed, d.remaining, d.reset_after_ms),
        (true, 4, 90 * SEC)
    );
    // 10·(60 − 45)/60 = 2.5 plus 1: 6.5 left, 6 whole.
    let d = key.check(SLIDING, &r, 11 * MIN + 45 * SEC);
    assert_eq!(d.remaining, 6);
}

#[test]
fn sliding_window_forgets_windows_older_than_the_previous_one() {
    let r = rate(3, MIN);
    let mut key = Key::default();
    for _ in 0..3 {
        assert!(key.acquire(SLIDING, &r, 10 * MIN + 59 * SEC, 1).allowed);
    }
    let d = key.acquire(SLIDING, &r, 12 * MIN, 1);
    assert_eq!((d.allowed, d.remaining), (true, 2));
    assert_eq!(
        d.new_state,
        WindowState {
            window_start_ms: 12 * MIN,
            period_ms: MIN,
            current: 1,
            previous: 0
        }
    );
}

#[test]
fn sliding_bound_2n_minus_ceil_2n_over_p_is_reached() {
    // N units in the last ms of window 9, then a client retrying every ms through window 10.
    let (n, p) = (100, MIN);
    let r = rate(n, p);
    let mut key = Key::default();
    let mut admitted = Vec::new();
    for _ in 0..n {
        assert!(key.acquire(SLIDING, &r, 10 * p - 1, 1).allowed);
        admitted.push(10 * p - 1);
    }
    for t in 10 * p..11 * p {
        if key.acquire(SLIDING, &r, t, 1).allowed {
            admitted.push(t);
        }
    }
    let start = 10 * p - 1;
    let in_interval = admitted
        .iter()
        .filter(|t| (start..start + p).contains(t))
        .count() as u64;
    assert_eq!(in_interval, 2 * n - (2 * n).div_ceil(p));
    assert_eq!(in_interval, 199);
}

// ----------------------------------------------------------------- token quotas

#[test]
fn quota_check_then_charge_fixed() {
    let r = rate(1_000, MIN);
    let mut key = Key::default();
    let t = 10 * MIN + 10 * SEC;
    let d = key.check(FIXED, &r, t);
    assert_eq!((d.allowed, d.remaining, d.reset_after_ms), (true, 1_000, 0));
    key.charge(FIXED, &r, t, 999);
    let d = key.check(FIXED, &r, t + 1);
    assert_eq!(
        (d.allowed, d.remaining, d.reset_after_ms),
        (true, 1, 50 * SEC - 1)
    );
    // Charging never refuses: an admitted stream's tokens are always recorded, past the amount.
    key.charge(FIXED, &r, t + 2, 500);
    assert_eq!(key.state().map(|s| s.current), Some(1_499));
    let d = key.check(FIXED, &r, t + 3);
    assert_eq!(
        (d.allowed, d.remaining, d.reset_after_ms),
        (false, 0, 50 * SEC - 3)
    );
    assert!(key.check(FIXED, &r, 11 * MIN).allowed);
}

#[test]
fn quota_check_sliding_waits_for_the_overshoot_to_decay() {
    let r = rate(1_000, MIN);
    let mut key = Key::default();
    key.charge(SLIDING, &r, 10 * MIN + 10 * SEC, 1_500);
    let d = key.check(SLIDING, &r, 10 * MIN + 10 * SEC);
    assert!(!d.allowed);
    // Next window: 1500·(60000 − e)/60000 < 1000 ⇔ e > 20000.
    assert_eq!(d.reset_after_ms, 50 * SEC + 20_001);
    assert!(!key.check(SLIDING, &r, 11 * MIN + 20_000).allowed);
    assert!(key.check(SLIDING, &r, 11 * MIN + 20_001).allowed);
}

#[test]
fn check_admits_while_below_the_amount() {
    let r = rate(10, MIN);
    for (used, allowed) in [(9, true), (10, false), (11, false)] {
        let state = charge(FIXED, &r, None, 0, used);
        assert_eq!(
            check(FIXED, &r, Some(state), 1).allowed,
            allowed,
            "used {used}"
        );
    }
}

// ------------------------------------------------------------------ state value

#[test]
fn encode_layout_and_round_trip() {
    let s = WindowState {
        window_start_ms: 120_000,
        period_ms: 60_000,
        current: 7,
        previous: 3,
    };
    let bytes = s.encode();
    assert_eq!(bytes.len(), WindowState::ENCODED_LEN);
    assert_eq!(bytes.first(), Some(&1));
    assert_eq!(bytes.get(1..9), Some(&120_000u64.to_le_bytes()[..]));
    assert_eq!(bytes.get(17..25), Some(&7u64.to_le_bytes()[..]));
    assert_eq!(bytes.get(25..33), Some(&3u64.to_le_bytes()[..]));
    assert_eq!(WindowState::decode(&bytes), Some(s));
    assert_eq!(s.to_bytes()[..], bytes[..]);
}

#[test]
fn garbage_decodes_to_none() {
    let good = WindowState {
        window_start_ms: 120_000,
        period_ms: 60_000,
        current: 7,
        previous: 3,
    }
    .encode();
    assert_eq!(WindowState::decode(&[]), None);
    assert_eq!(WindowState::decode(b"hello"), None);
    assert_eq!(
        WindowState::decode(good.get(..32).unwrap_or_default()),
        None
    );
    assert_eq!(WindowState::decode(&[good.clone(), vec![0]].concat()), None);
    assert_eq!(WindowState::decode(&[0u8; 33]), None, "version 0");
    let mut wrong_version = good.clone();
    wrong_version[0] = 2;
    assert_eq!(WindowState::decode(&wrong_version), None);
    let zero_period = WindowState {
        window_start_ms: 0,
        period_ms: 0,
        current: 1,
        previous: 0,
    }
    .encode();
    assert_eq!(WindowState::decode(&zero_period), None);
    let misaligned = WindowState {
        window_start_ms: 1_234,
        period_ms: 60_000,
        current: 1,
        previous: 0,
    }
    .encode();
    assert_eq!(WindowState::decode(&misaligned), None);
}

#[test]
fn a_state_for_another_period_reads_as_fresh() {
    // The limit was 60/minute, the config now says 60/hour under the same key.
    let old = WindowState {
        window_start_ms: 10 * MIN,
        period_ms: MIN,
        current: 60,
        previous: 60,
    };
    let d = try_acquire(FIXED, &rate(60, 60 * MIN), Some(old), 10 * MIN + 1, 1);
    assert!(d.allowed);
    assert_eq!(
        d.new_state,
        WindowState {
            window_start_ms: 0,
            period_ms: 60 * MIN,
            current: 1,
            previous: 0
        }
    );
}

#[test]
fn a_state_one_window_ahead_is_used_from_its_start() {
    // Another worker's clock already crossed into window 11 and counted 5 of 5 there.
    let r = rate(5, MIN);
    let ahead = WindowState {
        window_start_ms: 11 * MIN,
        period_ms: MIN,
        current: 5,
        previous: 2,
    };
    let d = try_acquire(FIXED, &r, Some(ahead), 11 * MIN - 3, 1);
    assert!(!d.allowed);
    assert_eq!(d.new_state, ahead);
    assert_eq!(d.reset_after_ms, 3 + MIN, "skew plus the whole window");

    let ahead = WindowState {
        current: 4,
        ..ahead
    };
    let d = try_acquire(FIXED, &r, Some(ahead), 11 * MIN - 3, 1);
    assert!(d.allowed);
    assert_eq!(d.new_state.current, 5);
    assert_eq!(d.new_state.window_start_ms, 11 * MIN);

    // Further ahead than one window cannot be skew: fresh.
    let far = WindowState {
        window_start_ms: 50 * MIN,
        ..ahead
    };
    let d = try_acquire(FIXED, &r, Some(far), 11 * MIN - 3, 1);
    assert_eq!(d.new_state.window_start_ms, 10 * MIN);
    assert_eq!(d.new_state.current, 1);
}

// ----------------------------------------------------- several rates, refunds

/// The caller's protocol (see the `limits` module docs), without contention.
fn acquire_all(
    strategy: Strategy,
    rates: &[Rate],
    keys: &mut [Key],
    now: u64,
    cost: u64,
) -> Combined {
    let decisions: Vec<Decision> = rates
        .iter()
        .zip(keys.iter())
        .map(|(r, k)| try_acquire(strategy, r, k.state(), now, cost))
        .collect();
    let combined = combine(&decisions);
    if combined.allowed {
        for (key, d) in keys.iter_mut().zip(&decisions) {
            key.0 = Some(d.new_state.encode());
        }
    }
    combined
}

#[test]
fn several_rates_all_must_hold_and_rejections_consume_nothing() {
    let rates = [rate(2, SEC), rate(3, 10 * SEC)];
    let mut keys = [Key::default(), Key::default()];
    let a = |keys: &mut [Key], t| acquire_all(FIXED, &rates, keys, t, 1);

    let c = a(&mut keys, 0);
    assert_eq!(
        c,
        Combined {
            allowed: true,
            first_failing: None,
            remaining: 1,
            limit: 2,
            reset_after_ms: 10 * SEC
        }
    );
    assert!(a(&mut keys, 100).allowed);
    let c = a(&mut keys, 200);
    assert_eq!(
        c,
        Combined {
            allowed: false,
            first_failing: Some(0),
            remaining: 0,
            limit: 2,
            reset_after_ms: 800
        }
    );
    assert_eq!(rates[0].to_string(), "2 per 1 second");

    assert!(a(&mut keys, 1_000).allowed);
    let c = a(&mut keys, 1_100);
    assert_eq!(
        c,
        Combined {
            allowed: false,
            first_failing: Some(1),
            remaining: 0,
            limit: 3,
            reset_after_ms: 8_900
        }
    );
    // The rejected requests were not counted in either window.
    assert_eq!(keys[0].state().map(|s| s.current), Some(1));
    assert_eq!(keys[1].state().map(|s| s.current), Some(3));
    assert!(a(&mut keys, 10 * SEC).allowed);
}

#[test]
fn combine_reports_the_largest_wait_among_refusing_rates() {
    let d = |allowed, remaining, reset_after_ms, limit| Decision {
        allowed,
        new_state: WindowState {
            window_start_ms: 0,
            period_ms: 1,
            current: 0,
            previous: 0,
        },
        remaining,
        reset_after_ms,
        limit,
    };
    // Rejected: remaining and limit of the first refusing rate (the allowed one's `remaining`
    // assumed an admission that does not happen), the longest wait among the refusing ones.
    let c = combine(&[
        d(true, 0, 50_000, 60),
        d(false, 2, 300, 10),
        d(false, 0, 900, 100),
    ]);
    assert_eq!(
        c,
        Combined {
            allowed: false,
            first_failing: Some(1),
            remaining: 2,
            limit: 10,
            reset_after_ms: 900
        }
    );
    let c = combine(&[d(true, 5, 50_000, 60), d(true, 2, 300, 10)]);
    assert_eq!(
        c,
        Combined {
            allowed: true,
            first_failing: None,
            remaining: 2,
            limit: 10,
            reset_after_ms: 50_000
        }
    );
    let c = combine(&[]);
    assert_eq!(
        c,
        Combined {
            allowed: true,
            first_failing: None,
            remaining: u64::MAX,
            limit: u64::MAX,
            reset_after_ms: 0
        }
    );
}

#[test]
fn refund_undoes_a_charge_in_the_current_or_previous_window() {
    let r = rate(5, MIN);
    let before = WindowState {
        window_start_ms: 10 * MIN,
        period_ms: MIN,
        current: 2,
        previous: 1,
    };
    let d = try_acquire(SLIDING, &r, Some(before), 10 * MIN + 5, 1);
    assert!(d.allowed);
    // Same window: back to what it was.
    assert_eq!(
        refund(
            &r,
            Some(d.new_state),
            10 * MIN + 9,
            d.new_state.window_start_ms,
            1
        ),
        before
    );
    // The window rolled over meanwhile: the unit is taken from `previous`.
    let rolled = refund(
        &r,
        Some(d.new_state),
        11 * MIN + 9,
        d.new_state.window_start_ms,
        1,
    );
    assert_eq!(
        rolled,
        WindowState {
            window_start_ms: 11 * MIN,
            period_ms: MIN,
            current: 0,
            previous: 2
        }
    );
    // Long gone: nothing to take back.
    let gone = refund(
        &r,
        Some(d.new_state),
        13 * MIN,
        d.new_state.window_start_ms,
        1,
    );
    assert_eq!(
        gone,
        WindowState {
            window_start_ms: 13 * MIN,
            period_ms: MIN,
            current: 0,
            previous: 0
        }
    );
    // Never below zero.
    assert_eq!(refund(&r, None, 0, 0, 3).current, 0);
}

// ---------------------------------------------------------------------- strategy

#[test]
fn strategy_names() {
    for (name, want) in [
        ("fixed-window", FIXED),
        (" Fixed-Window ", FIXED),
        ("sliding-window", SLIDING),
        ("moving-window", SLIDING),
        ("sliding-window-counter", SLIDING),
    ] {
        assert_eq!(name.parse::<Strategy>(), Ok(want), "{name}");
    }
    assert_eq!(
        "fixed-window-elastic-expiry".parse::<Strategy>(),
        Err("rate limit strategy `fixed-window-elastic-expiry` is not supported (the `limits` library dropped it \
             too): use `fixed-window` or `sliding-window`"
            .to_string())
    );
    assert_eq!(
        "token-bucket".parse::<Strategy>(),
        Err("unknown rate limit strategy `token-bucket` (use `fixed-window` or `sliding-window`; `moving-window` \
             and `sliding-window-counter` also mean `sliding-window`)"
            .to_string())
    );
    assert_eq!(Strategy::default(), FIXED);
    assert_eq!(SLIDING.to_string(), "sliding-window");
}

#[test]
fn strategy_serde() {
    assert_eq!(serde_json::to_string(&FIXED).unwrap(), r#""fixed-window""#);
    assert_eq!(
        serde_json::to_string(&SLIDING).unwrap(),
        r#""sliding-window""#
    );
    assert_eq!(
        serde_json::from_str::<Strategy>(r#""moving-window""#).unwrap(),
        SLIDING
    );
    let err = serde_json::from_str::<Strategy>(r#""fixed-window-elastic-expiry""#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not supported"), "{err}");
}

// ------------------------------------------------------------------ properties

/// Requests as (gap since the previous one, cost); times start at `t0`.
fn traffic() -> impl proptest::strategy::Strategy<Value = (u64, Vec<(u64, u64)>)> {
    (
        0u64..1_000_000_000,
        proptest::collection::vec((0u64..120, 1u64..4), 1..300),
    )
}

fn run(strategy: Strategy, r: &Rate, t0: u64, requests: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut key = Key::default();
    let mut now = t0;
    let mut admitted = Vec::new();
    for &(gap, cost) in requests {
        now += gap;
        if key.acquire(strategy, r, now, cost).allowed {
            admitted.push((now, cost));
        }
    }
    admitted
}

fn max_per_aligned_window(admitted: &[(u64, u64)], p: u64) -> u64 {
    let mut per_window: BTreeMap<u64, u64> = BTreeMap::new();
    for &(t, cost) in admitted {
        *per_window.entry(t / p).or_default() += cost;
    }
    per_window.values().copied().max().unwrap_or(0)
}

/// The heaviest interval of `p` consecutive ms; some heaviest one starts at an admission.
fn max_per_interval(admitted: &[(u64, u64)], p: u64) -> u64 {
    admitted
        .iter()
        .map(|&(start, _)| {
            admitted
                .iter()
                .filter(|(t, _)| (start..start + p).contains(t))
                .map(|(_, c)| c)
                .sum()
        })
        .max()
        .unwrap_or(0)
}

/// Independent model: counts per window index in a map, the estimate straight from its definition.
fn model(strategy: Strategy, r: &Rate, t0: u64, requests: &[(u64, u64)]) -> Vec<(bool, u64)> {
    let (n, p) = (u128::from(r.amount), u128::from(r.period_ms));
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    let mut now = t0;
    let mut out = Vec::new();
    for &(gap, cost) in requests {
        now += gap;
        let (w, e) = (now / r.period_ms, u128::from(now % r.period_ms));
        let c = u128::from(counts.get(&w).copied().unwrap_or(0));
        let prev = match (strategy, w.checked_sub(1)) {
            (Strategy::SlidingWindow, Some(pw)) => {
                u128::from(counts.get(&pw).copied().unwrap_or(0))
            }
            _ => 0,
        };
        let load = |c: u128| prev * (p - e) + c * p;
        let allowed = load(c + u128::from(cost)) <= n * p;
        let c = if allowed {
            *counts.entry(w).or_default() += cost;
            c + u128::from(cost)
        } else {
            c
        };
        let remaining = (n * p).saturating_sub(load(c)) / p;
        out.push((allowed, u64::try_from(remaining).unwrap()));
    }
    out
}

fn any_state() -> impl proptest::strategy::Strategy<Value = WindowState> {
    (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
        |(start, period, current, previous)| WindowState {
            window_start_ms: start,
            period_ms: period,
            current,
            previous,
        },
    )
}

fn any_strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    prop_oneof![Just(FIXED), Just(SLIDING)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fixed_never_admits_more_than_n_per_aligned_window_or_2n_per_period(
        n in 0u64..12, p in 1u64..300, (t0, requests) in traffic()
    ) {
        let admitted = run(FIXED, &rate(n, p), t0, &requests);
        prop_assert!(max_per_aligned_window(&admitted, p) <= n);
        prop_assert!(max_per_interval(&admitted, p) <= 2 * n);
    }

    #[test]
    fn sliding_never_admits_more_than_n_per_aligned_window_or_the_proven_bound_per_period(
        n in 0u64..12, p in 2u64..300, (t0, requests) in traffic()
    ) {
        let admitted = run(SLIDING, &rate(n, p), t0, &requests);
        prop_assert!(max_per_aligned_window(&admitted, p) <= n);
        let bound = 2 * n - (2 * n).div_ceil(p);
        prop_assert!(max_per_interval(&admitted, p) <= bound, "bound {}", bound);
    }

    #[test]
    fn decisions_match_the_independent_model(
        strategy in any_strategy(), n in 0u64..12, p in 1u64..300, (t0, requests) in traffic()
    ) {
        let r = rate(n, p);
        let mut key = Key::default();
        let mut now = t0;
        let got: Vec<(bool, u64)> = requests
            .iter()
            .map(|&(gap, cost)| {
                now += gap;
                let d = key.acquire(strategy, &r, now, cost);
                (d.allowed, d.remaining)
            })
            .collect();
        prop_assert_eq!(got, model(strategy, &r, t0, &requests));
    }

    /// A rejected request is admitted exactly `reset_after_ms` later if nothing else arrives, and
    /// not a millisecond earlier; the same for quota checks.
    #[test]
    fn reset_after_is_the_exact_wait(
        strategy in any_strategy(), n in 1u64..12, p in 1u64..300, (t0, requests) in traffic(),
        cost in 1u64..4, extra in 0u64..40
    ) {
        let r = rate(n, p);
        let mut key = Key::default();
        let mut now = t0;
        for &(gap, c) in &requests {
            now += gap;
            key.acquire(strategy, &r, now, c);
        }
        key.charge(strategy, &r, now, extra);
        let d = try_acquire(strategy, &r, key.state(), now, cost);
        if !d.allowed && cost <= n {
            prop_assert!(d.reset_after_ms >= 1);
            prop_assert!(try_acquire(strategy, &r, key.state(), now + d.reset_after_ms, cost).allowed);
            prop_assert!(!try_acquire(strategy, &r, key.state(), now + d.reset_after_ms - 1, cost).allowed);
        }
        let q = key.check(strategy, &r, now);
        if !q.allowed {
            prop_assert!(q.reset_after_ms >= 1);
            prop_assert!(key.check(strategy, &r, now + q.reset_after_ms).allowed);
            prop_assert!(!key.check(strategy, &r, now + q.reset_after_ms - 1).allowed);
        }
        // Allowed: after `reset_after_ms` the limit is back to its initial state.
        if d.allowed {
            let fresh = try_acquire(strategy, &r, Some(d.new_state), now + d.reset_after_ms, 0);
            prop_assert_eq!(fresh.remaining, n);
        }
    }

    #[test]
    fn state_round_trips(s in any_state()) {
        let s = WindowState { period_ms: s.period_ms.max(1), ..s };
        let s = WindowState { window_start_ms: s.window_start_ms - s.window_start_ms % s.period_ms, ..s };
        prop_assert_eq!(WindowState::decode(&s.encode()), Some(s));
    }

    #[test]
    fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        if let Some(s) = WindowState::decode(&bytes) {
            prop_assert_eq!(s.encode(), bytes);
        }
    }

    #[test]
    fn extreme_inputs_never_panic(
        strategy in any_strategy(), s in proptest::option::of(any_state()),
        amount in any::<u64>(), period in any::<u64>(), now in any::<u64>(), cost in any::<u64>()
    ) {
        let r = rate(amount, period);
        let d = try_acquire(strategy, &r, s, now, cost);
        prop_assert!(d.new_state.period_ms >= 1);
        let _ = check(strategy, &r, s, now);
        let charged = charge(strategy, &r, s, now, cost);
        let _ = refund(&r, Some(charged), now, charged.window_start_ms, cost);
        let _ = combine(&[d]);
        let _ = WindowState::decode(&d.new_state.encode());
    }

    #[test]
    fn charge_always_records(
        strategy in any_strategy(), n in 0u64..100, (t0, requests) in traffic(), tokens in 0u64..1_000
    ) {
        let r = rate(n, MIN);
        let mut key = Key::default();
        let mut now = t0;
        for &(gap, c) in &requests {
            now += gap * 1_000;
            let before = check(strategy, &r, key.state(), now).new_state.current;
            key.charge(strategy, &r, now, tokens * c);
            prop_assert_eq!(key.state().map(|s| s.current), Some(before + tokens * c));
        }
    }
}
