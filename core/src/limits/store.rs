//! The compare-and-swap protocol over proxy-wasm shared data, written against a small trait so it
//! is tested natively (with real threads) and the filter only supplies the two host calls.
//!
//! Envoy's shared data has CAS on existing keys but **no create-if-absent**: `set` on a missing key
//! ignores the CAS value. Two workers that both read "missing" and both write would lose one
//! count. So the first write of a key happens under a creation lock (one fixed key, [`LOCK_KEY`],
//! itself taken by CAS); every later write is a plain CAS on the key. Creation happens once per
//! (rule, rate, subject) in the life of the Envoy process, so the lock is off the hot path: an
//! existing bucket costs one `get` and one `set`.
//!
//! A lock whose holder vanished (a trapped VM) is taken over after [`LOCK_STALE_MS`].
//!
//! Every loop is bounded ([`Tries`]). When the tries run out the caller gets
//! [`Acquire::Exhausted`] and must decide; the filter fails closed (429) and counts it.

use super::grammar::Rate;
use super::window::{
    charge, check, combine, refund, try_acquire, Combined, Decision, Strategy, WindowState,
};

/// The creation lock's key.
pub const LOCK_KEY: &str = "llmf:l:create-lock";
/// A held lock older than this is considered abandoned.
pub const LOCK_STALE_MS: u64 = 1_000;

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    Missing,
    /// The value and its CAS token.
    Found(Vec<u8>, u32),
    /// The host refused (treated as a failed try).
    Error,
}

/// What a write returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Ok,
    /// Someone wrote the key since it was read.
    Mismatch,
    Error,
}

/// Envoy's shared data, as the protocol needs it.
pub trait SharedStore {
    fn get(&mut self, key: &str) -> Read;
    /// `cas` 0 writes unconditionally (and is what a missing key gets).
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Write;
}

/// Bounds of the retry loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tries {
    /// CAS attempts per key.
    pub cas: u32,
    /// Reads of a busy creation lock before giving up.
    pub lock_spins: u32,
}

impl Default for Tries {
    fn default() -> Self {
        Tries {
            cas: 32,
            lock_spins: 20_000,
        }
    }
}

/// The outcome of [`acquire`] or [`check_all`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    Allowed(Combined),
    Rejected(Combined),
    /// Retries ran out (or the host failed): nothing is counted.
    Exhausted,
}

/// One rate of one limit for one subject: its fixed key and the rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub key: String,
    pub rate: Rate,
}

enum Update {
    Written(Decision),
    Declined(Decision),
    Exhausted,
}

const UNLOCKED: [u8; 1] = [0];

fn lock_value(now_ms: u64, owner: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(17);
    v.push(1);
    v.extend_from_slice(&now_ms.to_le_bytes());
    v.extend_from_slice(&owner.to_le_bytes());
    v
}

fn lock_time(value: &[u8]) -> Option<u64> {
    match value.split_first() {
        Some((1, rest)) => Some(u64::from_le_bytes(rest.get(..8)?.try_into().ok()?)),
        _ => None,
    }
}

/// Creates the lock key if it is missing (call once at configuration time; a race between two
/// workers writing the same "unlocked" value there is harmless).
pub fn init_lock<S: SharedStore>(store: &mut S) {
    if store.get(LOCK_KEY) == Read::Missing {
        let _ = store.set(LOCK_KEY, &UNLOCKED, 0);
    }
}

/// Takes the creation lock; `Some(value)` that marks it as ours.
fn lock<S: SharedStore>(store: &mut S, now_ms: u64, owner: u64, tries: Tries) -> Option<Vec<u8>> {
    let mine = lock_value(now_ms, owner);
    for _ in 0..tries.lock_spins.max(1) {
        match store.get(LOCK_KEY) {
            Read::Missing => {
                let _ = store.set(LOCK_KEY, &UNLOCKED, 0);
            }
            Read::Found(value, cas) => {
                let held = lock_time(&value).is_some_and(|t| {
                    now_ms.saturating_sub(t) < LOCK_STALE_MS && t <= now_ms + LOCK_STALE_MS
                });
                if !held && store.set(LOCK_KEY, &mine, cas) == Write::Ok {
                    return Some(mine);
                }
            }
            Read::Error => return None,
        }
    }
    None
}

fn unlock<S: SharedStore>(store: &mut S, mine: &[u8]) {
    if let Read::Found(value, cas) = store.get(LOCK_KEY) {
        if value == mine {
            let _ = store.set(LOCK_KEY, &UNLOCKED, cas);
        }
    }
}

