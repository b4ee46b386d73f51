//! Query-string parameters: reading and replacing one, with percent-decoding and -encoding.

/// The decoded value of query parameter `name` in `path` (`/x?key=abc` → `abc`).
pub fn query_param(path: &str, name: &str) -> Option<String> {
    let (_, query) = path.split_once('?')?;
    let query = query.split('#').next().unwrap_or("");
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// `path` with every `name=` parameter replaced by `name=<value>` (percent-encoded), or removed
/// when `value` is `None`. Other parameters keep their order and bytes.
pub fn replace_query_param(path: &str, name: &str, value: Option<&str>) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return match value {
            Some(v) => format!("{path}?{name}={}", percent_encode(v)),
            None => path.to_string(),
        };
    };
    let mut out: Vec<String> = Vec::new();
    let mut replaced = false;
    for pair in query.split('&') {
        let k = pair.split_once('=').map(|(k, _)| k).unwrap_or(pair);
        if percent_decode(k) == name {
            if let (Some(v), false) = (value, replaced) {
                out.push(format!("{name}={}", percent_encode(v)));
                replaced = true;
            }
        } else if !pair.is_empty() {
            out.push(pair.to_string());
        }
    }
    if let (Some(v), false) = (value, replaced) {
        out.push(format!("{name}={}", percent_encode(v)));
    }
    if out.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", out.join("&"))
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b.get(i).copied().unwrap_or(0);
        if c == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if c == b'+' { b' ' } else { c });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
