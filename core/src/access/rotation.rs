//! Upstream key rotation and cooldowns: picking the next key of a pool, and the byte codec of the
//! cooldown table and rotation counter the filter keeps in shared data.

/// Picks the upstream key for one request.
///
/// `counter` is the rotation position of the pool; `cooling_until[i]` is the wall-clock ms until
/// which upstream key `i` cools down (missing = not cooling). Starting at `counter % len`, the first
/// key that is not cooling is taken; when all are cooling, the one whose cooldown ends first (the
/// least recently failed). Returns the key index and the next counter value (past the pick, so the
/// rotation continues after it).
pub fn pick_key(
    pool: &[usize],
    counter: u64,
    cooling_until: &[u64],
    now_ms: u64,
) -> Option<(usize, u64)> {
    let len = pool.len() as u64;
    if len == 0 {
        return None;
    }
    let until = |k: usize| cooling_until.get(k).copied().unwrap_or(0);
    let start = counter % len;
    let mut best: Option<(u64, usize, u64)> = None; // (until, key, offset)
    for off in 0..len {
        let slot = usize::try_from((start + off) % len).unwrap_or(0);
        let key = *pool.get(slot)?;
        let u = until(key);
        if u <= now_ms {
            return Some((key, counter.wrapping_add(off + 1)));
        }
        if !matches!(best, Some((bu, _, _)) if bu <= u) {
            best = Some((u, key, off));
        }
    }
    best.map(|(_, key, off)| (key, counter.wrapping_add(off + 1)))
}

/// Reads the cooldown table (8 bytes little-endian per upstream key); short or missing data is zero.
pub fn decode_cooldowns(bytes: &[u8], keys: usize) -> Vec<u64> {
    (0..keys)
        .map(|i| {
            bytes
                .get(i * 8..i * 8 + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes)
                .unwrap_or(0)
        })
        .collect()
}

pub fn encode_cooldowns(table: &[u64]) -> Vec<u8> {
    table.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A rotation counter from shared data (8 bytes little-endian; anything else counts as 0).
pub fn decode_counter(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// Statuses that put the upstream key in cooldown.
pub fn is_key_failure(status: u32) -> bool {
    matches!(status, 401 | 403 | 429)
}