/// CAS loop on one key. `decide` gets the current state and returns the decision; when it is
/// `allowed`, `new_state` is written. `first` is a read already made (saves a host call).
fn update<S: SharedStore>(
    store: &mut S,
    key: &str,
    now_ms: u64,
    owner: u64,
    tries: Tries,
    mut first: Option<Read>,
    decide: &mut dyn FnMut(Option<WindowState>) -> Decision,
) -> Update {
    let mut attempts = 0;
    while attempts < tries.cas.max(1) {
        attempts += 1;
        let read = first.take().unwrap_or_else(|| store.get(key));
        match read {
            Read::Error => return Update::Exhausted,
            Read::Found(bytes, cas) => {
                let d = decide(WindowState::decode(&bytes));
                if !d.allowed {
                    return Update::Declined(d);
                }
                match store.set(key, &d.new_state.to_bytes(), cas) {
                    Write::Ok => return Update::Written(d),
                    Write::Mismatch => continue,
                    Write::Error => return Update::Exhausted,
                }
            }
            Read::Missing => {
                let Some(mine) = lock(store, now_ms, owner, tries) else {
                    return Update::Exhausted;
                };
                // Under the lock nobody else can create the key; if it appeared meanwhile, go
                // back to the CAS path.
                let outcome = match store.get(key) {
                    Read::Missing => {
                        let d = decide(None);
                        if !d.allowed {
                            Some(Update::Declined(d))
                        } else if store.set(key, &d.new_state.to_bytes(), 0) == Write::Ok {
                            Some(Update::Written(d))
                        } else {
                            Some(Update::Exhausted)
                        }
                    }
                    Read::Found(bytes, cas) => {
                        first = Some(Read::Found(bytes, cas));
                        None
                    }
                    Read::Error => Some(Update::Exhausted),
                };
                unlock(store, &mine);
                if let Some(outcome) = outcome {
                    return outcome;
                }
            }
        }
    }
    Update::Exhausted
}

fn state_of(read: &Read) -> Option<WindowState> {
    match read {
        Read::Found(bytes, _) => WindowState::decode(bytes),
        _ => None,
    }
}

/// Request limits: admit `cost` units if every rate allows it, counting them in every slot;
/// a rejected request counts nothing (writes already made are refunded). See the module docs of
/// [`crate::limits`] for the protocol.
pub fn acquire<S: SharedStore>(
    store: &mut S,
    strategy: Strategy,
    slots: &[Slot],
    now_ms: u64,
    cost: u64,
    owner: u64,
    tries: Tries,
) -> Acquire {
    // 1. Read everything and decide without writing: a rejected request is one read per rate.
    let mut reads = Vec::with_capacity(slots.len());
    let mut decisions = Vec::with_capacity(slots.len());
    for slot in slots {
        let read = store.get(&slot.key);
        if read == Read::Error {
            return Acquire::Exhausted;
        }
        decisions.push(try_acquire(
            strategy,
            &slot.rate,
            state_of(&read),
            now_ms,
            cost,
        ));
        reads.push(read);
    }
    let combined = combine(&decisions);
    if !combined.allowed {
        return Acquire::Rejected(combined);
    }
    // 2. Write each rate by CAS, deciding again on conflicts.
    let mut written: Vec<(usize, u64)> = Vec::new();
    for (i, (slot, read)) in slots.iter().zip(reads).enumerate() {
        let rate = slot.rate;
        let mut decide = |s: Option<WindowState>| try_acquire(strategy, &rate, s, now_ms, cost);
        let outcome = update(
            store,
            &slot.key,
            now_ms,
            owner,
            tries,
            Some(read),
            &mut decide,
        );
        match outcome {
            Update::Written(d) => {
                written.push((i, d.new_state.window_start_ms));
                if let Some(slot_decision) = decisions.get_mut(i) {
                    *slot_decision = d;
                }
            }
            Update::Declined(d) => {
                undo(store, slots, &written, now_ms, cost, owner, tries);
                if let Some(slot_decision) = decisions.get_mut(i) {
                    *slot_decision = d;
                }
                // Only the refusing rate counts for the reply.
                let refusing: Vec<Decision> =
                    decisions.iter().filter(|d| !d.allowed).copied().collect();
                let mut c = combine(&refusing);
                c.first_failing = Some(i);
                return Acquire::Rejected(c);
            }
            Update::Exhausted => {
                undo(store, slots, &written, now_ms, cost, owner, tries);
                return Acquire::Exhausted;
            }
        }
    }
    Acquire::Allowed(combine(&decisions))
}

