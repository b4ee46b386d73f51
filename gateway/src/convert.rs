//! `llm-forward convert`: chat logs → OpenAI-Forward's `chat_<route>.json` or fine-tuning JSONL.
//!
//! Input: the JSON lines the filter writes (`<log_dir>/<route>/chat.log`, rotated files
//! `chat.log.<timestamp>` included), one [`ChatRecord`] each. Only chat records that completed
//! with a 2xx status, were not truncated and carry messages and an answer are converted; the others
//! are counted and reported ("skipped 3: 2 non-2xx, 1 truncated").
//!
//! Formats:
//! - `reference`: a JSON array like `aifd convert`'s, element
//!   `{"datetime","ip","model","temperature","messages":[{"<role>":<content>}…],"tools","is_tool_calls","assistant"}`.
//!   Fixed: tool calls are a JSON list (OpenAI's shape), not a Python repr string; every tool call
//!   is kept; `datetime` is UTC.
//! - `finetune`: OpenAI fine-tuning JSONL, `{"messages":[…request…, {"role":"assistant",…}]}` with
//!   `"tools"` when the request had them; tool calls become the assistant's `tool_calls`. A record
//!   with several choices (`n` > 1) gives one example per choice.

pub mod cli;

use llm_forward_core::answer::{ApiKind, Choice};
use llm_forward_core::chatlog::ChatRecord;
use serde_json::{json, Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// OpenAI-Forward's `chat_<route>.json` (a JSON array).
    Reference,
    /// OpenAI fine-tuning JSONL (`{"messages": [...]}` per line).
    Finetune,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Reference => "json",
            Format::Finetune => "jsonl",
        }
    }
}

/// Why records were left out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub unreadable: usize,
    pub not_chat: usize,
    pub failed: usize,
    pub truncated: usize,
    pub no_messages: usize,
    pub no_answer: usize,
}

impl Skipped {
    pub fn total(&self) -> usize {
        self.unreadable
            + self.not_chat
            + self.failed
            + self.truncated
            + self.no_messages
            + self.no_answer
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            (self.unreadable, "unreadable lines"),
            (self.not_chat, "not chat (completions/embeddings)"),
            (self.failed, "non-2xx"),
            (self.truncated, "truncated"),
            (self.no_messages, "without messages (privacy switch)"),
            (self.no_answer, "without an answer"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        write!(f, "skipped {}", self.total())?;
        if !parts.is_empty() {
            write!(f, ": {}", parts.join(", "))?;
        }
        Ok(())
    }
}

/// Parses log lines; lines that are not records are counted in `skipped.unreadable`.
pub fn parse_lines(text: &str, skipped: &mut Skipped) -> Vec<ChatRecord> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str::<ChatRecord>(l) {
            Ok(r) => Some(r),
            Err(_) => {
                skipped.unreadable += 1;
                None
            }
        })
        .collect()
}

/// The records worth converting, with the reasons for the others.
pub fn usable(records: Vec<ChatRecord>, skipped: &mut Skipped) -> Vec<ChatRecord> {
    let mut out = Vec::new();
    for r in records {
        if r.api != Some(ApiKind::Chat) {
            skipped.not_chat += 1;
        } else if !(200..300).contains(&r.status) {
            skipped.failed += 1;
        } else if r.truncated || r.request_truncated {
            skipped.truncated += 1;
        } else if !matches!(&r.messages, Some(Value::Array(m)) if !m.is_empty()) {
            skipped.no_messages += 1;
        } else if !matches!(&r.answer, Some(a) if !a.choices.is_empty()) {
            skipped.no_answer += 1;
        } else {
            out.push(r);
        }
    }
    out.sort_by(|a, b| a.time.cmp(&b.time));
    out
}

fn tool_calls_json(choice: &Choice) -> Value {
    Value::Array(
        choice
            .tool_calls
            .iter()
            .map(|t| {
                json!({
                    "index": t.index,
                    "id": t.id,
                    "type": t.kind.as_deref().unwrap_or("function"),
                    "function": {"name": t.name, "arguments": t.arguments},
                })
            })
            .collect(),
    )
}

