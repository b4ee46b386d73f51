//! The reverse of extraction: a response rebuilt from a stored [`Answer`] for cache replay, as a
//! JSON object or as an SSE stream cut into small pieces.

use super::{Answer, Choice, ToolCall, Usage};
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// How replayed streams cut text: pieces of at most this many characters (cut on character
/// boundaries), about four tokens each, so clients render progressively without one event per
/// character.
pub const REPLAY_PIECE_CHARS: usize = 16;

/// A non-stream `chat.completion` object rebuilt from `answer`.
///
/// `content` is `null` when a choice has only tool calls; tool calls get `type: "function"` unless
/// another type was recorded, and an id (`call_<id>_<choice>_<index>`) when none was recorded.
/// `finish_reason` defaults to `tool_calls` or `stop`. `usage` is present when the answer has it.
/// An answer without choices gives one empty choice, so clients reading `choices[0]` work.
pub fn to_chat_completion_json(answer: &Answer, model: &str, id: &str, created: u64) -> Value {
    let choices: Vec<Value> = replay_choices(answer)
        .iter()
        .map(|choice| {
            let mut message = Map::new();
            message.insert("role".into(), "assistant".into());
            message.insert("content".into(), content_value(choice));
            if !choice.reasoning_content.is_empty() {
                message.insert(
                    "reasoning_content".into(),
                    choice.reasoning_content.as_str().into(),
                );
            }
            if !choice.tool_calls.is_empty() {
                let calls: Vec<Value> = choice
                    .tool_calls
                    .iter()
                    .map(|call| {
                        json!({
                            "id": tool_call_id(id, choice, call),
                            "type": call.kind.as_deref().unwrap_or("function"),
                            "function": {"name": call.name, "arguments": call.arguments},
                        })
                    })
                    .collect();
                message.insert("tool_calls".into(), Value::Array(calls));
            }
            json!({
                "index": choice.index,
                "message": message,
                "logprobs": null,
                "finish_reason": finish_reason(choice),
            })
        })
        .collect();
    let mut object = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
    });
    if let (Some(usage), Some(map)) = (&answer.usage, object.as_object_mut()) {
        map.insert("usage".into(), usage_json(usage));
    }
    object
}

/// A complete `chat.completion.chunk` event stream rebuilt from `answer`, as OpenAI sends it.
///
/// Per choice: a `role` delta, the reasoning then the content in pieces of at most
/// [`REPLAY_PIECE_CHARS`] characters, each tool call (a first delta with id, type, name and empty
/// arguments, then the arguments in pieces), and a final empty delta with `finish_reason`. With
/// `include_usage` every chunk carries `"usage": null` and a last chunk with `choices: []` carries
/// the usage (zeros when the answer has none, since the client asked for it). Then `data: [DONE]`.
pub fn to_chat_sse(
    answer: &Answer,
    model: &str,
    id: &str,
    created: u64,
    include_usage: bool,
) -> Vec<u8> {
    let mut w = ChunkWriter::new("chat.completion.chunk", model, id, created, include_usage);
    for choice in replay_choices(answer).iter() {
        let delta_event = |w: &mut ChunkWriter<'_>, delta: Value| {
            w.event(json!([{"index": choice.index, "delta": delta, "logprobs": null, "finish_reason": null}]));
        };
        // Like OpenAI: an empty content with the role, null when the answer is only tool calls.
        let content = if tool_calls_only(choice) {
            Value::Null
        } else {
            Value::from("")
        };
        delta_event(&mut w, json!({"role": "assistant", "content": content}));
        for piece in pieces(&choice.reasoning_content) {
            delta_event(&mut w, json!({"reasoning_content": piece}));
        }
        for piece in pieces(&choice.content) {
            delta_event(&mut w, json!({"content": piece}));
        }
        for call in &choice.tool_calls {
            let first = json!({
                "index": call.index,
                "id": tool_call_id(id, choice, call),
                "type": call.kind.as_deref().unwrap_or("function"),
                "function": {"name": call.name, "arguments": ""},
            });
            delta_event(&mut w, json!({"tool_calls": [first]}));
            for piece in pieces(&call.arguments) {
                let fragment = json!({"index": call.index, "function": {"arguments": piece}});
                delta_event(&mut w, json!({"tool_calls": [fragment]}));
            }
        }
        w.event(json!([{
            "index": choice.index,
            "delta": {},
            "logprobs": null,
            "finish_reason": finish_reason(choice),
        }]));
    }
    w.finish(answer.usage.as_ref())
}