fn undo<S: SharedStore>(
    store: &mut S,
    slots: &[Slot],
    written: &[(usize, u64)],
    now_ms: u64,
    cost: u64,
    owner: u64,
    tries: Tries,
) {
    for (i, window_start) in written {
        let Some(slot) = slots.get(*i) else { continue };
        let rate = slot.rate;
        let mut decide = |s: Option<WindowState>| Decision {
            allowed: true,
            new_state: refund(&rate, s, now_ms, *window_start, cost),
            remaining: 0,
            reset_after_ms: 0,
            limit: rate.amount,
        };
        let _ = update(store, &slot.key, now_ms, owner, tries, None, &mut decide);
    }
}

/// Token quotas before the request: admitted while every rate's charged use is below its amount.
/// Reads only.
pub fn check_all<S: SharedStore>(
    store: &mut S,
    strategy: Strategy,
    slots: &[Slot],
    now_ms: u64,
) -> Acquire {
    let mut decisions = Vec::with_capacity(slots.len());
    for slot in slots {
        let read = store.get(&slot.key);
        if read == Read::Error {
            return Acquire::Exhausted;
        }
        decisions.push(check(strategy, &slot.rate, state_of(&read), now_ms));
    }
    let combined = combine(&decisions);
    if combined.allowed {
        Acquire::Allowed(combined)
    } else {
        Acquire::Rejected(combined)
    }
}

