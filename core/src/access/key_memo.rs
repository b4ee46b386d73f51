//! [`KeyMemo`]: the forward keys a worker accepted last, so a client that keeps sending the same
//! key skips the SHA-256 and table lookup of [`super::Access::lookup`].
//!
//! Only keys the full lookup accepted are remembered, with the index it returned, so a hit gives
//! exactly the answer the lookup would give. Presented keys are compared with every entry in
//! constant time (no early exit, no position-dependent timing); a hit is faster than a miss, but
//! it only reveals that the key is valid, which the answer to the request reveals anyway. The memo
//! belongs to the compiled rules ([`super::Access`]): a configuration reload builds new rules with
//! an empty memo, so a rotated or revoked key is never answered from it.

use crate::secret::constant_time_eq;
use std::cell::{Cell, RefCell};

/// Accepted keys a memo holds (the oldest is replaced first).
pub const KEY_MEMO_SIZE: usize = 8;

/// The last [`KEY_MEMO_SIZE`] accepted forward keys of one worker and their indexes.
#[derive(Default)]
pub struct KeyMemo {
    entries: RefCell<Vec<(Vec<u8>, usize)>>,
    /// Slot the next remembered key replaces once the memo is full.
    next: Cell<usize>,
}

impl KeyMemo {
    /// The index remembered for `presented`. Every entry is compared, in constant time.
    pub fn get(&self, presented: &[u8]) -> Option<usize> {
        let entries = self.entries.try_borrow().ok()?;
        let mut found = None;
        for (key, index) in entries.iter() {
            if constant_time_eq(key, presented) && found.is_none() {
                found = Some(*index);
            }
        }
        found
    }

    /// Remembers a key the full lookup accepted as forward key `index`.
    pub fn remember(&self, presented: &[u8], index: usize) {
        let Ok(mut entries) = self.entries.try_borrow_mut() else {
            return;
        };
        if entries.len() < KEY_MEMO_SIZE {
            entries.push((presented.to_vec(), index));
            return;
        }
        let slot = self.next.get() % KEY_MEMO_SIZE;
        if let Some(entry) = entries.get_mut(slot) {
            *entry = (presented.to_vec(), index);
        }
        self.next.set((slot + 1) % KEY_MEMO_SIZE);
    }

    pub fn len(&self) -> usize {
        self.entries.try_borrow().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A copy starts empty: it is only a cache.
impl Clone for KeyMemo {
    fn clone(&self) -> Self {
        KeyMemo::default()
    }
}

/// Never shows the keys.
impl std::fmt::Debug for KeyMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMemo")
            .field("entries", &self.len())
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn remembers_accepted_keys_only_by_exact_bytes() {
        let memo = KeyMemo::default();
        assert_eq!(memo.get(b"fk-a"), None);
        memo.remember(b"fk-a", 3);
        assert_eq!(memo.get(b"fk-a"), Some(3));
        assert_eq!(memo.get(b"fk-A"), None);
        assert_eq!(memo.get(b"fk-a "), None);
        assert_eq!(memo.get(b"fk-"), None);
        assert_eq!(memo.get(b""), None);
    }

    #[test]
    fn replaces_the_oldest_when_full() {
        let memo = KeyMemo::default();
        for i in 0..KEY_MEMO_SIZE + 2 {
            memo.remember(format!("fk-{i}").as_bytes(), i);
        }
        assert_eq!(memo.len(), KEY_MEMO_SIZE);
        assert_eq!(memo.get(b"fk-0"), None);
        assert_eq!(memo.get(b"fk-1"), None);
        for i in 2..KEY_MEMO_SIZE + 2 {
            assert_eq!(memo.get(format!("fk-{i}").as_bytes()), Some(i));
        }
    }

    #[test]
    fn a_clone_is_empty_and_debug_hides_keys() {
        let memo = KeyMemo::default();
        memo.remember(b"fk-secret", 0);
        assert!(memo.clone().is_empty());
        assert!(!format!("{memo:?}").contains("secret"));
    }
}
