//! Byte-level work on a streamed (SSE) response for limits: cutting it into whole events (the unit
//! output pacing counts, and the unit the usage rewrite works on), and removing what the gateway
//! itself caused by injecting `stream_options.include_usage` when the client did not ask for it.
//!
//! Events are passed through as the exact bytes received; only an event that is dropped or
//! rewritten changes.

use serde_json::Value;

/// Cuts a byte stream into raw SSE events, each ending with its blank line (`\n\n`, `\r\n\r\n`,
/// `\r\r`, or mixes). Bytes are never changed or lost: the concatenation of everything returned
/// is the input. Memory: at most one unfinished event is held (bounded by `max_pending`, past which
/// the pending bytes are returned as they are).
#[derive(Debug, Clone)]
pub struct EventSplitter {
    pending: Vec<u8>,
    /// Where scanning resumes in `pending`.
    scanned: usize,
    /// The current line has content (not a blank line so far).
    line_has_bytes: bool,
    /// The previous byte was a CR (a following LF belongs to the same line ending).
    after_cr: bool,
    /// The pending event has a non-line-ending byte.
    event_has_bytes: bool,
    /// An event ended with a CR at this index of `pending`; waiting for the next byte.
    deferred_end: Option<usize>,
    max_pending: usize,
}

impl EventSplitter {
    pub fn new(max_pending: usize) -> Self {
        EventSplitter {
            pending: Vec::new(),
            scanned: 0,
            line_has_bytes: false,
            after_cr: false,
            event_has_bytes: false,
            deferred_end: None,
            max_pending,
        }
    }

    /// Feeds a chunk; returns the events it completed. An event that ends with a CR is returned
    /// once the next byte shows whether a LF belongs to it.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        let mut i = self.scanned;
        while let Some(&b) = self.pending.get(i) {
            if let Some(end) = self.deferred_end.take() {
                // The event ended with a CR at `end`; a LF right after it is part of it.
                let through = if b == b'\n' { end + 1 } else { end };
                out.push(
                    self.pending
                        .get(start..=through)
                        .unwrap_or_default()
                        .to_vec(),
                );
                start = through + 1;
                self.after_cr = false;
                if b == b'\n' {
                    i += 1;
                    continue;
                }
            }
            match b {
                b'\n' if self.after_cr => {
                    // Second half of a CRLF: the line ending was already counted.
                    self.after_cr = false;
                }
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    if self.line_has_bytes {
                        self.line_has_bytes = false;
                    } else if self.event_has_bytes {
                        // A blank line: the event ends here.
                        self.event_has_bytes = false;
                        if b == b'\r' {
                            self.deferred_end = Some(i);
                        } else {
                            out.push(self.pending.get(start..=i).unwrap_or_default().to_vec());
                            start = i + 1;
                        }
                    }
                }
                _ => {
                    self.after_cr = false;
                    self.line_has_bytes = true;
                    self.event_has_bytes = true;
                }
            }
            i += 1;
        }
        let start = start.min(self.pending.len());
        self.pending.drain(..start);
        if let Some(end) = self.deferred_end.as_mut() {
            *end -= start;
        }
        self.scanned = self.pending.len();
        if self.pending.len() > self.max_pending {
            // Not SSE as expected, or an enormous event: pass it on as it is.
            out.push(std::mem::take(&mut self.pending));
            self.scanned = 0;
            self.deferred_end = None;
        }
        out
    }

    /// The end of the stream: whatever is pending (an unfinished event), if anything.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        self.scanned = 0;
        self.line_has_bytes = false;
        self.event_has_bytes = false;
        self.after_cr = false;
        self.deferred_end = None;
        let rest = std::mem::take(&mut self.pending);
        (!rest.is_empty()).then_some(rest)
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }
}

/// What to do with one raw event of a stream whose `include_usage` the gateway injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageRewrite {
    Keep,
    /// The usage-only chunk (`"choices":[]` with a `usage` object): the client did not ask for it.
    Drop,
    /// The event with the top-level `"usage":null` removed, which `include_usage` adds to every
    /// other chunk.
    Replace(Vec<u8>),
}