/// Token quotas after the response: adds `tokens` to every slot. Returns how many slots could
/// not be charged (retries ran out).
pub fn charge_all<S: SharedStore>(
    store: &mut S,
    strategy: Strategy,
    slots: &[Slot],
    now_ms: u64,
    tokens: u64,
    owner: u64,
    tries: Tries,
) -> usize {
    let mut failed = 0;
    for slot in slots {
        let rate = slot.rate;
        let mut decide = |s: Option<WindowState>| Decision {
            allowed: true,
            new_state: charge(strategy, &rate, s, now_ms, tokens),
            remaining: 0,
            reset_after_ms: 0,
            limit: rate.amount,
        };
        if let Update::Exhausted = update(store, &slot.key, now_ms, owner, tries, None, &mut decide)
        {
            failed += 1;
        }
    }
    failed
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    /// Envoy's semantics: CAS checked only on existing keys, 0 = unconditional, tokens never 0.
    #[derive(Default)]
    struct Inner {
        map: HashMap<String, (Vec<u8>, u32)>,
        next: u32,
    }

    #[derive(Clone, Default)]
    struct Mem(Arc<Mutex<Inner>>);

    impl SharedStore for Mem {
        fn get(&mut self, key: &str) -> Read {
            let g = self.0.lock().unwrap();
            match g.map.get(key) {
                Some((v, c)) => Read::Found(v.clone(), *c),
                None => Read::Missing,
            }
        }
        fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Write {
            let mut g = self.0.lock().unwrap();
            g.next += 1;
            let token = g.next;
            match g.map.get_mut(key) {
                Some(entry) => {
                    if cas != 0 && cas != entry.1 {
                        return Write::Mismatch;
                    }
                    *entry = (value.to_vec(), token);
                }
                None => {
                    g.map.insert(key.to_string(), (value.to_vec(), token));
                }
            }
            Write::Ok
        }
    }

    fn slot(key: &str, amount: u64, period_ms: u64) -> Slot {
        Slot {
            key: key.into(),
            rate: Rate { amount, period_ms },
        }
    }

    fn allowed(a: Acquire) -> bool {
        matches!(a, Acquire::Allowed(_))
    }

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn counts_up_to_the_limit_then_rejects() {
        let mut s = Mem::default();
        let slots = [slot("k", 3, 60_000)];
        let got: Vec<bool> = (0..5)
            .map(|_| {
                allowed(acquire(
                    &mut s,
                    Strategy::FixedWindow,
                    &slots,
                    T0,
                    1,
                    1,
                    Tries::default(),
                ))
            })
            .collect();
        assert_eq!(got, [true, true, true, false, false]);
        // Next window.
        assert!(allowed(acquire(
            &mut s,
            Strategy::FixedWindow,
            &slots,
            T0 + 60_000,
            1,
            1,
            Tries::default()
        )));
    }

    #[test]
    fn all_rates_must_hold_and_a_rejection_counts_nothing() {
        let mut s = Mem::default();
        let slots = [slot("s", 3, 1_000), slot("m", 5, 60_000)];
        let mut passed = 0;
        for i in 0..20 {
            // Four per second for five seconds: the per-second rate cuts at 3, the minute at 5.
            let now = T0 - T0 % 60_000 + (i / 4) * 1_000;
            if allowed(acquire(
                &mut s,
                Strategy::FixedWindow,
                &slots,
                now,
                1,
                1,
                Tries::default(),
            )) {
                passed += 1;
            }
        }
        assert_eq!(passed, 5);
        match acquire(
            &mut s,
            Strategy::FixedWindow,
            &slots,
            T0 - T0 % 60_000 + 10_000,
            1,
            1,
            Tries::default(),
        ) {
            Acquire::Rejected(c) => {
                assert_eq!(c.first_failing, Some(1));
                assert_eq!(c.limit, 5);
            }
            other => panic!("{other:?}"),
        }
        // The per-second slot was refunded/never charged by the rejected ones.
        let state = WindowState::decode(match &s.get("s") {
            Read::Found(v, _) => v,
            _ => panic!(),
        })
        .unwrap();
        assert!(state.current <= 3);
    }

    #[test]
    fn conflicting_rate_refunds_the_earlier_ones() {
        let mut s = Mem::default();
        let slots = [slot("a", 10, 60_000), slot("b", 1, 60_000)];
        // Someone else fills `b` between our read and our write: simulate by pre-filling `b`
        // after the read via a wrapper.
        struct Sneaky {
            inner: Mem,
            armed: bool,
        }
        impl SharedStore for Sneaky {
            fn get(&mut self, key: &str) -> Read {
                self.inner.get(key)
            }
            fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Write {
                if key == "b" && self.armed {
                    self.armed = false;
                    let full = try_acquire(
                        Strategy::FixedWindow,
                        &Rate {
                            amount: 1,
                            period_ms: 60_000,
                        },
                        None,
                        T0,
                        1,
                    );
                    let mut inner = self.inner.clone();
                    inner.set("b", &full.new_state.encode(), 0);
                }
                self.inner.set(key, value, cas)
            }
        }
        // `b` exists (count 0), so our write is a CAS that the sneaky write makes fail.
        let empty = try_acquire(
            Strategy::FixedWindow,
            &Rate {
                amount: 1,
                period_ms: 60_000,
            },
            None,
            T0,
            0,
        );
        s.set("b", &empty.new_state.encode(), 0);
        let mut sneaky = Sneaky {
            inner: s.clone(),
            armed: true,
        };
        match acquire(
            &mut sneaky,
            Strategy::FixedWindow,
            &slots,
            T0,
            1,
            1,
            Tries::default(),
        ) {
            Acquire::Rejected(c) => assert_eq!(c.first_failing, Some(1)),
            other => panic!("{other:?}"),
        }
        let a = match s.get("a") {
            Read::Found(v, _) => WindowState::decode(&v).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(a.current, 0, "the write to `a` was refunded");
    }

    #[test]
    fn exactly_n_pass_under_real_threads_on_fresh_keys() {
        // Many rounds, each on a fresh key, so the creation race is exercised every time. Preempted OS
        // threads contend harder than Envoy workers: a generous CAS bound keeps this about exactness.
        let tries = Tries {
            cas: 100_000,
            ..Tries::default()
        };
        for round in 0..40 {
            let store = Mem::default();
            let n = 1 + round % 7;
            let slots = Arc::new(vec![
                slot(&format!("r{round}a"), n as u64, 60_000),
                slot(&format!("r{round}b"), 1_000, 3_600_000),
            ]);
            let handles: Vec<_> = (0..16)
                .map(|t| {
                    let mut store = store.clone();
                    let slots = slots.clone();
                    std::thread::spawn(move || {
                        (0..4)
                            .filter(|_| {
                                allowed(acquire(
                                    &mut store,
                                    Strategy::SlidingWindow,
                                    &slots,
                                    T0,
                                    1,
                                    t,
                                    tries,
                                ))
                            })
                            .count()
                    })
                })
                .collect();
            let passed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(passed, n, "round {round}");
            let b = match store.clone().get(&format!("r{round}b")) {
                Read::Found(v, _) => WindowState::decode(&v).unwrap(),
                other => panic!("{other:?}"),
            };
            assert_eq!(b.current as usize, n, "refunds keep the second rate exact");
        }
    }

    #[test]
    fn charges_are_never_lost_under_threads() {
        // 8 preempted OS threads contend far harder than Envoy's workers do; give the CAS loop room so
        // this checks for lost updates, not the retry bound (exhaustion has its own tests).
        let tries = Tries {
            cas: 100_000,
            ..Tries::default()
        };
        let store = Mem::default();
        let slots = Arc::new(vec![slot("t", 1_000_000, 86_400_000)]);
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let mut store = store.clone();
                let slots = slots.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        assert_eq!(
                            charge_all(&mut store, Strategy::FixedWindow, &slots, T0, 7, t, tries),
                            0
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut s = store.clone();
        let st = match s.get("t") {
            Read::Found(v, _) => WindowState::decode(&v).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(st.current, 8 * 50 * 7);
        match check_all(&mut s, Strategy::FixedWindow, &slots, T0) {
            Acquire::Allowed(c) => assert_eq!(c.remaining, 1_000_000 - 2_800),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quota_check_rejects_at_or_above_the_amount() {
        let mut s = Mem::default();
        let slots = [slot("q", 100, 60_000)];
        assert!(allowed(check_all(
            &mut s,
            Strategy::FixedWindow,
            &slots,
            T0
        )));
        charge_all(
            &mut s,
            Strategy::FixedWindow,
            &slots,
            T0,
            150,
            1,
            Tries::default(),
        );
        match check_all(&mut s, Strategy::FixedWindow, &slots, T0) {
            Acquire::Rejected(c) => {
                assert_eq!(c.remaining, 0);
                assert!(c.reset_after_ms > 0);
            }
            other => panic!("{other:?}"),
        }
        let next = T0 - T0 % 60_000 + 60_000;
        assert!(allowed(check_all(
            &mut s,
            Strategy::FixedWindow,
            &slots,
            next
        )));
    }

    #[test]
    fn a_held_lock_blocks_creation_until_it_is_stale() {
        let mut s = Mem::default();
        s.set(LOCK_KEY, &lock_value(T0, 99), 0);
        let slots = [slot("new", 5, 60_000)];
        let few = Tries {
            cas: 4,
            lock_spins: 10,
        };
        assert_eq!(
            acquire(&mut s, Strategy::FixedWindow, &slots, T0 + 10, 1, 1, few),
            Acquire::Exhausted
        );
        assert_eq!(s.get("new"), Read::Missing, "exhausted counts nothing");
        // Abandoned: taken over.
        assert!(allowed(acquire(
            &mut s,
            Strategy::FixedWindow,
            &slots,
            T0 + LOCK_STALE_MS,
            1,
            1,
            few
        )));
        // And released again.
        assert!(matches!(s.get(LOCK_KEY), Read::Found(v, _) if v == UNLOCKED));
    }

    #[test]
    fn host_errors_are_exhausted_never_allowed() {
        struct Broken;
        impl SharedStore for Broken {
            fn get(&mut self, _: &str) -> Read {
                Read::Error
            }
            fn set(&mut self, _: &str, _: &[u8], _: u32) -> Write {
                Write::Error
            }
        }
        let slots = [slot("x", 5, 60_000)];
        assert_eq!(
            acquire(
                &mut Broken,
                Strategy::FixedWindow,
                &slots,
                T0,
                1,
                1,
                Tries::default()
            ),
            Acquire::Exhausted
        );
        assert_eq!(
            check_all(&mut Broken, Strategy::FixedWindow, &slots, T0),
            Acquire::Exhausted
        );
    }

    #[test]
    fn cas_exhaustion_under_constant_conflict() {
        // Every write conflicts: the bounded loop gives up.
        struct Hostile(Mem);
        impl SharedStore for Hostile {
            fn get(&mut self, key: &str) -> Read {
                self.0.get(key)
            }
            fn set(&mut self, _: &str, _: &[u8], _: u32) -> Write {
                Write::Mismatch
            }
        }
        let mut m = Mem::default();
        let st = try_acquire(
            Strategy::FixedWindow,
            &Rate {
                amount: 5,
                period_ms: 60_000,
            },
            None,
            T0,
            1,
        );
        m.set("x", &st.new_state.encode(), 0);
        let slots = [slot("x", 5, 60_000)];
        assert_eq!(
            acquire(
                &mut Hostile(m),
                Strategy::FixedWindow,
                &slots,
                T0,
                1,
                1,
                Tries::default()
            ),
            Acquire::Exhausted
        );
    }
}