/// One element of the reference format (choice 0).
pub fn reference_entry(r: &ChatRecord) -> Value {
    let messages: Vec<Value> = match &r.messages {
        Some(Value::Array(m)) => m
            .iter()
            .map(|m| {
                let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
                let mut entry = Map::new();
                entry.insert(
                    role.to_string(),
                    m.get("content").cloned().unwrap_or(Value::Null),
                );
                Value::Object(entry)
            })
            .collect(),
        _ => Vec::new(),
    };
    let choice = r.answer.as_ref().and_then(|a| a.choices.first());
    let is_tool_calls = choice.is_some_and(|c| !c.tool_calls.is_empty());
    let assistant = match choice {
        Some(c) if is_tool_calls => tool_calls_json(c),
        Some(c) => Value::String(c.content.clone()),
        None => Value::Null,
    };
    json!({
        "datetime": r.time.get(..19).unwrap_or(&r.time).replace('T', " "),
        "ip": r.ip,
        "model": r.model,
        "temperature": r.params.get("temperature").cloned().unwrap_or(json!(1)),
        "messages": messages,
        "tools": r.params.get("tools").cloned().unwrap_or(Value::Null),
        "is_tool_calls": is_tool_calls,
        "assistant": assistant,
    })
}

/// Fine-tuning examples of one record: one per choice.
pub fn finetune_examples(r: &ChatRecord) -> Vec<Value> {
    let Some(Value::Array(messages)) = &r.messages else {
        return Vec::new();
    };
    let Some(answer) = &r.answer else {
        return Vec::new();
    };
    answer
        .choices
        .iter()
        .map(|c| {
            let mut assistant = Map::new();
            assistant.insert("role".into(), "assistant".into());
            if !c.content.is_empty() || c.tool_calls.is_empty() {
                assistant.insert("content".into(), c.content.clone().into());
            }
            if !c.tool_calls.is_empty() {
                let calls: Vec<Value> = c
                    .tool_calls
                    .iter()
                    .map(|t| {
                        json!({
                            "id": t.id.clone().unwrap_or_else(|| format!("call_{}", t.index)),
                            "type": t.kind.as_deref().unwrap_or("function"),
                            "function": {"name": t.name, "arguments": t.arguments},
                        })
                    })
                    .collect();
                assistant.insert("tool_calls".into(), Value::Array(calls));
            }
            let mut all = messages.clone();
            all.push(Value::Object(assistant));
            let mut example = Map::new();
            example.insert("messages".into(), Value::Array(all));
            if let Some(tools) = r.params.get("tools").filter(|t| !t.is_null()) {
                example.insert("tools".into(), tools.clone());
            }
            Value::Object(example)
        })
        .collect()
}

/// The converted file's text.
pub fn render(records: &[ChatRecord], format: Format) -> String {
    match format {
        Format::Reference => {
            let entries: Vec<Value> = records.iter().map(reference_entry).collect();
            serde_json::to_string_pretty(&entries).unwrap_or_default() + "\n"
        }
        Format::Finetune => records
            .iter()
            .flat_map(finetune_examples)
            .map(|e| e.to_string() + "\n")
            .collect(),
    }
}

