//! What an exchange produced: the assistant text, reasoning, tool calls and token usage, read from
//! an OpenAI-style response (a JSON body, or an SSE stream of chunks), and the reverse conversion
//! that rebuilds a response from a stored [`Answer`] for cache replay.
//!
//! Reading is forgiving, because upstreams vary: unknown fields are ignored, `null` is "absent",
//! `content` given as an array of parts is joined by the parts' `text`, `reasoning` is read when
//! `reasoning_content` is absent, numbers may come as floats or strings. An event that is not JSON
//! at all is skipped and counted ([`StreamExtractor::malformed`]); the events after it still count.
//!
//! Unlike OpenAI-Forward (which read only choice 0 and tool call 0, and lost parallel tool calls),
//! every choice and every tool call is kept, merged by their `index`.

use crate::sse::SseEvent;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// Token usage as the upstream reported it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// `usage.prompt_tokens_details.cached_tokens`, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
}

/// One tool call, its argument fragments joined.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolCall {
    /// The position the upstream gave it (streams merge fragments by it).
    pub index: u32,
    pub id: Option<String>,
    /// The tool type, `function` in practice.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: String,
    pub arguments: String,
}

/// One choice (`n` > 1 gives several).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Choice {
    pub index: u32,
    /// The assistant text (`delta.content` / `message.content`, or `text` for completions).
    pub content: String,
    /// Reasoning text of reasoning models (`reasoning_content`, or `reasoning`).
    pub reasoning_content: String,
    /// Sorted by `index`.
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
}

/// What one exchange produced.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Answer {
    /// The first non-empty response `id`.
    pub id: Option<String>,
    /// The first non-empty `model`.
    pub model: Option<String>,
    /// Sorted by `index`.
    pub choices: Vec<Choice>,
    /// The last usage seen (streams send it in a final chunk with `choices: []`).
    pub usage: Option<Usage>,
    /// The collected text reached the byte limit; the texts are prefixes of the real ones.
    pub truncated: bool,
    /// SSE events seen (0 for a JSON body), `[DONE]` and malformed ones included.
    pub events: u64,
    /// The stream ended with `data: [DONE]`.
    pub done: bool,
}

/// Which API a JSON body answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKind {
    Chat,
    Completion,
    Embedding,
}

/// At most this many choices and tool calls (together) are kept, so a hostile stream with endless
/// distinct indexes cannot grow memory without growing the counted text. OpenAI's `n` stops at 128.
pub const MAX_ENTRIES: usize = 1024;

/// Collects an [`Answer`] from SSE events, one at a time.
#[derive(Debug, Clone)]
pub struct StreamExtractor {
    answer: Answer,
    budget: Budget,
    malformed: u64,
    /// Only `id`, `model` and `usage` are wanted (see [`StreamExtractor::usage_only`]).
    usage_only: bool,
}

impl StreamExtractor {
    /// An extractor that keeps at most `max_text_bytes` of text (content, reasoning, tool call ids,
    /// types, names and arguments together) and [`MAX_ENTRIES`] choices and tool calls; past either
    /// limit the answer stops growing and `truncated` is set. Text is cut on a character boundary.
    pub fn new(max_text_bytes: usize) -> Self {
        StreamExtractor {
            answer: Answer::default(),
            budget: Budget {
                used: 0,
                cap: max_text_bytes,
                entries: 0,
                truncated: false,
            },
            malformed: 0,
            usage_only: false,
        }
    }

    /// An extractor for readers that need only `id`, `model`, `usage`, `events` and `done` (usage
    /// metrics, token quotas): once `id` and `model` are known, events whose data does not mention
    /// `"usage"` are counted but not parsed. Text and choices are then incomplete.
    pub fn usage_only() -> Self {
        StreamExtractor {
            usage_only: true,
            ..StreamExtractor::new(0)
        }
    }

    /// Reads one event: a chat or completion chunk, a usage chunk, or `[DONE]`.
    pub fn on_event(&mut self, ev: &SseEvent) {
        self.answer.events = self.answer.events.saturating_add(1);
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.answer.done = true;
            return;
        }
        if data.is_empty() {
            return;
        }
        if self.usage_only
            && self.answer.id.is_some()
            && self.answer.model.is_some()
            && !data.contains("\"usage\"")
        {
            return;
        }
        match serde_json::from_str::<WireBody<'_>>(data) {
            Ok(body) => self.apply(body),
            Err(_) => self.malformed = self.malformed.saturating_add(1),
        }
    }

    /// The answer so far.
    pub fn answer(&self) -> &Answer {
        &self.answer
    }

    /// The answer, once the stream is over.
    pub fn into_answer(self) -> Answer {
        self.answer
    }

    /// Events whose data was neither JSON nor `[DONE]`.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    fn apply(&mut self, body: WireBody<'_>) {
        set_once(&mut self.answer.id, body.id);
        set_once(&mut self.answer.model, body.model);
        if let Some(usage) = body.usage {
            self.answer.usage = Some(usage.into_usage());
        }
        let budget = &mut self.budget;
        for (position, wire) in body.choices.unwrap_or_default().into_iter().enumerate() {
            let index = index_or(wire.index, position);
            let new = |index| Choice {
                index,
                ..Choice::default()
            };
            let Some(choice) = entry(&mut self.answer.choices, index, |c| c.index, new, budget)
            else {
                continue;
            };
            if let Some(text) = wire.text {
                budget.push(&mut choice.content, &text.0);
            }
            for message in [wire.delta, wire.message].into_iter().flatten() {
                apply_message(choice, message, budget);
            }
            if let Some(reason) = wire.finish_reason.filter(|r| !r.0.is_empty()) {
                choice.finish_reason = Some(reason.0.into_owned());
            }
        }
        self.answer.truncated |= self.budget.truncated;
    }
}

