//! Tail of the chat logs for the console: new lines of `<log_dir>/<route>/chat.log` are read when
//! the console asks (no background task), kept in a bounded ring and numbered, so a client polls
//! with `after=<last number seen>`. Rotation (a new file under the same name) is followed.

use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Records kept.
pub const RING: usize = 200;
/// On first sight of a file, only its tail is read.
pub const INITIAL_TAIL: u64 = 512 * 1024;
/// At most this much is read per file per poll (the rest on the next poll).
pub const MAX_READ: u64 = 8 * 1024 * 1024;
/// Longer strings in a record (a message, an answer) are cut for the console.
pub const MAX_STRING: usize = 16 * 1024;
/// Longer arrays (a long conversation) keep their last elements.
pub const MAX_ARRAY: usize = 64;
/// A partial line longer than this is dropped (it cannot be a record the console can show).
const MAX_LINE: usize = 16 * 1024 * 1024;

struct FileState {
    offset: u64,
    ino: u64,
    partial: Vec<u8>,
    /// Started inside the file: the first line read is the end of a cut one.
    skip_first: bool,
}

#[derive(Default)]
pub struct Tail {
    files: HashMap<PathBuf, FileState>,
    ring: VecDeque<(u64, Value)>,
    next: u64,
}

fn inode(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.ino()
}

impl Tail {
    /// Read what was appended to `paths` since the last poll.
    pub fn poll(&mut self, paths: &[PathBuf]) {
        for path in paths {
            let lines = self.read_new(path);
            for line in lines {
                self.push_line(&line);
            }
        }
    }

    fn read_new(&mut self, path: &Path) -> Vec<Vec<u8>> {
        let Ok(meta) = std::fs::metadata(path) else {
            return Vec::new();
        };
        let (ino, len) = (inode(&meta), meta.len());
        let state = self.files.entry(path.to_path_buf()).or_insert_with(|| {
            // The first look: the tail only; the line cut in the middle is dropped below.
            let offset = len.saturating_sub(INITIAL_TAIL);
            FileState {
                offset,
                ino,
                partial: Vec::new(),
                skip_first: offset > 0,
            }
        });
        if state.ino != ino || len < state.offset {
            // Rotated (renamed away, a new file took the name) or truncated: start over.
            state.ino = ino;
            state.offset = 0;
            state.partial.clear();
            state.skip_first = false;
        }
        if len <= state.offset {
            return Vec::new();
        }
        let Ok(mut file) = std::fs::File::open(path) else {
            return Vec::new();
        };
        if file.seek(SeekFrom::Start(state.offset)).is_err() {
            return Vec::new();
        }
        let want = (len - state.offset).min(MAX_READ);
        let mut buf = Vec::with_capacity(want as usize);
        if file.take(want).read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        state.offset += buf.len() as u64;
        let mut data = std::mem::take(&mut state.partial);
        data.extend_from_slice(&buf);
        let mut lines: Vec<Vec<u8>> = data.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        // The last piece has no newline yet: keep it for the next poll.
        let rest = lines.pop().unwrap_or_default();
        if rest.len() <= MAX_LINE {
            state.partial = rest;
        }
        if state.skip_first && !lines.is_empty() {
            lines.remove(0);
            state.skip_first = false;
        }
        lines
    }

    fn push_line(&mut self, line: &[u8]) {
        let Ok(Value::Object(mut record)) = serde_json::from_slice::<Value>(line) else {
            return;
        };
        for v in record.values_mut() {
            cap(v);
        }
        self.next += 1;
        self.ring.push_back((self.next, Value::Object(record)));
        while self.ring.len() > RING {
            self.ring.pop_front();
        }
    }

    /// Records numbered above `after` (oldest first), at most `limit` of the newest; with
    /// `private`, message content is removed before it leaves the server.
    pub fn since(&self, after: u64, limit: usize, private: bool) -> (u64, Vec<Value>) {
        let newer: Vec<&(u64, Value)> = self.ring.iter().filter(|(n, _)| *n > after).collect();
        let skip = newer.len().saturating_sub(limit);
        let records = newer
            .into_iter()
            .skip(skip)
            .map(|(n, r)| {
                let mut r = r.clone();
                if let Value::Object(m) = &mut r {
                    if private {
                        redact(m);
                    }
                    m.insert("seq".into(), Value::from(*n));
                }
                r
            })
            .collect();
        (self.next, records)
    }
}

