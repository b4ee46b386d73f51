//! An incremental Server-Sent-Events parser that only observes the stream.
//!
//! The filter sees an SSE response as arbitrary network chunks; it must recover the events to count
//! tokens, log the answer and fill the cache, without holding the response back or changing a byte
//! of it. [`SseParser`] is fed those chunks in order and yields events as soon as their closing blank
//! line arrives.
//!
//! It follows the WHATWG "event stream interpretation" rules (HTML §9.2.6):
//!
//! - a line ends with CRLF, LF or CR. A CR that ends one chunk and a LF that starts the next are one
//!   line ending, so chunking never invents blank lines;
//! - a blank line dispatches the event; an event without any `data` line is not dispatched;
//! - `data` lines are joined with `\n`; one space after the colon is removed; a line without a colon
//!   is a field with an empty value; lines starting with `:` are comments; `event`, `id` and `retry`
//!   are understood, other fields ignored; a leading byte-order mark is skipped;
//! - at the end of the stream an unfinished event is discarded, not dispatched ([`SseParser::finish`]).
//!
//! Bytes are buffered and decoded per complete line, so a UTF-8 character split across chunks comes
//! out whole; invalid UTF-8 becomes U+FFFD.
//!
//! Memory is bounded by `max_buffer`: the unfinished line plus the pending event's `data` and
//! `event` never exceed it. An event that would is dropped whole, [`SseParser::truncated`] turns
//! true, and the parser skips everything up to the next blank line, without buffering, before it
//! parses again. The limit applies to the content, not to how it was chunked: the same bytes give
//! the same events (and the same drops) whatever the chunk boundaries.
//!
//! Each byte is looked at a bounded number of times (no re-scan of the buffer on each feed), and
//! complete lines inside a chunk are parsed in place without being copied.