fn apply_message(choice: &mut Choice, message: WireMessage<'_>, budget: &mut Budget) {
    if let Some(content) = message.content {
        budget.push(&mut choice.content, &content.0);
    }
    // Some servers send both names with the same text: read one.
    let reasoning = message
        .reasoning_content
        .filter(|r| !r.0.is_empty())
        .or(message.reasoning);
    if let Some(reasoning) = reasoning {
        budget.push(&mut choice.reasoning_content, &reasoning.0);
    }
    for (position, wire) in message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let index = index_or(wire.index, position);
        let new = |index| ToolCall {
            index,
            ..ToolCall::default()
        };
        let Some(call) = entry(&mut choice.tool_calls, index, |t| t.index, new, budget) else {
            continue;
        };
        // Ids, types and names come whole, usually in the first fragment; some servers repeat them.
        if call.id.is_none() {
            call.id = wire.id.and_then(|id| budget.take(&id.0));
        }
        if call.kind.is_none() {
            call.kind = wire.kind.and_then(|kind| budget.take(&kind.0));
        }
        if let Some(function) = wire.function {
            if call.name.is_empty() {
                if let Some(name) = function.name.and_then(|name| budget.take(&name.0)) {
                    call.name = name;
                }
            }
            if let Some(arguments) = function.arguments {
                budget.push(&mut call.arguments, &arguments.0);
            }
        }
    }
}

/// Reads a non-stream response body. `None` when it is not a JSON object, carries an `error`, or
/// (chat and completions) has no `choices`. Embeddings give the model and usage only.
pub fn from_json_body(kind: ApiKind, body: &[u8]) -> Option<Answer> {
    let mut wire: WireBody<'_> = serde_json::from_slice(body).ok()?;
    if wire.error.is_some() {
        return None;
    }
    match kind {
        ApiKind::Chat | ApiKind::Completion if wire.choices.is_none() => return None,
        ApiKind::Embedding => wire.choices = None,
        ApiKind::Chat | ApiKind::Completion => {}
    }
    let mut extractor = StreamExtractor::new(usize::MAX);
    extractor.apply(wire);
    Some(extractor.into_answer())
}

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
fn pieces(text: &str) -> impl Iterator<Item = &str> {
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

/// The text limit shared by everything an extractor collects.
#[derive(Debug, Clone)]
struct Budget {
    used: usize,
    cap: usize,
    entries: usize,
    truncated: bool,
}

impl Budget {
    /// Appends as much of `text` as the limit allows (cut on a character boundary).
    fn push(&mut self, dst: &mut String, text: &str) {
        if text.is_empty() || self.truncated {
            return;
        }
        let room = self.cap.saturating_sub(self.used);
        if text.len() <= room {
            dst.push_str(text);
            self.used += text.len();
            return;
        }
        let mut cut = room;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        dst.push_str(text.get(..cut).unwrap_or_default());
        self.used += cut;
        self.truncated = true;
    }

    /// An owned copy of a whole, non-empty `text` if it fits.
    fn take(&mut self, text: &str) -> Option<String> {
        if text.is_empty() || !self.charge(text.len()) {
            return None;
        }
        Some(text.to_owned())
    }

    /// Counts one more choice or tool call, if allowed.
    fn add_entry(&mut self) -> bool {
        if self.truncated || self.entries >= MAX_ENTRIES {
            self.truncated = true;
            return false;
        }
        self.entries += 1;
        true
    }

    fn charge(&mut self, bytes: usize) -> bool {
        if self.truncated || bytes > self.cap.saturating_sub(self.used) {
            self.truncated = true;
            return false;
        }
        self.used += bytes;
        true
    }
}

/// The item with `index` in a list sorted by index, made and counted when new.
fn entry<'v, T>(
    items: &'v mut Vec<T>,
    index: u32,
    key: impl Fn(&T) -> u32,
    new: impl FnOnce(u32) -> T,
    budget: &mut Budget,
) -> Option<&'v mut T> {
    let position = match items.binary_search_by_key(&index, &key) {
        Ok(position) => position,
        Err(position) => {
            if !budget.add_entry() {
                return None;
            }
            items.insert(position, new(index));
            position
        }
    };
    let item = items.get_mut(position)?;
    Some(item)
}

/// Wire indexes are trusted when present; otherwise the position in the array stands in.
fn index_or(index: Option<Num>, position: usize) -> u32 {
    match index.and_then(|n| n.0) {
        Some(index) => u32::try_from(index).unwrap_or(u32::MAX),
        None => u32::try_from(position).unwrap_or(u32::MAX),
    }
}

fn set_once(slot: &mut Option<String>, value: Option<Text<'_>>) {
    if slot.is_none() {
        if let Some(value) = value.filter(|v| !v.0.is_empty()) {
            *slot = Some(value.0.into_owned());
        }
    }
}

// ---- Wire format: just the fields we read, borrowed from the input where possible. ----

