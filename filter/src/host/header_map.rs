//! A header map as Envoy hands it over: the serialised buffer is kept and names are looked up in
//! it on demand. No pair is copied into a `String` up front; a value is decoded only when asked
//! for, borrowed as is when it is UTF-8 (nearly always), and replaced lossily (invalid bytes →
//! U+FFFD) at most once per value otherwise.
//!
//! The proxy-wasm serialisation: `count`, then `count` × (key length, value length), all u32
//! little-endian, then each key and value followed by a NUL. Truncated input gives the pairs that
//! are complete.

use llm_forward_core::headers::HeaderLookup;
use std::cell::OnceCell;

#[derive(Debug, Default)]
pub struct HeaderMap {
    bytes: Vec<u8>,
    /// Lossy copies of the values that were asked for and are not UTF-8, by pair index; created
    /// on the first such value.
    lossy: OnceCell<Box<[OnceCell<Box<str>>]>>,
}

impl HeaderMap {
    /// A map over the serialised pairs `bytes`.
    pub fn new(bytes: Vec<u8>) -> HeaderMap {
        HeaderMap {
            bytes,
            lossy: OnceCell::new(),
        }
    }

    /// The value bytes of pair `index` as text.
    fn text<'a>(&'a self, index: usize, value: &'a [u8]) -> &'a str {
        if let Ok(s) = std::str::from_utf8(value) {
            return s;
        }
        let cells = self.lossy.get_or_init(|| {
            let count = declared_count(&self.bytes).min(self.bytes.len() / 8);
            (0..count).map(|_| OnceCell::new()).collect()
        });
        match cells.get(index) {
            Some(cell) => cell.get_or_init(|| String::from_utf8_lossy(value).into()),
            // Unreachable: every complete pair's index is below the count.
            None => "",
        }
    }
}

impl HeaderLookup for HeaderMap {
    fn each_value<'a>(&'a self, name: &str, f: &mut dyn FnMut(&'a str) -> bool) {
        for_each_raw_pair(&self.bytes, |index, key, value| {
            if !key.eq_ignore_ascii_case(name.as_bytes()) {
                return true;
            }
            f(self.text(index, value))
        });
    }
}

fn word(bytes: &[u8], at: usize) -> Option<usize> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(raw)).ok()
}

fn declared_count(bytes: &[u8]) -> usize {
    word(bytes, 0).unwrap_or(0)
}

/// Calls `f` with the index, key and value of each complete pair of a serialised map until it
/// returns false.
fn for_each_raw_pair<'a>(bytes: &'a [u8], mut f: impl FnMut(usize, &'a [u8], &'a [u8]) -> bool) {
    let Some(count) = word(bytes, 0) else {
        return;
    };
    let Some(mut p) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
        return;
    };
    for n in 0..count {
        let s = 4 + n * 8;
        let (Some(key_len), Some(value_len)) = (word(bytes, s), word(bytes, s + 4)) else {
            break;
        };
        let Some(key) = p.checked_add(key_len).and_then(|end| bytes.get(p..end)) else {
            break;
        };
        p += key_len + 1;
        let Some(value) = p.checked_add(value_len).and_then(|end| bytes.get(p..end)) else {
            break;
        };
        p += value_len + 1;
        if !f(n, key, value) {
            break;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::HeaderMap;
    use llm_forward_core::headers::HeaderLookup;

    fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend_from_slice(k);
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    #[test]
    fn values_are_found_by_name_decoded_lossily_and_never_panic() {
        let bytes = encode(&[
            (b":path", b"/v1"),
            (b"x-latin1", b"caf\xe9"),
            (b"content-type", b"a"),
            (b"content-type", b"b"),
        ]);
        let map = HeaderMap::new(bytes.clone());
        assert_eq!(map.first(":path"), Some("/v1"));
        assert_eq!(map.first("x-latin1"), Some("caf\u{fffd}"));
        // The lossy copy is made once and kept.
        let a = map.first("x-latin1").unwrap().as_ptr();
        assert_eq!(map.first("x-latin1").unwrap().as_ptr(), a);
        assert_eq!(map.first("content-type"), Some("a"));
        assert_eq!(map.count("content-type"), 2);
        assert_eq!(map.first("missing"), None);
        // The first of repeated names.
        let map = HeaderMap::new(encode(&[(b":status", b"200"), (b":status", b"500")]));
        assert_eq!(map.first(":status"), Some("200"));
        // Every truncation gives a prefix of the pairs, never a panic.
        for cut in 0..bytes.len() {
            let map = HeaderMap::new(bytes[..cut].to_vec());
            assert!(map.count("content-type") <= 2);
            let _ = map.first("x-latin1");
        }
        let huge = HeaderMap::new(vec![0xff, 0xff, 0xff, 0xff]);
        assert_eq!(huge.first(":path"), None);
        assert_eq!(HeaderMap::default().first(":path"), None);
    }
}
