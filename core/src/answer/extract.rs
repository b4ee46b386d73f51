//! Reading an [`Answer`] from an OpenAI-style response: a JSON body, or an SSE stream one event at a
//! time, with a text budget so a hostile stream cannot grow memory without bound. The wire types
//! name just the fields read, borrowed from the input where possible.

use super::{Answer, ApiKind, Choice, ToolCall, Usage};
use crate::sse::SseEvent;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

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
    /// metrics, token quotas): once `id` and `model` are known, events whose data has no `"usage"`
    /// key with a value other than `null` (which could change none of these) are counted but not
    /// parsed, and the others are parsed without collecting their choices (so [`Self::malformed`]
    /// counts only the events parsed). Text and choices stay empty.
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
            && !may_carry_usage(data)
        {
            return;
        }
        if self.usage_only {
            match serde_json::from_str::<WireUsageBody<'_>>(data) {
                Ok(body) => self.apply_usage(body),
                Err(_) => self.malformed = self.malformed.saturating_add(1),
            }
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

    /// `id`, `model` and `usage` of a chunk whose `choices` were checked but not read.
    fn apply_usage(&mut self, body: WireUsageBody<'_>) {
        set_once(&mut self.answer.id, body.id);
        set_once(&mut self.answer.model, body.model);
        if let Some(usage) = body.usage {
            self.answer.usage = Some(usage.into_usage());
        }
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

/// Whether an event's data may carry a usage object: some `"usage"` key whose value is not `null`.
/// When false, parsing the event could not change an answer whose `id` and `model` are known: a
/// `null` usage is absent (OpenAI streams with `include_usage` send `"usage":null` in every chunk
/// but the last). The quoted word appears unescaped only as a key or a whole string value.
pub(crate) fn may_carry_usage(data: &str) -> bool {
    const KEY: &str = "\"usage\"";
    let mut rest = data;
    while let Some(at) = rest.find(KEY) {
        rest = rest.get(at + KEY.len()..).unwrap_or_default();
        if let Some(value) = rest.trim_start().strip_prefix(':') {
            if !value.trim_start().starts_with("null") {
                return true;
            }
        }
    }
    false
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

/// [`from_json_body`] for readers that need only `id`, `model` and `usage` (usage metrics, token
/// quotas): `None` in exactly the same cases, the same `id`, `model` and `usage` otherwise, but no
/// choices — their text is checked as JSON of the same shape, never copied.
pub fn usage_from_json_body(kind: ApiKind, body: &[u8]) -> Option<Answer> {
    let wire: WireUsageBody<'_> = serde_json::from_slice(body).ok()?;
    if wire.error.is_some() {
        return None;
    }
    if matches!(kind, ApiKind::Chat | ApiKind::Completion) && wire.choices.is_none() {
        return None;
    }
    let mut extractor = StreamExtractor::new(0);
    extractor.apply_usage(wire);
    Some(extractor.into_answer())
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

/// [`WireBody`] without reading the choices: `choices` is still checked to have the shape
/// [`WireChoice`] accepts (so exactly the same bodies fail), without collecting anything.
#[derive(Deserialize)]
struct WireUsageBody<'a> {
    #[serde(borrow)]
    id: Option<Text<'a>>,
    #[serde(borrow)]
    model: Option<Text<'a>>,
    choices: Option<SkipSeq<SkipChoice>>,
    usage: Option<WireUsage>,
    error: Option<IgnoredAny>,
}

// The `Skip*` types accept exactly what their `Wire*` counterparts accept and keep nothing: the
// same fields (in the same order, for JSON arrays read as structs) and the same readers for leaf
// values (`deserialize_any`, so strings and numbers are checked as strictly as `Text` and `Num`).

#[derive(Deserialize)]
#[allow(dead_code)] // Read to be checked, never used.
struct SkipChoice {
    index: Option<SkipNum>,
    delta: Option<SkipMessage>,
    message: Option<SkipMessage>,
    text: Option<SkipText>,
    finish_reason: Option<SkipText>,
}

#[derive(Deserialize)]
#[allow(dead_code)] // Read to be checked, never used.
struct SkipMessage {
    content: Option<SkipText>,
    reasoning_content: Option<SkipText>,
    reasoning: Option<SkipText>,
    tool_calls: Option<SkipSeq<SkipToolCall>>,
}

#[derive(Deserialize)]
#[allow(dead_code)] // Read to be checked, never used.
struct SkipToolCall {
    index: Option<SkipNum>,
    id: Option<SkipText>,
    #[serde(rename = "type")]
    kind: Option<SkipText>,
    function: Option<SkipFunction>,
}

#[derive(Deserialize)]
#[allow(dead_code)] // Read to be checked, never used.
struct SkipFunction {
    name: Option<SkipText>,
    arguments: Option<SkipText>,
}

/// A JSON array read like `Vec<T>`, its elements dropped as they are read.
struct SkipSeq<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for SkipSeq<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SeqVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for SeqVisitor<T> {
            type Value = SkipSeq<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<T>()?.is_some() {}
                Ok(SkipSeq(PhantomData))
            }
        }
        deserializer.deserialize_seq(SeqVisitor(PhantomData))
    }
}

/// Accepts what [`Text`] accepts, keeping nothing.
struct SkipText;

impl<'de> Deserialize<'de> for SkipText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipTextVisitor)
    }
}

struct SkipTextVisitor;

impl<'de> Visitor<'de> for SkipTextVisitor {
    type Value = SkipText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<SkipText, E> {
        Ok(SkipText)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SkipText, E> {
        Ok(SkipText)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SkipText, E> {
        Ok(SkipText)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SkipText, E> {
        Ok(SkipText)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SkipText, E> {
        Ok(SkipText)
    }

    fn visit_unit<E: de::Error>(self) -> Result<SkipText, E> {
        Ok(SkipText)
    }

    fn visit_none<E: de::Error>(self) -> Result<SkipText, E> {
        Ok(SkipText)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<SkipText, D::Error> {
        SkipText::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SkipText, A::Error> {
        while seq.next_element::<SkipText>()?.is_some() {}
        Ok(SkipText)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SkipText, A::Error> {
        // Like `Text`: the key is read as text; only the value of `text` is read as text.
        while let Some(key) = map.next_key::<Text<'de>>()? {
            if key.0 == "text" {
                map.next_value::<SkipText>()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(SkipText)
    }
}

/// Accepts what [`Num`] accepts, keeping nothing.
struct SkipNum;

impl<'de> Deserialize<'de> for SkipNum {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Num::deserialize(deserializer).map(|_| SkipNum)
    }
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