#[derive(Deserialize)]
struct WireBody<'a> {
    #[serde(borrow)]
    id: Option<Text<'a>>,
    #[serde(borrow)]
    model: Option<Text<'a>>,
    #[serde(borrow)]
    choices: Option<Vec<WireChoice<'a>>>,
    usage: Option<WireUsage>,
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct WireChoice<'a> {
    index: Option<Num>,
    #[serde(borrow)]
    delta: Option<WireMessage<'a>>,
    #[serde(borrow)]
    message: Option<WireMessage<'a>>,
    #[serde(borrow)]
    text: Option<Text<'a>>,
    #[serde(borrow)]
    finish_reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct WireMessage<'a> {
    #[serde(borrow)]
    content: Option<Text<'a>>,
    #[serde(borrow)]
    reasoning_content: Option<Text<'a>>,
    #[serde(borrow)]
    reasoning: Option<Text<'a>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<WireToolCall<'a>>>,
}

#[derive(Deserialize)]
struct WireToolCall<'a> {
    index: Option<Num>,
    #[serde(borrow)]
    id: Option<Text<'a>>,
    #[serde(borrow, rename = "type")]
    kind: Option<Text<'a>>,
    #[serde(borrow)]
    function: Option<WireFunction<'a>>,
}

#[derive(Deserialize)]
struct WireFunction<'a> {
    #[serde(borrow)]
    name: Option<Text<'a>>,
    #[serde(borrow)]
    arguments: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: Option<Num>,
    completion_tokens: Option<Num>,
    total_tokens: Option<Num>,
    prompt_tokens_details: Option<WireTokenDetails>,
}

#[derive(Deserialize)]
struct WireTokenDetails {
    cached_tokens: Option<Num>,
}

impl WireUsage {
    fn into_usage(self) -> Usage {
        let prompt_tokens = self.prompt_tokens.and_then(|n| n.0).unwrap_or(0);
        let completion_tokens = self.completion_tokens.and_then(|n| n.0).unwrap_or(0);
        let total_tokens = self
            .total_tokens
            .and_then(|n| n.0)
            .unwrap_or(prompt_tokens.saturating_add(completion_tokens));
        let cached_tokens = self
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .and_then(|n| n.0);
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens,
            cached_tokens,
        }
    }
}

/// A string field read leniently: borrowed from the input when it has no escapes; an array of
/// content parts gives the concatenation of their `text`; an object gives its `text`; any other
/// type reads as empty instead of failing the whole chunk.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor(PhantomData))
    }
}

struct TextVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
    type Value = Text<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v)))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed("")))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed("")))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed("")))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed("")))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed("")))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed("")))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Text::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut joined = String::new();
        while let Some(part) = seq.next_element::<Text<'de>>()? {
            joined.push_str(&part.0);
        }
        Ok(Text(Cow::Owned(joined)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut text = Text(Cow::Borrowed(""));
        while let Some(key) = map.next_key::<Text<'de>>()? {
            if key.0 == "text" {
                text = map.next_value::<Text<'a>>()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(text)
    }
}

/// A count read leniently: integers, non-negative floats (truncated) and numeric strings; anything
/// else is absent.
struct Num(Option<u64>);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NumVisitor)
    }
}

struct NumVisitor;