/// Decides [`UsageRewrite`] for one raw event (as [`EventSplitter`] returns them). Anything it
/// does not fully understand (several `data` lines, no JSON object) is kept unchanged.
pub fn rewrite_injected_usage(event: &[u8]) -> UsageRewrite {
    let Ok(text) = std::str::from_utf8(event) else {
        return UsageRewrite::Keep;
    };
    let mut data_line: Option<&str> = None;
    for line in sse_lines(text) {
        if let Some(rest) = line.strip_prefix("data:") {
            if data_line.is_some() {
                return UsageRewrite::Keep;
            }
            data_line = Some(rest);
        }
    }
    let Some(data) = data_line else {
        return UsageRewrite::Keep;
    };
    if !data.contains("\"usage\"") {
        return UsageRewrite::Keep;
    }
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(data.trim()) else {
        return UsageRewrite::Keep;
    };
    match obj.get("usage") {
        Some(Value::Object(_)) => {
            let no_choices = obj
                .get("choices")
                .is_none_or(|c| c.as_array().is_some_and(|a| a.is_empty()));
            if no_choices {
                UsageRewrite::Drop
            } else {
                UsageRewrite::Keep
            }
        }
        Some(Value::Null) => {
            obj.remove("usage");
            let want = Value::Object(obj);
            for pattern in [
                ",\"usage\":null",
                "\"usage\":null,",
                ", \"usage\": null",
                "\"usage\": null, ",
            ] {
                if let Some(pos) = text.find(pattern) {
                    let mut candidate = String::with_capacity(text.len());
                    candidate.push_str(text.get(..pos).unwrap_or_default());
                    candidate.push_str(text.get(pos + pattern.len()..).unwrap_or_default());
                    // Accept only if the data now parses to exactly the object without `usage`.
                    let ok = sse_lines(&candidate)
                        .find_map(|l| l.strip_prefix("data:"))
                        .and_then(|d| serde_json::from_str::<Value>(d.trim()).ok())
                        .is_some_and(|v| v == want);
                    if ok {
                        return UsageRewrite::Replace(candidate.into_bytes());
                    }
                }
            }
            UsageRewrite::Keep
        }
        _ => UsageRewrite::Keep,
    }
}

/// The lines of an event as SSE reads them: CR, LF and CRLF all end a line (`str::lines` does not
/// split on a lone CR, so a `data:` line holding one would be read differently from clients).
fn sse_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\r', '\n'])
}

