//! What holding a request body costs the filter's wasm heap, so a per-worker budget can refuse
//! the bodies that would exhaust it (a trapped VM fails every request of its worker).

/// Heap bytes a `serde_json::Value` may take per JSON node (value, array slot or object entry),
/// Vec growth and map nodes included. Generous on purpose: the estimate only has to bound the
/// real cost from above.
pub const BYTES_PER_NODE: u64 = 64;

/// An upper estimate of the heap parsing `body` into a `serde_json::Value` takes, on top of the
/// body itself: every `,` `:` `[` `{` may start a node. Bytes inside strings are counted too
/// (an over-estimate for text with many commas, never an under-estimate). One linear scan.
pub fn json_parse_cost(body: &[u8]) -> u64 {
    let nodes = body
        .iter()
        .filter(|b| matches!(b, b',' | b':' | b'[' | b'{'))
        .count() as u64;
    // A top-level scalar or a one-element container is one node more.
    (nodes + 1).saturating_mul(BYTES_PER_NODE)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn arrays_of_zeros_cost_far_more_than_their_bytes() {
        let zeros = format!("[0{}]", ",0".repeat(1000));
        assert!(json_parse_cost(zeros.as_bytes()) >= 1000 * BYTES_PER_NODE);
        // An ordinary chat request costs a few times its size at most.
        let chat = serde_json::json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "x".repeat(10_000)}]
        })
        .to_string();
        assert!(json_parse_cost(chat.as_bytes()) < chat.len() as u64);
    }

    #[test]
    fn the_estimate_bounds_the_real_value() {
        // serde_json::Value is at most 32 bytes on 64-bit hosts (less on wasm32); each node of
        // `[0,0,…]` is one Value in a Vec that may have doubled.
        let v: serde_json::Value =
            serde_json::from_str(&format!("[0{}]", ",0".repeat(100))).unwrap();
        let real = 101 * 2 * std::mem::size_of::<serde_json::Value>() as u64;
        assert!(json_parse_cost(v.to_string().as_bytes()) >= real);
    }
}