/// Bounds a record for display: long strings cut, long arrays keep their end.
fn cap(v: &mut Value) {
    match v {
        Value::String(s) if s.len() > MAX_STRING => {
            let mut end = MAX_STRING;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.push_str(" …[cut for the console]");
        }
        Value::Array(a) => {
            if a.len() > MAX_ARRAY {
                a.drain(..a.len() - MAX_ARRAY);
            }
            a.iter_mut().for_each(cap);
        }
        Value::Object(m) => m.values_mut().for_each(cap),
        _ => {}
    }
}

/// The privacy switch: what `logging.messages: false` would have left out.
pub fn redact(m: &mut Map<String, Value>) {
    for k in ["messages", "prompt", "input"] {
        m.remove(k);
    }
    if let Some(params) = m.get_mut("params").and_then(Value::as_object_mut) {
        // Tool definitions and other params stay; anything message-like goes.
        for k in ["messages", "prompt", "input", "instructions", "system"] {
            params.remove(k);
        }
    }
    if let Some(choices) = m
        .get_mut("answer")
        .and_then(|a| a.get_mut("choices"))
        .and_then(Value::as_array_mut)
    {
        for c in choices {
            if let Some(c) = c.as_object_mut() {
                c.insert("content".into(), Value::from(""));
                c.insert("reasoning_content".into(), Value::from(""));
                if let Some(calls) = c.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    for t in calls.iter_mut().filter_map(Value::as_object_mut) {
                        t.insert("arguments".into(), Value::from(""));
                    }
                }
            }
        }
    }
    m.insert("redacted".into(), Value::from(true));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn record(n: u32, text: &str) -> String {
        format!(
            "{{\"uid\":\"{n}\",\"route\":\"root\",\"messages\":[{{\"role\":\"user\",\"content\":\"q{n}\"}}],\"answer\":{{\"choices\":[{{\"content\":\"{text}\",\"tool_calls\":[{{\"name\":\"f\",\"arguments\":\"{{}}\"}}]}}]}}}}\n"
        )
    }

    #[test]
    fn follows_appends_partial_lines_and_rotation() {
        let dir = std::env::temp_dir().join(format!("llmf-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chat.log");
        std::fs::write(&path, record(1, "a")).unwrap();
        let mut tail = Tail::default();
        let paths = vec![path.clone()];
        tail.poll(&paths);
        let (cursor, recs) = tail.since(0, 50, false);
        assert_eq!((cursor, recs.len()), (1, 1));
        assert_eq!(recs[0]["answer"]["choices"][0]["content"], "a");

        // Half a line, then the rest.
        let two = record(2, "b");
        let (head, rest) = two.split_at(20);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(head.as_bytes())
            .unwrap();
        tail.poll(&paths);
        assert!(tail.since(cursor, 50, false).1.is_empty());
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(rest.as_bytes())
            .unwrap();
        tail.poll(&paths);
        let (cursor, recs) = tail.since(cursor, 50, false);
        assert_eq!((cursor, recs.len()), (2, 1));
        assert_eq!(recs[0]["seq"], 2);

        // Rotation: renamed away, a fresh file takes the name.
        std::fs::rename(&path, dir.join("chat.log.1")).unwrap();
        std::fs::write(&path, record(3, "c")).unwrap();
        tail.poll(&paths);
        let (_, recs) = tail.since(cursor, 50, true);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["uid"], "3");
        // Private: no message content leaves the server.
        assert!(recs[0].get("messages").is_none());
        assert_eq!(recs[0]["answer"]["choices"][0]["content"], "");
        assert_eq!(
            recs[0]["answer"]["choices"][0]["tool_calls"][0]["arguments"],
            ""
        );
        assert_eq!(
            recs[0]["answer"]["choices"][0]["tool_calls"][0]["name"],
            "f"
        );
        assert_eq!(recs[0]["redacted"], true);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn long_strings_and_arrays_are_bounded() {
        let mut v = serde_json::json!({"a": "x".repeat(MAX_STRING * 2), "b": (0..200).collect::<Vec<u32>>()});
        cap(&mut v);
        assert!(v["a"].as_str().unwrap().len() < MAX_STRING + 64);
        assert_eq!(v["b"].as_array().unwrap().len(), MAX_ARRAY);
        assert_eq!(v["b"][0], 200 - MAX_ARRAY as u64);
    }
}