use std::mem;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event` field; `None` when absent or empty (the type the spec calls `message`).
    pub event: Option<String>,
    /// The `data` lines, joined with `\n`.
    pub data: String,
    /// The last event ID in effect at dispatch. As the spec says, an `id` persists for the events
    /// that follow until another `id` line changes it; `None` while it is empty.
    pub id: Option<String>,
}

/// Incremental SSE parser: [`feed`](SseParser::feed) the response chunks in order, then call
/// [`finish`](SseParser::finish) at the end of the stream.
#[derive(Debug, Clone)]
pub struct SseParser {
    max_buffer: usize,
    /// Bytes of the current line whose line ending has not arrived yet.
    line: Vec<u8>,
    /// The last chunk ended with CR: a LF at the start of the next chunk completes that line ending.
    pending_cr: bool,
    /// No line has ended yet, so the next complete line may start with a byte-order mark.
    at_stream_start: bool,
    /// Dropping an oversized event: everything up to the next blank line is ignored.
    skipping: bool,
    /// While skipping: the current line already has bytes, so its end is not a blank line.
    skip_line_has_bytes: bool,
    truncated: bool,
    /// The pending event's data (without the spec's trailing `\n`).
    data: String,
    /// At least one `data` line arrived for the pending event (its data may still be empty).
    has_data: bool,
    event_type: String,
    last_id: String,
    retry: Option<u64>,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseParser {
    /// A parser whose pending line and event never hold more than `max_buffer` bytes.
    pub fn new(max_buffer: usize) -> Self {
        SseParser {
            max_buffer,
            line: Vec::new(),
            pending_cr: false,
            at_stream_start: true,
            skipping: false,
            skip_line_has_bytes: false,
            truncated: false,
            data: String::new(),
            has_data: false,
            event_type: String::new(),
            last_id: String::new(),
            retry: None,
        }
    }

    /// Parses the next chunk of the stream and appends the events it completes to `out`.
    ///
    /// `out` is only appended to, so the caller can reuse one vector (clearing it) across chunks.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        let mut rest = chunk;
        if self.pending_cr {
            if let Some((&first, tail)) = rest.split_first() {
                self.pending_cr = false;
                if first == b'\n' {
                    rest = tail;
                }
            }
        }
        while let Some((line, tail, cr_at_end)) = split_line(rest) {
            self.end_line(line, out);
            self.pending_cr = cr_at_end;
            rest = tail;
        }
        self.keep_partial(rest);
    }

    /// Ends the stream. Per the spec, an event whose closing blank line never arrived is discarded,
    /// not dispatched; this returns `true` when something was discarded that way (unterminated bytes
    /// or fields of an unfinished event), which tells the caller the stream ended mid-event.
    ///
    /// The buffers are released; the parser then starts over as if new (the `truncated` flag stays).
    pub fn finish(&mut self) -> bool {
        // While skipping, the dropped event has not been closed either.
        let discarded =
            !self.line.is_empty() || self.has_data || !self.event_type.is_empty() || self.skipping;
        let truncated = self.truncated;
        *self = SseParser::new(self.max_buffer);
        self.truncated = truncated;
        discarded
    }

    /// True once an event was dropped because it outgrew `max_buffer`.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Bytes held for the unfinished line and event (never more than `max_buffer`).
    pub fn buffered_bytes(&self) -> usize {
        self.line.len() + self.data.len() + self.event_type.len()
    }

    /// The last valid `retry` field (reconnection time in milliseconds), if any.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Bytes allocated for the pending line and event (capacity, not length).
    #[cfg(test)]
    fn allocated_bytes(&self) -> usize {
        self.line.capacity() + self.data.capacity() + self.event_type.capacity()
    }

    /// The bytes the pending event holds besides the unfinished line.
    fn pending_event_bytes(&self) -> usize {
        self.data.len() + self.event_type.len()
    }

    /// `part` is the end of a line (the line ending itself excluded).
    fn end_line(&mut self, part: &[u8], out: &mut Vec<SseEvent>) {
        if self.skipping {
            let blank = !self.skip_line_has_bytes && part.is_empty();
            self.skip_line_has_bytes = false;
            if blank {
                self.skipping = false;
            }
            self.at_stream_start = false;
            return;
        }
        let line_len = self.line.len().saturating_add(part.len());
        if line_len.saturating_add(self.pending_event_bytes()) > self.max_buffer {
            self.overflow(false);
            self.at_stream_start = false;
            return;
        }
        if self.line.is_empty() {
            // The whole line is inside this chunk: parse it in place.
            self.process_line(part, out);
        } else {
            let mut line = mem::take(&mut self.line);
            reserve_within(&mut line, part.len(), self.max_buffer);
            line.extend_from_slice(part);
            self.process_line(&line, out);
            line.clear();
            self.line = line;
        }
    }

    /// `rest` is the start of a line whose ending has not arrived yet.
    fn keep_partial(&mut self, rest: &[u8]) {
        if rest.is_empty() {
            return;
        }
        if self.skipping {
            self.skip_line_has_bytes = true;
            return;
        }
        let needed = self
            .line
            .len()
            .saturating_add(rest.len())
            .saturating_add(self.pending_event_bytes());
        if needed > self.max_buffer {
            self.overflow(true);
            return;
        }
        reserve_within(&mut self.line, rest.len(), self.max_buffer);
        self.line.extend_from_slice(rest);
    }

    /// Drops the pending event and skips to the next blank line. `mid_line` says whether the line
    /// being dropped is still open (its ending has not been seen).
    fn overflow(&mut self, mid_line: bool) {
        self.truncated = true;
        self.skipping = true;
        self.skip_line_has_bytes = mid_line;
        self.line.clear();
        self.data.clear();
        self.has_data = false;
        self.event_type.clear();
    }

    /// Interprets one complete line (without its line ending).
    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        let line = if mem::replace(&mut self.at_stream_start, false) {
            line.strip_prefix(BOM).unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return, // a comment
            Some(colon) => {
                let (name, from_colon) = line.split_at(colon.min(line.len()));
                let value = from_colon.get(1..).unwrap_or_default();
                (name, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                let value = String::from_utf8_lossy(value);
                let grow = value.len() + usize::from(self.has_data);
                if self.pending_event_bytes().saturating_add(grow) > self.max_buffer {
                    self.overflow(false);
                    return;
                }
                reserve_string_within(&mut self.data, grow, self.max_buffer);
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => {
                let value = String::from_utf8_lossy(value);
                if self.data.len().saturating_add(value.len()) > self.max_buffer {
                    self.overflow(false);
                    return;
                }
                self.event_type.clear();
                self.event_type.push_str(&value);
            }
            // An id containing NUL is ignored, as the spec says.
            b"id" if !value.contains(&0) => {
                self.last_id.clear();
                self.last_id.push_str(&String::from_utf8_lossy(value));
            }
            // Only ASCII digits count; a value too large for u64 is ignored too.
            b"retry" if value.iter().all(u8::is_ascii_digit) => {
                if let Some(ms) = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    /// The blank line: hands the pending event out, if it has data.
    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event_type = mem::take(&mut self.event_type);
        if !mem::replace(&mut self.has_data, false) {
            return;
        }
        out.push(SseEvent {
            event: (!event_type.is_empty()).then_some(event_type),
            data: mem::take(&mut self.data),
            id: (!self.last_id.is_empty()).then(|| self.last_id.clone()),
        });
    }
}

/// Splits `buf` at its first line ending: `(line, rest after the ending, the ending was a CR that is
/// the last byte of buf)`. In that last case the caller must watch for a LF at the start of the next
/// chunk.
fn split_line(buf: &[u8]) -> Option<(&[u8], &[u8], bool)> {
    let eol = find_eol(buf)?;
    let (line, from_eol) = buf.split_at(eol.min(buf.len()));
    match from_eol {
        [b'\r', b'\n', rest @ ..] => Some((line, rest, false)),
        [b'\r'] => Some((line, &[], true)),
        [_, rest @ ..] => Some((line, rest, false)),
        [] => None,
    }
}

/// The position of the first CR or LF, eight bytes at a time (the lines we scan are long JSON
/// chunks, so this is the parser's inner loop).
fn find_eol(buf: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
    const CRS: u64 = u64::from_ne_bytes([b'\r'; 8]);
    // Non-zero exactly when some byte of `x` is zero (the classic "has zero byte" test; it may
    // flag bytes after a real zero byte, never before one, so the first hit is found by a rescan).
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut words = buf.chunks_exact(8);
    let mut offset = 0;
    for word in words.by_ref() {
        if let Ok(bytes) = <[u8; 8]>::try_from(word) {
            let x = u64::from_ne_bytes(bytes);
            if has_zero(x ^ LFS) | has_zero(x ^ CRS) != 0 {
                break;
            }
        }
        offset += 8;
    }
    let tail = buf.get(offset..).unwrap_or_default();
    tail.iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map(|i| offset + i)
}

/// How much to reserve so that `extra` more bytes fit: amortised doubling, but never beyond `max`
/// (unless `extra` itself needs more), so the capacity stays within the bound the length obeys.
fn growth(len: usize, capacity: usize, extra: usize, max: usize) -> Option<usize> {
    let needed = len.saturating_add(extra);
    if needed <= capacity {
        return None;
    }
    let target = needed
        .max(capacity.saturating_mul(2))
        .max(256)
        .min(max.max(needed));
    Some(target - len)
}

fn reserve_within(buf: &mut Vec<u8>, extra: usize, max: usize) {
    if let Some(additional) = growth(buf.len(), buf.capacity(), extra, max) {
        buf.reserve_exact(additional);
    }
}

fn reserve_string_within(buf: &mut String, extra: usize, max: usize) {
    if let Some(additional) = growth(buf.len(), buf.capacity(), extra, max) {
        buf.reserve_exact(additional);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const BIG: usize = 1 << 20;

    fn parse_all(input: &[u8], max: usize) -> (Vec<SseEvent>, bool) {
        let mut p = SseParser::new(max);
        let mut out = Vec::new();
        p.feed(input, &mut out);
        p.finish();
        (out, p.truncated())
    }

    fn parse_chunks<'a>(
        chunks: impl IntoIterator<Item = &'a [u8]>,
        max: usize,
    ) -> (Vec<SseEvent>, bool) {
        let mut p = SseParser::new(max);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out);
        }
        p.finish();
        (out, p.truncated())
    }

    fn ev(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.into(),
            id: None,
        }
    }

    /// A deliberately naive parser, straight from the spec's wording: decode the whole input, split
    /// it into lines, interpret them. The incremental parser must agree with it.
    fn reference(input: &[u8], max: usize) -> (Vec<SseEvent>, bool) {
        let text = String::from_utf8_lossy(input);
        // The byte parser strips the BOM when it interprets the first line, so it counts towards
        // that line's length.
        let mut bom = if input.starts_with(BOM) { BOM.len() } else { 0 };
        let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
        let mut lines = Vec::new();
        let mut cur = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    lines.push(mem::take(&mut cur));
                }
                '\n' => lines.push(mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        // `cur` is an unterminated line: discarded at the end of the stream.
        let (mut out, mut data, mut has_data, mut etype, mut id) = (
            Vec::new(),
            String::new(),
            false,
            String::new(),
            String::new(),
        );
        let mut skipping = false;
        let mut truncated = false;
        for line in lines {
            if skipping {
                bom = 0;
                if line.is_empty() {
                    skipping = false;
                }
                continue;
            }
            // The raw length of the line, as the byte parser sees it (lossy decoding can change it).
            let raw_len = raw_line_len(&line) + mem::take(&mut bom);
            if raw_len + data.len() + etype.len() > max {
                truncated = true;
                skipping = true;
                (data, has_data, etype) = (String::new(), false, String::new());
                continue;
            }
            if line.is_empty() {
                if has_data {
                    out.push(SseEvent {
                        event: (!etype.is_empty()).then(|| etype.clone()),
                        data: mem::take(&mut data),
                        id: (!id.is_empty()).then(|| id.clone()),
                    });
                }
                (has_data, etype) = (false, String::new());
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (name, value) = match line.split_once(':') {
                Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match name {
                "data" => {
                    let grow = value.len() + usize::from(has_data);
                    if data.len() + etype.len() + grow > max {
                        truncated = true;
                        skipping = true;
                        (data, has_data, etype) = (String::new(), false, String::new());
                        continue;
                    }
                    if has_data {
                        data.push('\n');
                    }
                    data.push_str(value);
                    has_data = true;
                }
                "event" => {
                    if data.len() + value.len() > max {
                        truncated = true;
                        skipping = true;
                        (data, has_data, etype) = (String::new(), false, String::new());
                        continue;
                    }
                    etype = value.to_string();
                }
                "id" if !value.contains('\0') => id = value.to_string(),
                _ => {}
            }
        }
        (out, truncated)
    }

    /// The raw byte length of a decoded line. The generator's only invalid UTF-8 is a lone 0xFF,
    /// one byte that decodes to U+FFFD, and it never writes a real U+FFFD.
    fn raw_line_len(line: &str) -> usize {
        line.chars()
            .map(|c| if c == '\u{FFFD}' { 1 } else { c.len_utf8() })
            .sum()
    }

    #[test]
    fn basic_event() {
        let (evs, _) = parse_all(b"data: hello\n\n", BIG);
        assert_eq!(evs, vec![ev("hello")]);
    }

    #[test]
    fn multi_line_data_joined_with_lf() {
        let (evs, _) = parse_all(b"data: a\ndata:b\ndata:  c\ndata\n\n", BIG);
        assert_eq!(evs, vec![ev("a\nb\n c\n")]);
    }

    #[test]
    fn only_one_space_removed_and_colon_in_value_kept() {
        let (evs, _) = parse_all(b"data:  two spaces: and colon\n\n", BIG);
        assert_eq!(evs, vec![ev(" two spaces: and colon")]);
    }

    #[test]
    fn comments_and_unknown_fields_ignored() {
        let input = b": this is a comment\n:\ndata: x\nfoo: bar\nData: no\n: another\n\n";
        let (evs, _) = parse_all(input, BIG);
        assert_eq!(evs, vec![ev("x")]);
    }

    #[test]
    fn event_without_data_not_dispatched_but_empty_data_is() {
        let (evs, _) = parse_all(b"event: ping\n\ndata:\n\ndata\n\n\n\n", BIG);
        assert_eq!(evs, vec![ev(""), ev("")]);
    }

    #[test]
    fn event_type_and_id() {
        let input =
            b"event: delta\nid: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: x\0y\ndata: d\n\n";
        let (evs, _) = parse_all(input, BIG);
        assert_eq!(
            evs,
            vec![
                SseEvent {
                    event: Some("delta".into()),
                    data: "a".into(),
                    id: Some("7".into())
                },
                // The id persists; the event type does not.
                SseEvent {
                    event: None,
                    data: "b".into(),
                    id: Some("7".into())
                },
                // An empty id resets it; an id with NUL is ignored.
                ev("c"),
                ev("d"),
            ]
        );
    }

    #[test]
    fn retry_field() {
        let mut p = SseParser::new(BIG);
        let mut out = Vec::new();
        p.feed(b"retry: 1500\nretry: 12x\nretry:\n", &mut out);
        assert_eq!(p.retry(), Some(1500));
        assert!(out.is_empty());
    }

    #[test]
    fn line_endings_crlf_lf_cr_and_mixed() {
        let expected = vec![ev("a\nb"), ev("c")];
        for input in [
            &b"data: a\ndata: b\n\ndata: c\n\n"[..],
            b"data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n",
            b"data: a\rdata: b\r\rdata: c\r\r",
            b"data: a\r\ndata: b\r\rdata: c\n\r\n",
        ] {
            assert_eq!(
                parse_all(input, BIG).0,
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn cr_at_chunk_end_then_lf_is_one_line_ending() {
        // Were the CR and LF two endings, the LF would be a blank line dispatching "a" early.
        let (evs, _) = parse_chunks([&b"data: a\r"[..], b"\ndata: b\r", b"\n\r", b"\n"], BIG);
        assert_eq!(evs, vec![ev("a\nb")]);
        // A lone CR at a chunk end followed by another line.
        let (evs, _) = parse_chunks([&b"data: a\r"[..], b"data: b\r", b"\r"], BIG);
        assert_eq!(evs, vec![ev("a\nb")]);
        // Empty chunks in between do not lose the pending CR.
        let (evs, _) = parse_chunks(
            [&b"data: a\r"[..], b"", b"\ndata: b\r\n", b"", b"\r\n"],
            BIG,
        );
        assert_eq!(evs, vec![ev("a\nb")]);
    }

    #[test]
    fn utf8_split_across_chunks() {
        let input = "data: héllo 你好 🌍\n\n".as_bytes();
        let whole = parse_all(input, BIG).0;
        assert_eq!(whole, vec![ev("héllo 你好 🌍")]);
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(parse_chunks([a, b], BIG).0, whole, "split at {i}");
        }
        assert_eq!(parse_chunks(input.chunks(1), BIG).0, whole);
    }

    #[test]
    fn invalid_utf8_is_lossy() {
        let (evs, _) = parse_all(b"data: a\xFFb\xE2\x82\n\n", BIG);
        assert_eq!(evs, vec![ev("a\u{FFFD}b\u{FFFD}")]);
    }

    #[test]
    fn leading_bom_skipped_once() {
        let (evs, _) = parse_chunks(
            [&b"\xEF\xBB"[..], b"\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n"],
            BIG,
        );
        // The second BOM is not at the start of the stream: that line's field name is not `data`.
        assert_eq!(evs, vec![ev("a")]);
    }

    #[test]
    fn unfinished_event_discarded_at_finish() {
        let mut p = SseParser::new(BIG);
        let mut out = Vec::new();
        p.feed(b"data: a\n\ndata: b\n", &mut out);
        assert!(p.finish());
        assert_eq!(out, vec![ev("a")]);

        let mut p = SseParser::new(BIG);
        p.feed(b"data: a\n\ndata: [DONE]", &mut out);
        assert!(p.finish());

        let mut p = SseParser::new(BIG);
        out.clear();
        p.feed(b"data: a\n\n", &mut out);
        assert!(!p.finish());
        assert_eq!(out, vec![ev("a")]);
    }

    #[test]
    fn events_come_out_as_soon_as_complete() {
        let mut p = SseParser::new(BIG);
        let mut out = Vec::new();
        p.feed(b"data: a\n", &mut out);
        assert!(out.is_empty());
        p.feed(b"\nda", &mut out);
        assert_eq!(out, vec![ev("a")]);
    }

    #[test]
    fn huge_line_keeps_memory_bounded_and_resyncs() {
        const CAP: usize = 64 * 1024;
        const CHUNK: usize = 4096;
        let mut p = SseParser::new(CAP);
        let mut out = Vec::new();
        p.feed(b"data: before\n\ndata: ", &mut out);
        let filler = vec![b'x'; CHUNK];
        for _ in 0..(10 * 1024 * 1024 / CHUNK) {
            p.feed(&filler, &mut out);
            assert!(p.buffered_bytes() <= CAP, "buffered {}", p.buffered_bytes());
            assert!(
                p.allocated_bytes() <= CAP + CHUNK,
                "allocated {}",
                p.allocated_bytes()
            );
        }
        assert!(p.truncated());
        // Still inside the dropped event: this data line belongs to it and must not come out.
        p.feed(
            b"\ndata: tail of the dropped event\n\ndata: after\n\n",
            &mut out,
        );
        assert_eq!(out, vec![ev("before"), ev("after")]);
        assert!(p.allocated_bytes() <= CAP + CHUNK);
    }

    #[test]
    fn huge_line_in_one_chunk_is_not_buffered() {
        const CAP: usize = 64 * 1024;
        let mut input = b"data: ".to_vec();
        input.resize(10 * 1024 * 1024, b'y');
        input.extend_from_slice(b"\n\ndata: ok\n\n");
        let mut p = SseParser::new(CAP);
        let mut out = Vec::new();
        p.feed(&input, &mut out);
        assert_eq!(out, vec![ev("ok")]);
        assert!(p.truncated());
        assert!(p.allocated_bytes() <= CAP);
    }

    #[test]
    fn many_data_lines_overflow_the_event() {
        let mut input = Vec::new();
        for _ in 0..100 {
            input.extend_from_slice(b"data: 0123456789\n");
        }
        input.extend_from_slice(b"\ndata: next\n\n");
        let (evs, truncated) = parse_all(&input, 500);
        assert_eq!(evs, vec![ev("next")]);
        assert!(truncated);
        // The same with room enough.
        let (evs, truncated) = parse_all(&input, 2000);
        assert_eq!(evs.len(), 2);
        assert!(!truncated);
    }

    #[test]
    fn event_at_exactly_the_limit_passes() {
        // Pending bytes: the line "data: 12345" (11), then data "12345" (5).
        let (evs, truncated) = parse_all(b"data: 12345\n\n", 11);
        assert_eq!(evs, vec![ev("12345")]);
        assert!(!truncated);
        let (evs, truncated) = parse_all(b"data: 12345\n\n", 10);
        assert!(evs.is_empty());
        assert!(truncated);
    }

    #[test]
    fn find_eol_agrees_with_a_plain_scan() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'\n' || c == b'\r');
        // Bytes close to CR and LF, with and without the high bit, around every position.
        let fillers = [b'a', 0x0B, 0x0C, 0x8A, 0x8D, 0xFF, 0x00, 0x09, 0x0E];
        for len in 0..40 {
            for &filler in &fillers {
                let mut buf = vec![filler; len];
                assert_eq!(find_eol(&buf), naive(&buf));
                for pos in 0..len {
                    for eol in [b'\n', b'\r'] {
                        buf[pos] = eol;
                        assert_eq!(
                            find_eol(&buf),
                            Some(pos),
                            "len {len} pos {pos} filler {filler:#x}"
                        );
                        // A second ending after the first does not change the answer.
                        if pos + 3 < len {
                            buf[pos + 3] = b'\n';
                            assert_eq!(find_eol(&buf), Some(pos));
                            buf[pos + 3] = filler;
                        }
                        buf[pos] = filler;
                    }
                }
            }
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Bytes that matter to the parser, and some that do not.
        fn doc_byte() -> impl Strategy<Value = u8> {
            prop_oneof![
                Just(b'\n'),
                Just(b'\r'),
                Just(b':'),
                Just(b' '),
                Just(0xE4),
                Just(0xBD),
                Just(0xA0),
                Just(0xFF),
                Just(0),
                b'a'..=b'e',
            ]
        }

        fn doc() -> impl Strategy<Value = Vec<u8>> {
            let line = prop_oneof![
                Just(b"data: ".to_vec()),
                Just(b"data:".to_vec()),
                Just(b"event: ".to_vec()),
                Just(b"id: ".to_vec()),
                Just(b":".to_vec()),
                Just(Vec::new()),
            ]
            .prop_flat_map(|prefix| {
                proptest::collection::vec(doc_byte(), 0..12)
                    .prop_map(move |rest| [prefix.clone(), rest].concat())
            });
            proptest::collection::vec(line, 0..30).prop_map(|lines| lines.concat())
        }

        proptest! {
            #[test]
            fn chunking_never_changes_the_events(
                doc in doc(),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
                max in prop_oneof![Just(BIG), 4usize..64],
            ) {
                let mut at: Vec<usize> = cuts.iter().map(|c| c.index(doc.len() + 1)).collect();
                at.sort_unstable();
                let mut chunks = Vec::new();
                let mut start = 0;
                for cut in at {
                    chunks.push(&doc[start..cut]);
                    start = cut;
                }
                chunks.push(&doc[start..]);
                let whole = parse_all(&doc, max);
                prop_assert_eq!(parse_chunks(chunks, max), whole.clone());
                prop_assert_eq!(parse_chunks(doc.chunks(1), max), whole);
            }
        }
    }

    /// SplitMix64: a tiny deterministic PRNG, so failures reproduce.
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Self {
            Rng(seed)
        }

        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform-ish in `0..n` (n > 0).
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Cuts `input` into random chunks, mostly small, sometimes empty or large.
    pub(crate) fn random_chunks<'a>(rng: &mut Rng, input: &'a [u8]) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let n = match rng.below(10) {
                0 => 0,
                1..=5 => 1 + rng.below(8),
                6..=8 => 1 + rng.below(64),
                _ => 1 + rng.below(1024),
            };
            let (a, b) = rest.split_at(n.min(rest.len()));
            chunks.push(a);
            rest = b;
        }
        chunks
    }

    /// A random event stream: all kinds of lines and line endings, multi-byte text.
    fn random_document(rng: &mut Rng) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "a",
            "hello",
            " ",
            "é",
            "你好",
            "🌍",
            "[DONE]",
            "{\"x\":1}",
            ":",
            "  ",
            "\0",
            "\u{1}",
        ];
        let mut doc = Vec::new();
        if rng.below(20) == 0 {
            doc.extend_from_slice(BOM);
        }
        for _ in 0..rng.below(40) {
            let mut value = String::new();
            for _ in 0..rng.below(6) {
                value.push_str(WORDS[rng.below(WORDS.len())]);
            }
            let line = match rng.below(12) {
                0..=3 => format!("data: {value}"),
                4 => format!("data:{value}"),
                5 => "data".to_string(),
                6 => format!("event: {value}"),
                7 => format!("id: {value}"),
                8 => format!(": {value}"),
                9 => format!("retry: {}", rng.below(5000)),
                10 => format!("unknown{value}"),
                _ => String::new(),
            };
            // \u{1} stands for a lone 0xFF byte: invalid UTF-8.
            doc.extend(line.bytes().map(|b| if b == 1 { 0xFF } else { b }));
            doc.extend_from_slice(match rng.below(4) {
                0 => b"\r\n",
                1 => b"\r",
                _ => b"\n",
            });
        }
        doc
    }

    #[test]
    fn random_documents_match_the_reference_under_any_chunking() {
        let mut rng = Rng::new(0x5EED_55E0);
        for round in 0..3000 {
            let doc = random_document(&mut rng);
            // Small limits on some rounds, so truncation is exercised too.
            let max = if round % 3 == 0 {
                8 + rng.below(120)
            } else {
                BIG
            };
            let expected = reference(&doc, max);
            assert_eq!(
                parse_all(&doc, max),
                expected,
                "round {round}: {:?}",
                String::from_utf8_lossy(&doc)
            );
            for _ in 0..4 {
                let chunks = random_chunks(&mut rng, &doc);
                assert_eq!(
                    parse_chunks(chunks.iter().copied(), max),
                    expected,
                    "round {round} chunks {chunks:?}"
                );
            }
            assert_eq!(
                parse_chunks(doc.chunks(1), max),
                expected,
                "round {round} byte at a time"
            );
        }
    }
}