impl<'de> Visitor<'de> for NumVisitor {
    type Value = Num;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a count")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
        Ok(Num(Some(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
        Ok(Num(u64::try_from(v).ok()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
        // `as` saturates at u64::MAX.
        Ok(Num((v.is_finite() && v >= 0.0).then_some(v as u64)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
        Ok(Num(v.trim().parse().ok()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Num, E> {
        Ok(Num(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Num, E> {
        Ok(Num(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<Num, E> {
        Ok(Num(None))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Num, D::Error> {
        Num::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Num, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Num(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Num, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Num(None))
    }
}

/// Recorded-style OpenAI streams, shared by the tests of this module and of `sse`.
#[cfg(test)]
pub(crate) mod fixtures {
    /// gpt-4o chat stream with `stream_options.include_usage`: role chunk, multi-byte text, an
    /// escaped newline and quotes, a keep-alive comment, finish, usage chunk, `[DONE]`.
    pub(crate) const CHAT: &str = concat!(
        ": OPENROUTER PROCESSING\n\n",
        r#"data: {"id":"chatcmpl-AqK8sYyQ1","object":"chat.completion.chunk","created":1737000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_50cad350e4","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-AqK8sYyQ1","object":"chat.completion.chunk","created":1737000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_50cad350e4","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-AqK8sYyQ1","object":"chat.completion.chunk","created":1737000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_50cad350e4","choices":[{"index":0,"delta":{"content":" wörld, 你好 🌍"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-AqK8sYyQ1","object":"chat.completion.chunk","created":1737000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_50cad350e4","choices":[{"index":0,"delta":{"content":"!\n\"quoted\" \u00e9"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-AqK8sYyQ1","object":"chat.completion.chunk","created":1737000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_50cad350e4","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-AqK8sYyQ1","object":"chat.completion.chunk","created":1737000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_50cad350e4","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":9,"total_tokens":28,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#,
        "\n\n",
        "data: [DONE]\n\n",
    );

    pub(crate) const CHAT_TEXT: &str = "Hello wörld, 你好 🌍!\n\"quoted\" é";

    /// Azure-style stream framed with CRLF: a first chunk with no choices and an empty model
    /// (prompt filter results), two choices (`n: 2`) interleaved, no usage.
    pub(crate) const AZURE_CRLF: &str = concat!(
        r#"data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}"#,
        "\r\n\r\n",
        r#"data: {"choices":[{"content_filter_results":{},"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],"created":1737000001,"id":"chatcmpl-Az1","model":"gpt-4o-mini","object":"chat.completion.chunk","system_fingerprint":"fp_04751d0b65"}"#,
        "\r\n\r\n",
        r#"data: {"choices":[{"content_filter_results":{},"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":1,"logprobs":null}],"created":1737000001,"id":"chatcmpl-Az1","model":"gpt-4o-mini","object":"chat.completion.chunk","system_fingerprint":"fp_04751d0b65"}"#,
        "\r\n\r\n",
        r#"data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"delta":{"content":"Bonjour"},"finish_reason":null,"index":0,"logprobs":null}],"created":1737000001,"id":"chatcmpl-Az1","model":"gpt-4o-mini","object":"chat.completion.chunk","system_fingerprint":"fp_04751d0b65"}"#,
        "\r\n\r\n",
        r#"data: {"choices":[{"content_filter_results":{},"delta":{"content":"Hallo"},"finish_reason":null,"index":1,"logprobs":null}],"created":1737000001,"id":"chatcmpl-Az1","model":"gpt-4o-mini","object":"chat.completion.chunk","system_fingerprint":"fp_04751d0b65"}"#,
        "\r\n\r\n",
        r#"data: {"choices":[{"content_filter_results":{},"delta":{"content":" à tous"},"finish_reason":null,"index":0,"logprobs":null}],"created":1737000001,"id":"chatcmpl-Az1","model":"gpt-4o-mini","object":"chat.completion.chunk","system_fingerprint":"fp_04751d0b65"}"#,
        "\r\n\r\n",
        r#"data: {"choices":[{"content_filter_results":{},"delta":{"content":" zusammen"},"finish_reason":null,"index":1,"logprobs":null}],"created":1737000001,"id":"chatcmpl-Az1","model":"gpt-4o-mini","object":"chat.completion.chunk","system_fingerprint":"fp_04751d0b65"}"#,
        "\r\n\r\n",
        r#"data: {"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0,"logprobs":null}],"created":1737000001,"id":"chatcmpl-Az1","model":"gpt-4o-mini","object":"chat.completion.chunk","system_fingerprint":"fp_04751d0b65"}"#,
        "\r\n\r\n",
        r#"data: {"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"length","index":1,"logprobs":null}],"created":1737000001,"id":"chatcmpl-Az1","model":"gpt-4o-mini","object":"chat.completion.chunk","system_fingerprint":"fp_04751d0b65"}"#,
        "\r\n\r\n",
        "data: [DONE]\r\n\r\n",
    );

    /// Two parallel tool calls, arguments streamed in fragments, then usage.
    pub(crate) const TOOLS: &str = concat!(
        r#"data: {"id":"chatcmpl-T00l5","object":"chat.completion.chunk","created":1737000002,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_PARIS1","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-T00l5","object":"chat.completion.chunk","created":1737000002,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-T00l5","object":"chat.completion.chunk","created":1737000002,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\": \"Paris\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-T00l5","object":"chat.completion.chunk","created":1737000002,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_TOKYO2","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-T00l5","object":"chat.completion.chunk","created":1737000002,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"city\": "}}]},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-T00l5","object":"chat.completion.chunk","created":1737000002,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\"東京\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-T00l5","object":"chat.completion.chunk","created":1737000002,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-T00l5","object":"chat.completion.chunk","created":1737000002,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[],"usage":{"prompt_tokens":80,"completion_tokens":48,"total_tokens":128,"prompt_tokens_details":{"cached_tokens":64}}}"#,
        "\n\n",
        "data: [DONE]\n\n",
    );

    /// DeepSeek-reasoner style: reasoning first, then the answer; usage on the last content chunk.
    pub(crate) const REASONING: &str = concat!(
        r#"data: {"id":"8c1f","object":"chat.completion.chunk","created":1737000003,"model":"deepseek-reasoner","system_fingerprint":"fp_7e73fd9a08","choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":""},"logprobs":null,"finish_reason":null}]}"#,
        "\n\n",
        r#"data: {"id":"8c1f","object":"chat.completion.chunk","created":1737000003,"model":"deepseek-reasoner","system_fingerprint":"fp_7e73fd9a08","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"嗯，用户问"},"logprobs":null,"finish_reason":null}]}"#,
        "\n\n",
        r#"data: {"id":"8c1f","object":"chat.completion.chunk","created":1737000003,"model":"deepseek-reasoner","system_fingerprint":"fp_7e73fd9a08","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"1+1。"},"logprobs":null,"finish_reason":null}]}"#,
        "\n\n",
        r#"data: {"id":"8c1f","object":"chat.completion.chunk","created":1737000003,"model":"deepseek-reasoner","system_fingerprint":"fp_7e73fd9a08","choices":[{"index":0,"delta":{"content":"2","reasoning_content":null},"logprobs":null,"finish_reason":null}]}"#,
        "\n\n",
        r#"data: {"id":"8c1f","object":"chat.completion.chunk","created":1737000003,"model":"deepseek-reasoner","system_fingerprint":"fp_7e73fd9a08","choices":[{"index":0,"delta":{"content":"","reasoning_content":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":28},"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":12}}"#,
        "\n\n",
        "data: [DONE]\n\n",
    );

    /// Legacy completions stream.
    pub(crate) const COMPLETION: &str = concat!(
        r#"data: {"id":"cmpl-C0mp1","object":"text_completion","created":1737000004,"choices":[{"text":"\n\nThis","index":0,"logprobs":null,"finish_reason":null}],"model":"gpt-3.5-turbo-instruct","usage":null}"#,
        "\n\n",
        r#"data: {"id":"cmpl-C0mp1","object":"text_completion","created":1737000004,"choices":[{"text":" is a test.","index":0,"logprobs":null,"finish_reason":null}],"model":"gpt-3.5-turbo-instruct","usage":null}"#,
        "\n\n",
        r#"data: {"id":"cmpl-C0mp1","object":"text_completion","created":1737000004,"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}],"model":"gpt-3.5-turbo-instruct","usage":null}"#,
        "\n\n",
        r#"data: {"id":"cmpl-C0mp1","object":"text_completion","created":1737000004,"model":"gpt-3.5-turbo-instruct","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#,
        "\n\n",
        "data: [DONE]\n\n",
    );

    pub(crate) const ALL: &[&str] = &[CHAT, AZURE_CRLF, TOOLS, REASONING, COMPLETION];
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::sse::SseParser;

    const MAX: usize = 1 << 20;

    /// Parses a stream delivered as `chunks`: the events, the answer, the malformed count.
    fn run<'a>(
        chunks: impl IntoIterator<Item = &'a [u8]>,
        max_text: usize,
    ) -> (Vec<SseEvent>, Answer, u64) {
        let mut parser = SseParser::new(MAX);
        let mut extractor = StreamExtractor::new(max_text);
        let mut all = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            out.clear();
            parser.feed(chunk, &mut out);
            for ev in &out {
                extractor.on_event(ev);
            }
            all.append(&mut out);
        }
        assert!(!parser.finish(), "stream ended mid-event");
        let malformed = extractor.malformed();
        (all, extractor.into_answer(), malformed)
    }

    fn run_whole(stream: &str) -> Answer {
        run([stream.as_bytes()], MAX).1
    }

    #[test]
    fn usage_only_keeps_id_model_usage_events_and_done() {
        let stream = concat!(
            "data: {\"id\":\"c1\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n",
            "data: {\"id\":\"c1\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"id\":\"c1\",\"model\":\"gpt-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
            "data: [DONE]\n\n",
        );
        let full = run_whole(stream);
        let mut parser = SseParser::new(MAX);
        let mut events = Vec::new();
        parser.feed(stream.as_bytes(), &mut events);
        let mut only = StreamExtractor::usage_only();
        for ev in &events {
            only.on_event(ev);
        }
        let only = only.into_answer();
        assert_eq!(only.id, full.id);
        assert_eq!(only.model, full.model);
        assert_eq!(only.usage, full.usage);
        assert_eq!(only.usage.as_ref().map(|u| u.total_tokens), Some(5));
        assert_eq!(only.events, full.events);
        assert_eq!(only.done, full.done);
        // Without a usage chunk: no usage, and the id/model of the first event.
        let mut no_usage = StreamExtractor::usage_only();
        for ev in events.iter().take(2) {
            no_usage.on_event(ev);
        }
        let no_usage = no_usage.into_answer();
        assert_eq!(no_usage.usage, None);
        assert_eq!(no_usage.model.as_deref(), Some("gpt-x"));
    }

    fn choice(index: u32, content: &str, finish: &str) -> Choice {
        Choice {
            index,
            content: content.into(),
            finish_reason: Some(finish.into()),
            ..Choice::default()
        }
    }

    fn call(index: u32, id: &str, name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            index,
            id: Some(id.into()),
            kind: Some("function".into()),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn chat_stream() {
        let (events, answer, malformed) = run([CHAT.as_bytes()], MAX);
        assert_eq!(events.len(), 7);
        assert_eq!(malformed, 0);
        assert_eq!(
            answer,
            Answer {
                id: Some("chatcmpl-AqK8sYyQ1".into()),
                model: Some("gpt-4o-2024-08-06".into()),
                choices: vec![choice(0, CHAT_TEXT, "stop")],
                usage: Some(Usage {
                    prompt_tokens: 19,
                    completion_tokens: 9,
                    total_tokens: 28,
                    cached_tokens: Some(0)
                }),
                truncated: false,
                events: 7,
                done: true,
            }
        );
    }

    #[test]
    fn crlf_stream_with_two_choices() {
        let answer = run_whole(AZURE_CRLF);
        assert_eq!(
            answer.id.as_deref(),
            Some("chatcmpl-Az1"),
            "the empty first id is skipped"
        );
        assert_eq!(answer.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(
            answer.choices,
            vec![
                choice(0, "Bonjour à tous", "stop"),
                choice(1, "Hallo zusammen", "length")
            ]
        );
        assert_eq!(answer.usage, None);
        assert!(answer.done);
        assert_eq!(answer.events, 10);
        // The same stream framed with LF gives the same answer.
        assert_eq!(run_whole(&AZURE_CRLF.replace("\r\n", "\n")), answer);
    }

    #[test]
    fn parallel_tool_calls() {
        let answer = run_whole(TOOLS);
        assert_eq!(
            answer.choices,
            vec![Choice {
                index: 0,
                content: String::new(),
                reasoning_content: String::new(),
                tool_calls: vec![
                    call(0, "call_PARIS1", "get_weather", r#"{"city": "Paris"}"#),
                    call(1, "call_TOKYO2", "get_weather", r#"{"city": "東京"}"#),
                ],
                finish_reason: Some("tool_calls".into()),
            }]
        );
        assert_eq!(
            answer.usage,
            Some(Usage {
                prompt_tokens: 80,
                completion_tokens: 48,
                total_tokens: 128,
                cached_tokens: Some(64)
            })
        );
    }

    #[test]
    fn interleaved_tool_call_fragments_merge_by_index() {
        let events = [
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"b","type":"function","function":{"name":"g","arguments":"{"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":"f","arguments":"["}},{"index":1,"function":{"arguments":"}"}}]}}]}"#,
            // Some servers repeat id and name in every fragment: not duplicated.
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"]"}}]}}]}"#,
        ];
        let mut x = StreamExtractor::new(MAX);
        for data in events {
            x.on_event(&SseEvent {
                data: data.into(),
                ..SseEvent::default()
            });
        }
        let calls = &x.answer().choices[0].tool_calls;
        assert_eq!(
            calls,
            &vec![call(0, "a", "f", "[]"), call(1, "b", "g", "{}")]
        );
    }

    #[test]
    fn reasoning_stream() {
        let answer = run_whole(REASONING);
        assert_eq!(
            answer.choices,
            vec![Choice {
                index: 0,
                content: "2".into(),
                reasoning_content: "嗯，用户问1+1。".into(),
                tool_calls: vec![],
                finish_reason: Some("stop".into()),
            }]
        );
        assert_eq!(answer.usage.map(|u| u.total_tokens), Some(42));
    }

    #[test]
    fn reasoning_field_name_variants() {
        let mut x = StreamExtractor::new(MAX);
        for data in [
            r#"{"choices":[{"delta":{"reasoning":"a"}}]}"#,
            r#"{"choices":[{"delta":{"reasoning":"b","reasoning_content":"b"}}]}"#,
            r#"{"choices":[{"delta":{"reasoning_content":"c"}}]}"#,
        ] {
            x.on_event(&SseEvent {
                data: data.into(),
                ..SseEvent::default()
            });
        }
        assert_eq!(x.answer().choices[0].reasoning_content, "abc");
    }

    #[test]
    fn completion_stream() {
        let answer = run_whole(COMPLETION);
        assert_eq!(answer.id.as_deref(), Some("cmpl-C0mp1"));
        assert_eq!(
            answer.choices,
            vec![choice(0, "\n\nThis is a test.", "stop")]
        );
        assert_eq!(
            answer.usage,
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 7,
                total_tokens: 12,
                cached_tokens: None
            })
        );
    }

    #[test]
    fn every_split_point_and_byte_at_a_time_give_the_same_result() {
        for stream in ALL {
            let bytes = stream.as_bytes();
            let whole = run([bytes], MAX);
            assert!(!whole.1.choices.is_empty());
            for i in 0..=bytes.len() {
                let (a, b) = bytes.split_at(i);
                assert_eq!(run([a, b], MAX), whole, "split at {i}");
            }
            assert_eq!(run(bytes.chunks(1), MAX), whole, "byte at a time");
        }
    }

    #[test]
    fn random_chunking_never_changes_the_result() {
        let mut rng = crate::sse::tests::Rng::new(42);
        for stream in ALL {
            let whole = run([stream.as_bytes()], MAX);
            for _ in 0..300 {
                let chunks = crate::sse::tests::random_chunks(&mut rng, stream.as_bytes());
                assert_eq!(run(chunks.iter().copied(), MAX), whole);
            }
        }
    }

    #[test]
    fn malformed_event_is_skipped_and_later_events_count() {
        let stream = CHAT.replacen(r#"data: {"id":"chatcmpl-AqK8sYyQ1","object":"chat.completion.chunk","created":1737000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_50cad350e4","choices":[{"index":0,"delta":{"content":"Hello"}"#, r#"data: {"id": oops "#, 1);
        let stream = stream.replacen("data: [DONE]", "data: not json at all\n\ndata: [DONE]", 1);
        let (_, answer, malformed) = run([stream.as_bytes()], MAX);
        assert_eq!(malformed, 2);
        assert_eq!(
            answer.choices[0].content,
            CHAT_TEXT.strip_prefix("Hello").unwrap()
        );
        assert_eq!(answer.usage.map(|u| u.total_tokens), Some(28));
        assert!(answer.done);
        assert_eq!(answer.events, 8);
    }

    #[test]
    fn lenient_field_types_do_not_lose_the_chunk() {
        let mut x = StreamExtractor::new(MAX);
        for data in [
            // Content as an array of parts; finish_reason a number; index missing.
            r#"{"choices":[{"delta":{"content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},"b"]},"finish_reason":7}]}"#,
            // Usage counts as float and string, details null.
            r#"{"choices":[],"usage":{"prompt_tokens":3.0,"completion_tokens":"4","prompt_tokens_details":null}}"#,
        ] {
            x.on_event(&SseEvent {
                data: data.into(),
                ..SseEvent::default()
            });
        }
        assert_eq!(x.malformed(), 0);
        assert_eq!(
            x.answer().choices,
            vec![Choice {
                content: "ab".into(),
                ..Choice::default()
            }]
        );
        assert_eq!(
            x.answer().usage,
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7,
                cached_tokens: None
            })
        );
    }

    #[test]
    fn text_cap_truncates_on_a_char_boundary() {
        // CHAT_TEXT: "Hello wörld, 你好 🌍…"; 16 bytes end inside "你" (bytes 14..17).
        let (_, answer, _) = run([CHAT.as_bytes()], 16);
        assert!(answer.truncated);
        assert_eq!(answer.choices[0].content, "Hello wörld, ");
        // Everything that is not text still arrives.
        assert_eq!(answer.choices[0].finish_reason.as_deref(), Some("stop"));
        assert_eq!(answer.usage.map(|u| u.total_tokens), Some(28));
        assert!(answer.done);

        let (_, answer, _) = run([CHAT.as_bytes()], MAX);
        assert!(!answer.truncated);
    }

    #[test]
    fn text_cap_bounds_memory_of_a_huge_stream() {
        const CAP: usize = 64 * 1024;
        let piece =
            r#"{"choices":[{"index":0,"delta":{"content":"0123456789abcdef0123456789abcdef"}}]}"#;
        let mut x = StreamExtractor::new(CAP);
        let ev = SseEvent {
            data: piece.into(),
            ..SseEvent::default()
        };
        for _ in 0..100_000 {
            x.on_event(&ev);
        }
        let answer = x.into_answer();
        assert!(answer.truncated);
        assert!(answer.choices[0].content.len() <= CAP);
        assert!(answer.choices[0].content.len() >= CAP - 100);
        assert_eq!(answer.events, 100_000);
    }

    #[test]
    fn distinct_indexes_are_bounded_too() {
        let mut x = StreamExtractor::new(MAX);
        for i in 0..100_000u32 {
            let data = format!(
                r#"{{"choices":[{{"index":{i},"delta":{{"tool_calls":[{{"index":{i}}}]}}}}]}}"#
            );
            x.on_event(&SseEvent {
                data,
                ..SseEvent::default()
            });
        }
        let answer = x.into_answer();
        assert!(answer.truncated);
        let entries: usize = answer.choices.iter().map(|c| 1 + c.tool_calls.len()).sum();
        assert_eq!(entries, MAX_ENTRIES);
    }

    #[test]
    fn non_stream_chat_body() {
        let body = r#"{
          "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
          "object": "chat.completion",
          "created": 1741569952,
          "model": "gpt-4.1-2025-04-14",
          "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! How can I assist you today?", "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
          }],
          "usage": {
            "prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}
          },
          "service_tier": "default"
        }"#;
        let answer = from_json_body(ApiKind::Chat, body.as_bytes()).unwrap();
        assert_eq!(
            answer.id.as_deref(),
            Some("chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT")
        );
        assert_eq!(answer.model.as_deref(), Some("gpt-4.1-2025-04-14"));
        assert_eq!(
            answer.choices,
            vec![choice(0, "Hello! How can I assist you today?", "stop")]
        );
        assert_eq!(
            answer.usage,
            Some(Usage {
                prompt_tokens: 19,
                completion_tokens: 10,
                total_tokens: 29,
                cached_tokens: Some(3)
            })
        );
        assert!(!answer.done && !answer.truncated);
        assert_eq!(answer.events, 0);
    }

    #[test]
    fn non_stream_tool_calls_and_reasoning() {
        let body = r#"{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"m",
          "choices":[{"index":0,"message":{"role":"assistant","content":null,"reasoning_content":"think",
            "tool_calls":[
              {"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
              {"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{}"}}]},
            "finish_reason":"tool_calls"}],
          "usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}"#;
        let answer = from_json_body(ApiKind::Chat, body.as_bytes()).unwrap();
        let c = &answer.choices[0];
        assert_eq!(c.content, "");
        assert_eq!(c.reasoning_content, "think");
        assert_eq!(
            c.tool_calls,
            vec![
                call(0, "call_a", "get_weather", r#"{"city":"Paris"}"#),
                call(1, "call_b", "get_time", "{}")
            ]
        );
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn non_stream_completion_and_embedding_bodies() {
        let body = r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"gpt-3.5-turbo-instruct",
          "choices":[{"text":"\n\nHi there","index":0,"logprobs":null,"finish_reason":"length"}],
          "usage":{"prompt_tokens":1,"completion_tokens":4,"total_tokens":5}}"#;
        let answer = from_json_body(ApiKind::Completion, body.as_bytes()).unwrap();
        assert_eq!(answer.choices, vec![choice(0, "\n\nHi there", "length")]);
        assert_eq!(answer.usage.map(|u| u.completion_tokens), Some(4));

        let body = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023,-0.0093]}],
          "model":"text-embedding-3-small","usage":{"prompt_tokens":2,"total_tokens":2}}"#;
        let answer = from_json_body(ApiKind::Embedding, body.as_bytes()).unwrap();
        assert_eq!(answer.model.as_deref(), Some("text-embedding-3-small"));
        assert!(answer.choices.is_empty());
        assert_eq!(
            answer.usage,
            Some(Usage {
                prompt_tokens: 2,
                completion_tokens: 0,
                total_tokens: 2,
                cached_tokens: None
            })
        );
    }

    #[test]
    fn non_stream_bodies_that_are_not_answers() {
        let error = br#"{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}"#;
        assert_eq!(from_json_body(ApiKind::Chat, error), None);
        assert_eq!(from_json_body(ApiKind::Embedding, error), None);
        assert_eq!(from_json_body(ApiKind::Chat, b"not json"), None);
        assert_eq!(from_json_body(ApiKind::Chat, b"[1,2]"), None);
        assert_eq!(from_json_body(ApiKind::Chat, br#"{"object":"list"}"#), None);
        assert!(from_json_body(ApiKind::Chat, br#"{"choices":[],"error":null}"#).is_some());
    }

    /// Parses a replayed stream back.
    fn reparse(sse: &[u8]) -> Answer {
        let (events, answer, malformed) = run([sse], MAX);
        assert_eq!(malformed, 0);
        assert_eq!(answer.events, events.len() as u64);
        answer
    }

    #[test]
    fn chat_sse_round_trip() {
        for stream in [CHAT, AZURE_CRLF, TOOLS, REASONING] {
            let original = run_whole(stream);
            for include_usage in [false, true] {
                let sse = to_chat_sse(
                    &original,
                    "gpt-test",
                    "chatcmpl-replay",
                    1_700_000_000,
                    include_usage,
                );
                let replayed = reparse(&sse);
                assert_eq!(replayed.choices, original.choices);
                assert_eq!(replayed.id.as_deref(), Some("chatcmpl-replay"));
                assert_eq!(replayed.model.as_deref(), Some("gpt-test"));
                assert!(replayed.done);
                if include_usage {
                    assert_eq!(
                        replayed.usage,
                        Some(original.usage.clone().unwrap_or_default())
                    );
                } else {
                    assert_eq!(replayed.usage, None);
                }
            }
        }
    }

    #[test]
    fn chat_sse_long_text_in_pieces() {
        let text: String =
            "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. 🥊".repeat(20);
        let original = Answer {
            choices: vec![choice(0, &text, "stop")],
            ..Answer::default()
        };
        let sse = to_chat_sse(&original, "m", "chatcmpl-1", 1, false);
        let mut parser = SseParser::new(MAX);
        let mut events = Vec::new();
        parser.feed(&sse, &mut events);
        let pieces = text.chars().count().div_ceil(REPLAY_PIECE_CHARS);
        // role + pieces + finish + [DONE]
        assert_eq!(events.len(), pieces + 3);
        assert_eq!(reparse(&sse).choices, original.choices);
    }

    #[test]
    fn chat_sse_shape() {
        let original = run_whole(TOOLS);
        let sse = to_chat_sse(&original, "gpt-4o-mini", "chatcmpl-r", 7, true);
        let mut parser = SseParser::new(MAX);
        let mut events = Vec::new();
        parser.feed(&sse, &mut events);
        let chunks: Vec<Value> = events
            .iter()
            .filter(|e| e.data != "[DONE]")
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect();
        let first = &chunks[0];
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["created"], 7);
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert!(
            first["choices"][0]["delta"]["content"].is_null(),
            "tool calls only: content null"
        );
        assert!(first["usage"].is_null() && first.get("usage").is_some());
        let tool_start = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(tool_start["type"], "function");
        assert_eq!(tool_start["id"], "call_PARIS1");
        assert_eq!(tool_start["function"]["name"], "get_weather");
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["total_tokens"], 128);
        assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 64);
        assert_eq!(
            chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
            "tool_calls"
        );
        assert!(sse.ends_with(b"data: [DONE]\n\n"));
    }

    #[test]
    fn chat_completion_json_shape() {
        let text = run_whole(CHAT);
        let v = to_chat_completion_json(&text, "gpt-4", "chatcmpl-9", 1_795_671_642);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["id"], "chatcmpl-9");
        assert_eq!(v["model"], "gpt-4");
        assert_eq!(v["created"], 1_795_671_642u64);
        assert_eq!(
            v["choices"][0]["message"],
            json!({"role": "assistant", "content": CHAT_TEXT})
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 28);

        let tools = run_whole(TOOLS);
        let v = to_chat_completion_json(&tools, "gpt-4", "chatcmpl-9", 1);
        let message = &v["choices"][0]["message"];
        assert!(message["content"].is_null());
        assert_eq!(
            message["tool_calls"][1],
            json!({"id": "call_TOKYO2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"東京\"}"}})
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

        // Reading the rebuilt body gives the answer back.
        let back = from_json_body(ApiKind::Chat, v.to_string().as_bytes()).unwrap();
        assert_eq!(back.choices, tools.choices);
        assert_eq!(back.usage, tools.usage);

        // No usage recorded: none invented. No id recorded: one is made up. No choices: one empty.
        let mut bare = Answer::default();
        let v = to_chat_completion_json(&bare, "m", "chatcmpl-abc", 1);
        assert!(v.get("usage").is_none());
        assert_eq!(v["choices"][0]["message"]["content"], "");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        bare.choices = vec![Choice {
            tool_calls: vec![ToolCall {
                name: "f".into(),
                ..ToolCall::default()
            }],
            ..Choice::default()
        }];
        let v = to_chat_completion_json(&bare, "m", "chatcmpl-abc", 1);
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["id"],
            "call_abc_0_0"
        );
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["type"],
            "function"
        );
    }

    #[test]
    fn completion_round_trip() {
        let original = run_whole(COMPLETION);
        for include_usage in [false, true] {
            let sse = to_completion_sse(
                &original,
                "gpt-3.5-turbo-instruct",
                "cmpl-r",
                5,
                include_usage,
            );
            let replayed = reparse(&sse);
            assert_eq!(replayed.choices, original.choices);
            assert_eq!(replayed.usage.is_some(), include_usage);
        }
        let v = to_completion_json(&original, "gpt-3.5-turbo-instruct", "cmpl-r", 5);
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "\n\nThis is a test.");
        let back = from_json_body(ApiKind::Completion, v.to_string().as_bytes()).unwrap();
        assert_eq!(back.choices, original.choices);
        assert_eq!(back.usage, original.usage);
    }

    #[test]
    fn answer_serde_round_trip() {
        let answer = run_whole(TOOLS);
        let json = serde_json::to_string(&answer).unwrap();
        assert!(json.contains(r#""type":"function""#));
        let back: Answer = serde_json::from_str(&json).unwrap();
        assert_eq!(back, answer);
    }

    #[test]
    fn pieces_cut_on_char_boundaries() {
        let text = "aé你🌍".repeat(10);
        let parts: Vec<&str> = pieces(&text).collect();
        assert_eq!(parts.concat(), text);
        assert!(parts
            .iter()
            .all(|p| p.chars().count() <= REPLAY_PIECE_CHARS));
        assert_eq!(parts.len(), 3);
        assert_eq!(pieces("").count(), 0);
    }
}