/// A non-stream `text_completion` object rebuilt from `answer` (`choices[].text`).
pub fn to_completion_json(answer: &Answer, model: &str, id: &str, created: u64) -> Value {
    let choices: Vec<Value> = replay_choices(answer)
        .iter()
        .map(|choice| {
            json!({
                "text": choice.content,
                "index": choice.index,
                "logprobs": null,
                "finish_reason": finish_reason(choice),
            })
        })
        .collect();
    let mut object = json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
    });
    if let (Some(usage), Some(map)) = (&answer.usage, object.as_object_mut()) {
        map.insert("usage".into(), usage_json(usage));
    }
    object
}

/// A complete completions event stream rebuilt from `answer`: the text in pieces of at most
/// [`REPLAY_PIECE_CHARS`] characters, a final chunk with `finish_reason`, the usage chunk when
/// `include_usage` (as in [`to_chat_sse`]), then `data: [DONE]`.
pub fn to_completion_sse(
    answer: &Answer,
    model: &str,
    id: &str,
    created: u64,
    include_usage: bool,
) -> Vec<u8> {
    let mut w = ChunkWriter::new("text_completion", model, id, created, include_usage);
    for choice in replay_choices(answer).iter() {
        for piece in pieces(&choice.content) {
            w.event(json!([{"text": piece, "index": choice.index, "logprobs": null, "finish_reason": null}]));
        }
        w.event(json!([{
            "text": "",
            "index": choice.index,
            "logprobs": null,
            "finish_reason": finish_reason(choice),
        }]));
    }
    w.finish(answer.usage.as_ref())
}

/// Writes `data: {chunk}\n\n` events sharing one envelope.
struct ChunkWriter<'a> {
    out: Vec<u8>,
    object: &'static str,
    model: &'a str,
    id: &'a str,
    created: u64,
    include_usage: bool,
}

impl<'a> ChunkWriter<'a> {
    fn new(
        object: &'static str,
        model: &'a str,
        id: &'a str,
        created: u64,
        include_usage: bool,
    ) -> Self {
        ChunkWriter {
            out: Vec::new(),
            object,
            model,
            id,
            created,
            include_usage,
        }
    }

    fn event(&mut self, choices: Value) {
        self.event_with_usage(choices, Value::Null);
    }

    fn event_with_usage(&mut self, choices: Value, usage: Value) {
        let mut chunk = json!({
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let (true, Some(map)) = (self.include_usage, chunk.as_object_mut()) {
            map.insert("usage".into(), usage);
        }
        self.out.extend_from_slice(b"data: ");
        self.out.extend_from_slice(chunk.to_string().as_bytes());
        self.out.extend_from_slice(b"\n\n");
    }

    fn finish(mut self, usage: Option<&Usage>) -> Vec<u8> {
        if self.include_usage {
            let usage = usage_json(usage.unwrap_or(&Usage::default()));
            self.event_with_usage(json!([]), usage);
        }
        self.out.extend_from_slice(b"data: [DONE]\n\n");
        self.out
    }
}

fn replay_choices(answer: &Answer) -> Cow<'_, [Choice]> {
    if answer.choices.is_empty() {
        Cow::Owned(vec![Choice::default()])
    } else {
        Cow::Borrowed(&answer.choices)
    }
}

fn tool_calls_only(choice: &Choice) -> bool {
    choice.content.is_empty() && !choice.tool_calls.is_empty()
}

fn content_value(choice: &Choice) -> Value {
    if tool_calls_only(choice) {
        Value::Null
    } else {
        Value::String(choice.content.clone())
    }
}

fn finish_reason(choice: &Choice) -> String {
    match &choice.finish_reason {
        Some(reason) => reason.clone(),
        None if !choice.tool_calls.is_empty() => "tool_calls".into(),
        None => "stop".into(),
    }
}

fn tool_call_id(response_id: &str, choice: &Choice, call: &ToolCall) -> String {
    match &call.id {
        Some(id) => id.clone(),
        None => {
            let base = response_id.strip_prefix("chatcmpl-").unwrap_or(response_id);
            format!("call_{base}_{}_{}", choice.index, call.index)
        }
    }
}

fn usage_json(usage: &Usage) -> Value {
    let mut value = json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    });
    if let (Some(cached), Some(map)) = (usage.cached_tokens, value.as_object_mut()) {
        map.insert(
            "prompt_tokens_details".into(),
            json!({"cached_tokens": cached}),
        );
    }
    value
}

/// `text` cut into pieces of at most [`REPLAY_PIECE_CHARS`] characters.
pub(super) fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = rest
            .char_indices()
            .nth(REPLAY_PIECE_CHARS)
            .map_or(rest.len(), |(i, _)| i);
        let (piece, tail) = rest.split_at_checked(cut).unwrap_or((rest, ""));
        rest = tail;
        Some(piece)
    })
}
