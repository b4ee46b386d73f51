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
//!
//! The data model is here; reading it is in `extract.rs`, rebuilding responses in `replay.rs`
//! (both re-exported).

mod extract;
mod replay;

pub use extract::*;
pub use replay::*;

use serde::{Deserialize, Serialize};

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

/// Recorded-style OpenAI streams, shared by the tests of this module and of `sse`.
#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests;