/// Whether the client's JSON request asked for usage in the stream.
pub fn asked_for_usage(body: &Value) -> bool {
    body.get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Sets `stream_options.include_usage = true` in a streaming request body; true when the body
/// changed. Other `stream_options` fields are kept; a non-object `stream_options` is replaced.
pub fn inject_include_usage(body: &mut Value) -> bool {
    let Some(obj) = body.as_object_mut() else {
        return false;
    };
    if obj.get("stream").and_then(Value::as_bool) != Some(true) {
        return false;
    }
    let options = obj
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Default::default()));
    if !options.is_object() {
        *options = Value::Object(Default::default());
    }
    match options.as_object_mut() {
        Some(o) if o.get("include_usage").and_then(Value::as_bool) != Some(true) => {
            o.insert("include_usage".into(), Value::Bool(true));
            true
        }
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn split_all(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = EventSplitter::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            out.extend(s.feed(c));
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn a_lone_cr_ends_the_data_line_as_clients_read_it() {
        // Clients read `data: {"id":"1"` (not JSON) and an ignored field line: nothing to rewrite,
        // although the raw bytes hold `,"usage":null`. Found by the `sse` fuzz target.
        let event = b"data: {\"id\":\"1\"\r,\"choices\":[{\"index\":0}],\"usage\":null}\n\n";
        assert_eq!(rewrite_injected_usage(event), UsageRewrite::Keep);
        let fine = b"data: {\"id\":\"1\",\"choices\":[{\"index\":0}],\"usage\":null}\r\r";
        assert_eq!(
            rewrite_injected_usage(fine),
            UsageRewrite::Replace(b"data: {\"id\":\"1\",\"choices\":[{\"index\":0}]}\r\r".to_vec())
        );
    }

    #[test]
    fn splits_on_blank_lines_of_every_kind() {
        let out = split_all(&[b"data: a\n\ndata: b\r\n\r\ndata: c\r\rdata: d"]);
        let strs: Vec<String> = out
            .iter()
            .map(|e| String::from_utf8_lossy(e).into())
            .collect();
        assert_eq!(
            strs,
            ["data: a\n\n", "data: b\r\n\r\n", "data: c\r\r", "data: d"]
        );
    }

    #[test]
    fn chunking_does_not_matter() {
        let whole = b"data: {\"x\":1}\r\n\r\n: comment\n\ndata: 2\nid: 3\n\ndata: [DONE]\n\n";
        let expected = split_all(&[whole]);
        assert_eq!(expected.len(), 4);
        for cut in 0..whole.len() {
            let (a, b) = whole.split_at(cut);
            assert_eq!(split_all(&[a, b]), expected, "cut at {cut}");
        }
    }

    #[test]
    fn crlf_split_across_chunks_stays_with_its_event() {
        let out = split_all(&[b"data: a\r\n\r", b"\ndata: b\n\n"]);
        assert_eq!(
            out,
            vec![b"data: a\r\n\r\n".to_vec(), b"data: b\n\n".to_vec()]
        );
    }

    #[test]
    fn oversized_pending_is_passed_on() {
        let mut s = EventSplitter::new(8);
        let out = s.feed(b"0123456789");
        assert_eq!(out, vec![b"0123456789".to_vec()]);
        assert_eq!(s.pending_bytes(), 0);
    }

    #[test]
    fn usage_chunk_is_dropped_and_nulls_removed() {
        let usage = b"data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n";
        assert_eq!(rewrite_injected_usage(usage), UsageRewrite::Drop);
        let with_null = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n";
        assert_eq!(
            rewrite_injected_usage(with_null),
            UsageRewrite::Replace(b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n".to_vec())
        );
        let first = b"data: {\"usage\":null,\"id\":\"c\",\"choices\":[]}\n\n";
        assert_eq!(
            rewrite_injected_usage(first),
            UsageRewrite::Replace(b"data: {\"id\":\"c\",\"choices\":[]}\n\n".to_vec())
        );
        // Text that merely mentions usage is untouched.
        let text = b"data: {\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\":null\"}}]}\n\n";
        assert_eq!(rewrite_injected_usage(text), UsageRewrite::Keep);
        assert_eq!(
            rewrite_injected_usage(b"data: [DONE]\n\n"),
            UsageRewrite::Keep
        );
        // A usage object next to real choices (some servers) is kept.
        let both = b"data: {\"choices\":[{\"index\":0}],\"usage\":{\"total_tokens\":3}}\n\n";
        assert_eq!(rewrite_injected_usage(both), UsageRewrite::Keep);
    }

    #[test]
    fn injection() {
        let mut b = json!({"model":"m","stream":true,"messages":[]});
        assert!(!asked_for_usage(&b));
        assert!(inject_include_usage(&mut b));
        assert_eq!(b["stream_options"], json!({"include_usage": true}));
        assert!(asked_for_usage(&b));
        assert!(!inject_include_usage(&mut b), "already there");
        let mut keep = json!({"stream":true,"stream_options":{"other":1,"include_usage":false}});
        assert!(inject_include_usage(&mut keep));
        assert_eq!(
            keep["stream_options"],
            json!({"other":1,"include_usage":true})
        );
        let mut not_stream = json!({"stream":false});
        assert!(!inject_include_usage(&mut not_stream));
        assert!(not_stream.get("stream_options").is_none());
    }

    proptest! {
        #[test]
        fn splitting_loses_nothing(data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), Just(b':')], 0..200), cuts in proptest::collection::vec(0usize..200, 0..6)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut prev = 0;
            for c in cuts { chunks.push(&data[prev..c]); prev = c; }
            chunks.push(&data[prev..]);
            let out = split_all(&chunks);
            prop_assert_eq!(out.concat(), data.clone());
            // Same events whatever the chunking.
            prop_assert_eq!(out, split_all(&[&data]));
        }
    }
}