/// `chat.log` and its rotated siblings (`chat.log.<timestamp>`) in `dir`, oldest name first.
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n == "chat.log" || n.starts_with("chat.log."))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Converts every log file in `dir` into `out`; returns the number of records written and skips.
pub fn convert_dir(dir: &Path, out: &Path, format: Format) -> Result<(usize, Skipped), String> {
    let mut skipped = Skipped::default();
    let mut records = Vec::new();
    let files = log_files(dir);
    if files.is_empty() {
        return Err(format!("no chat.log files in {}", dir.display()));
    }
    for f in files {
        let text =
            std::fs::read_to_string(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        records.extend(parse_lines(&text, &mut skipped));
    }
    let records = usable(records, &mut skipped);
    std::fs::write(out, render(&records, format))
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok((records.len(), skipped))
}

/// The `convert` command. With `log_folder`, that folder's logs go to `out` (default
/// `<log_folder>/../chat_<folder name>.<ext>`); without, every route folder under `log_dir` with a
/// chat log becomes `<log_dir>/chat_<route>.<ext>`.
pub fn run(log_dir: &Path, log_folder: Option<&Path>, out: Option<&Path>, format: Format) -> i32 {
    let jobs: Vec<(PathBuf, PathBuf)> = match log_folder {
        Some(folder) => {
            let name = folder
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("log")
                .to_string();
            let target = out.map(Path::to_path_buf).unwrap_or_else(|| {
                folder
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(format!("chat_{name}.{}", format.extension()))
            });
            vec![(folder.to_path_buf(), target)]
        }
        None => {
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(log_dir)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| p.is_dir() && !log_files(p).is_empty())
                        .collect()
                })
                .unwrap_or_default();
            dirs.sort();
            if out.is_some() && dirs.len() > 1 {
                eprintln!(
                    "llm-forward convert: --out needs --log-folder when several routes have logs"
                );
                return 2;
            }
            dirs.into_iter()
                .map(|d| {
                    let name = d
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("log")
                        .to_string();
                    let target = out.map(Path::to_path_buf).unwrap_or_else(|| {
                        log_dir.join(format!("chat_{name}.{}", format.extension()))
                    });
                    (d, target)
                })
                .collect()
        }
    };
    if jobs.is_empty() {
        eprintln!(
            "llm-forward convert: no chat logs under {} (is logging.chat on?)",
            log_dir.display()
        );
        return 1;
    }
    let mut code = 0;
    for (dir, target) in jobs {
        match convert_dir(&dir, &target, format) {
            Ok((written, skipped)) => println!(
                "{} → {}: {written} conversations, {skipped}",
                dir.display(),
                target.display()
            ),
            Err(e) => {
                eprintln!("llm-forward convert: {e}");
                code = 1;
            }
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_forward_core::answer::{Answer, ToolCall, Usage};
    use llm_forward_core::chatlog::{build, RecordInput};

    fn record(status: u32, answer: Answer, body: Value) -> ChatRecord {
        build(RecordInput {
            started_ms: 1_798_292_415_000,
            now_ms: 1_798_292_416_000,
            uid: "u".into(),
            route: "root",
            api: Some(ApiKind::Chat),
            method: "POST",
            path: "/v1/chat/completions",
            ip: Some("1.2.3.4".into()),
            body: Some(body),
            answer: Some(&answer),
            status,
            messages: true,
            ..RecordInput::default()
        })
    }

    fn text_answer(text: &str) -> Answer {
        Answer {
            choices: vec![Choice {
                content: text.into(),
                finish_reason: Some("stop".into()),
                ..Choice::default()
            }],
            usage: Some(Usage::default()),
            ..Answer::default()
        }
    }

    fn tool_answer() -> Answer {
        let call = |index: u32, city: &str| ToolCall {
            index,
            id: Some(format!("call_{index}")),
            kind: Some("function".into()),
            name: "get_weather".into(),
            arguments: format!("{{\"city\":\"{city}\"}}"),
        };
        Answer {
            choices: vec![Choice {
                tool_calls: vec![call(0, "Paris"), call(1, "Rome")],
                finish_reason: Some("tool_calls".into()),
                ..Choice::default()
            }],
            ..Answer::default()
        }
    }

    fn body() -> Value {
        json!({"model":"gpt-4o","temperature":0.5,
               "messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]})
    }

    fn lines(records: &[ChatRecord]) -> String {
        records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect()
    }

    #[test]
    fn reference_format_matches_aifd_convert_with_json_tool_calls() {
        let records = vec![
            record(200, text_answer("Hello!"), body()),
            record(200, tool_answer(), body()),
        ];
        let mut skipped = Skipped::default();
        let parsed = usable(parse_lines(&lines(&records), &mut skipped), &mut skipped);
        let out: Value = serde_json::from_str(&render(&parsed, Format::Reference)).unwrap();
        let first = &out[0];
        assert_eq!(first["datetime"], "2026-12-26 13:40:15");
        assert_eq!(first["ip"], "1.2.3.4");
        assert_eq!(first["model"], "gpt-4o");
        assert_eq!(first["temperature"], 0.5);
        assert_eq!(
            first["messages"],
            json!([{"system":"be brief"},{"user":"hi"}])
        );
        assert_eq!(first["is_tool_calls"], false);
        assert_eq!(first["assistant"], "Hello!");
        assert_eq!(first["tools"], Value::Null);
        let second = &out[1];
        assert_eq!(second["is_tool_calls"], true);
        let calls = second["assistant"].as_array().unwrap();
        assert_eq!(calls.len(), 2, "parallel tool calls are kept");
        assert_eq!(calls[1]["function"]["arguments"], "{\"city\":\"Rome\"}");
        assert_eq!(calls[0]["type"], "function");
        assert_eq!(skipped.total(), 0);
    }

    #[test]
    fn finetune_format_appends_the_assistant() {
        let mut b = body();
        b["tools"] = json!([{"type":"function","function":{"name":"get_weather","parameters":{}}}]);
        let records = vec![
            record(200, text_answer("Hello!"), body()),
            record(200, tool_answer(), b),
        ];
        let text = render(&records, Format::Finetune);
        let examples: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(examples.len(), 2);
        let m = examples[0]["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[2], json!({"role":"assistant","content":"Hello!"}));
        assert!(examples[0].get("tools").is_none());
        let last = examples[1]["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last["role"], "assistant");
        assert!(last.get("content").is_none());
        assert_eq!(last["tool_calls"][1]["id"], "call_1");
        assert_eq!(last["tool_calls"][1]["function"]["name"], "get_weather");
        assert_eq!(examples[1]["tools"][0]["function"]["name"], "get_weather");
    }

    #[test]
    fn unusable_records_are_skipped_and_counted() {
        let mut truncated = record(200, text_answer("Hel"), body());
        truncated.truncated = true;
        let mut private = record(200, text_answer(""), body());
        private.messages = None;
        let mut embedding = record(200, Answer::default(), json!({"input":"x"}));
        embedding.api = Some(ApiKind::Embedding);
        let records = vec![
            record(200, text_answer("ok"), body()),
            record(502, text_answer(""), body()),
            truncated,
            private,
            embedding,
            record(200, Answer::default(), body()),
        ];
        let mut text = lines(&records);
        text.push_str("{'python': 'dict'}\n");
        let mut skipped = Skipped::default();
        let kept = usable(parse_lines(&text, &mut skipped), &mut skipped);
        assert_eq!(kept.len(), 1);
        assert_eq!(
            skipped,
            Skipped {
                unreadable: 1,
                not_chat: 1,
                failed: 1,
                truncated: 1,
                no_messages: 1,
                no_answer: 1,
            }
        );
        assert_eq!(
            skipped.to_string(),
            "skipped 6: 1 unreadable lines, 1 not chat (completions/embeddings), 1 non-2xx, 1 truncated, 1 without messages (privacy switch), 1 without an answer"
        );
    }

    #[test]
    fn convert_dir_reads_rotated_files_in_time_order() {
        let dir = std::env::temp_dir().join(format!("llm-forward-convert-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root")).unwrap();
        let mut old = record(200, text_answer("first"), body());
        old.time = "2026-01-01T00:00:00.000Z".into();
        let new = record(200, text_answer("second"), body());
        std::fs::write(dir.join("root/chat.log.20260101T000000"), lines(&[old])).unwrap();
        std::fs::write(dir.join("root/chat.log"), lines(&[new])).unwrap();
        assert_eq!(run(&dir, None, None, Format::Reference), 0);
        let out: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("chat_root.json")).unwrap())
                .unwrap();
        assert_eq!(out[0]["assistant"], "first");
        assert_eq!(out[1]["assistant"], "second");
        assert_eq!(run(&dir, None, None, Format::Finetune), 0);
        assert_eq!(
            std::fs::read_to_string(dir.join("chat_root.jsonl"))
                .unwrap()
                .lines()
                .count(),
            2
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
