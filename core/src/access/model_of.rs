//! Which model a request asks for, wherever the API puts it: in the JSON body (`model`), in a
//! multipart or url-encoded form field (`model` of audio and image uploads), in the path (Azure
//! `/openai/deployments/<m>/…`, Gemini and Vertex `…/models/<m>:generateContent`) or in the query
//! (`/v1/realtime?model=…`).
//!
//! The model permission of restricted levels fails closed: when a request reaches an endpoint
//! that takes a model and the model cannot be read unambiguously (no field, two fields, a form
//! this module does not parse, a path with dot segments or encoded slashes), the answer is
//! [`ModelError`], and the filter refuses the request instead of forwarding it. Where parsers
//! could disagree (duplicate fields, odd delimiters, transfer encodings), this module refuses
//! rather than guesses which one the upstream will read.

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Where the model of a request is to be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The path or query names it.
    Named(String),
    /// The body names it (JSON `model`, or the `model` field of a form).
    Body,
    /// The endpoint takes a model but the path cannot be read reliably, or names none.
    Unknown,
}

/// Why the model of a request could not be determined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// No model field at all.
    Missing,
    /// The body or path could not be read unambiguously (the text says why).
    Unreadable(&'static str),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Missing => f.write_str("the request names no model"),
            ModelError::Unreadable(why) => f.write_str(why),
        }
    }
}

/// Endpoints (matched on the path's last segments, with or without `/v1` or any prefix in front)
/// whose POST body carries the model. Batches are listed although their body never names one: the
/// model is inside an uploaded file, so a restricted level cannot be checked there and is refused.
const BODY_ENDPOINTS: &[&[&str]] = &[
    &["chat", "completions"],
    &["completions"],
    &["embeddings"],
    &["responses"],
    &["responses", "input_tokens"],
    &["images", "generations"],
    &["images", "edits"],
    &["images", "variations"],
    &["audio", "speech"],
    &["audio", "transcriptions"],
    &["audio", "translations"],
    &["moderations"],
    &["batches"],
    &["fine_tuning", "jobs"],
    &["assistants"],
    &["runs"],
    &["realtime", "sessions"],
    &["realtime", "transcription_sessions"],
    &["realtime", "client_secrets"],
    &["messages"],
    &["messages", "count_tokens"],
];

/// Where the model of a request to `route_path` (the path after the route prefix, no query) is,
/// or `None` when the endpoint takes no model. `openai` says whether the route is an openai
/// route: JSON and form bodies are only model-bearing there (general routes list theirs in
/// `model_paths`); path forms (Azure, Gemini) count on every route.
pub fn model_source(
    openai: bool,
    method: &str,
    route_path: &str,
    query: Option<&str>,
) -> Option<ModelSource> {
    let Some(segments) = decoded_segments(route_path) else {
        return Some(ModelSource::Unknown);
    };
    if let Some(found) = path_model(&segments) {
        return Some(found);
    }
    if !openai {
        return None;
    }
    let last = |n: usize| {
        segments
            .len()
            .checked_sub(n)
            .and_then(|i| segments.get(i..))
    };
    let tail_is = |want: &[&str]| {
        last(want.len())
            .is_some_and(|got| got.iter().zip(want).all(|(g, w)| g.eq_ignore_ascii_case(w)))
    };
    if tail_is(&["realtime"]) {
        // The Realtime API names the model in the query of its WebSocket upgrade.
        return Some(match query.map(|q| form_model(q.as_bytes())) {
            Some(Ok(m)) => ModelSource::Named(m),
            _ => ModelSource::Unknown,
        });
    }
    if method != "POST" {
        return None;
    }
    // Assistants' messages (`/threads/<id>/messages`) take no model; Anthropic's do.
    if tail_is(&["messages"]) && segments.len() >= 3 {
        let before = segments.get(segments.len() - 3);
        if before.is_some_and(|s| s.eq_ignore_ascii_case("threads")) {
            return None;
        }
    }
    BODY_ENDPOINTS
        .iter()
        .any(|e| tail_is(e))
        .then_some(ModelSource::Body)
}

/// The path's segments, percent-decoded; a trailing `/` is ignored. `None` when the path is one
/// an upstream could read differently: dot segments, empty segments (`//`), backslashes, encoded
/// `/`, `\` or control characters, or invalid escapes.
fn decoded_segments(route_path: &str) -> Option<Vec<String>> {
    let trimmed = route_path.strip_suffix('/').unwrap_or(route_path);
    let rest = trimmed.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    for raw in rest.split('/') {
        let seg = percent_decode_strict(raw)?;
        if seg.is_empty()
            || seg == "."
            || seg == ".."
            || seg.contains(['/', '\\', ';'])
            || seg.chars().any(char::is_control)
        {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}

fn percent_decode_strict(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Gemini methods, for a route prefix that already ends in `/models` (`/<m>:generateContent`).
const GEMINI_METHODS: &[&str] = &[
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "batchEmbedContents",
    "batchGenerateContent",
    "predict",
    "predictLongRunning",
    "generateAnswer",
];

/// Azure `…/openai/deployments/<m>/…` and Gemini/Vertex `…/models/<m>:<method>`. The route
/// prefix may already hold the first part (a route `/azure` to `https://x.openai.azure.com/openai`
/// sees `/deployments/<m>/…`; a route to `…/v1beta/models` sees `/<m>:generateContent`), so
/// those forms also count as the first segment, on every route type: a restricted key must not
/// reach a model just because the route's base URL hides part of the path.
fn path_model(segments: &[String]) -> Option<ModelSource> {
    let named = |m: &str| {
        Some(if m.trim().is_empty() {
            ModelSource::Unknown
        } else {
            ModelSource::Named(m.to_string())
        })
    };
    for (i, seg) in segments.iter().enumerate() {
        let next = segments.get(i + 1);
        let after_openai = match i.checked_sub(1) {
            Some(p) => segments
                .get(p)
                .is_some_and(|s| s.eq_ignore_ascii_case("openai")),
            None => true,
        };
        if seg.eq_ignore_ascii_case("deployments") && after_openai {
            return named(next.map_or("", String::as_str));
        }
        if seg.eq_ignore_ascii_case("models") || seg.eq_ignore_ascii_case("tunedModels") {
            if let Some((model, method)) = next.and_then(|n| n.split_once(':')) {
                if method.is_empty() {
                    return Some(ModelSource::Unknown);
                }
                return named(model);
            }
        }
    }
    let (model, method) = segments.first()?.split_once(':')?;
    if GEMINI_METHODS
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
    {
        return named(model);
    }
    None
}

/// The model a request body names, read according to its `content-type`: JSON (or no type),
/// `multipart/form-data` or `application/x-www-form-urlencoded`. `Ok(None)` is never returned:
/// a body without a model is [`ModelError::Missing`].
pub fn body_model(content_type: Option<&str>, body: &[u8]) -> Result<String, ModelError> {
    let ct = content_type.map(str::trim).unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "" | "application/json" | "text/json" => json_model(body),
        e if e.ends_with("+json") => json_model(body),
        "multipart/form-data" => {
            let boundary = boundary_of(ct).ok_or(ModelError::Unreadable(
                "the multipart content-type has no usable boundary",
            ))?;
            multipart_model(body, boundary.as_bytes())
        }
        "application/x-www-form-urlencoded" => form_model(body),
        _ => Err(ModelError::Unreadable(
            "the body's content-type is not JSON or a form",
        )),
    }
}

/// The top-level `model` string of a JSON object, read without building the whole value (other
/// fields are skipped). Two `model` keys are refused: parsers disagree on which one counts.
pub fn json_model(body: &[u8]) -> Result<String, ModelError> {
    struct Probe;
    impl<'de> Visitor<'de> for Probe {
        type Value = Result<String, ModelError>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found: Option<Result<String, ModelError>> = None;
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if key == "model" {
                    let value: serde_json::Value = map.next_value()?;
                    let this = match value {
                        serde_json::Value::String(m) if !m.trim().is_empty() => Ok(m),
                        serde_json::Value::Null => Err(ModelError::Missing),
                        _ => Err(ModelError::Unreadable("`model` must be a non-empty string")),
                    };
                    found = Some(match found {
                        None => this,
                        Some(_) => Err(ModelError::Unreadable("the body has two `model` fields")),
                    });
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found.unwrap_or(Err(ModelError::Missing)))
        }
    }
    // Skipped values are not checked for UTF-8 by serde_json: check the whole body, so what is
    // accepted here is exactly what a full JSON parse accepts.
    let text = std::str::from_utf8(body)
        .map_err(|_| ModelError::Unreadable("the body is not UTF-8 JSON"))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let found = (&mut de)
        .deserialize_map(Probe)
        .map_err(|_| ModelError::Unreadable("the body is not a JSON object"))?;
    de.end()
        .map_err(|_| ModelError::Unreadable("the body is not a JSON object"))?;
    found
}

/// The `boundary` parameter of a multipart content type (quoted or not), 1 to 70 characters.
fn boundary_of(content_type: &str) -> Option<String> {
    let mut found = None;
    for param in content_type.split(';').skip(1) {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            continue;
        }
        if found.is_some() {
            return None;
        }
        let v = value.trim();
        let v = match v.strip_prefix('"') {
            Some(q) => q.strip_suffix('"')?,
            None => v,
        };
        found = Some(v.to_string());
    }
    found.filter(|b| !b.is_empty() && b.len() <= 70 && !b.contains(['"', '\r', '\n']))
}

/// The value of the one form field named `model` in a `multipart/form-data` body.
///
/// Strict on purpose: delimiters must be CRLF-separated, every occurrence of `--boundary` in the
/// body must be a delimiter this parser recognised, the body must end with the closing delimiter,
/// part headers must be CRLF lines, and a `model` part must have no transfer encoding, no
/// `filename` and no RFC 2231 `name*`. Anything else is [`ModelError::Unreadable`].
pub fn multipart_model(body: &[u8], boundary: &[u8]) -> Result<String, ModelError> {
    const BAD: ModelError = ModelError::Unreadable("the multipart body could not be read");
    let mut dash = b"--".to_vec();
    dash.extend_from_slice(boundary);
    let mut delim = b"\r\n".to_vec();
    delim.extend_from_slice(&dash);

    // Every place `--boundary` occurs; each must turn out to be a delimiter line.
    let occurrences = find_all(body, &dash);
    let first = *occurrences.first().ok_or(BAD)?;
    // The first delimiter starts the body or follows a CRLF (after a preamble).
    if first != 0 && body.get(..first).is_none_or(|p| !p.ends_with(b"\r\n")) {
        return Err(BAD);
    }
    let mut pos = first + dash.len();
    let mut recognised = 1usize;
    let mut model: Option<String> = None;
    // Parts until the closing delimiter (`--boundary--`); a body without one is an error.
    loop {
        let rest = body.get(pos..).ok_or(BAD)?;
        if rest.starts_with(b"--") {
            break;
        }
        // Transport padding (spaces, tabs) then CRLF ends the delimiter line.
        let pad = rest
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        let after = rest.get(pad..).ok_or(BAD)?;
        if !after.starts_with(b"\r\n") {
            return Err(BAD);
        }
        let part_start = pos + pad + 2;
        let part_len = find(body.get(part_start..).ok_or(BAD)?, &delim).ok_or(BAD)?;
        let part = body.get(part_start..part_start + part_len).ok_or(BAD)?;
        if let Some(value) = part_model_value(part)? {
            if model.is_some() {
                return Err(ModelError::Unreadable("the form has two `model` fields"));
            }
            model = Some(value);
        }
        pos = part_start + part_len + delim.len();
        recognised += 1;
    }
    // After the closing `--`, only an epilogue; the boundary must not appear again.
    if recognised != occurrences.len() {
        return Err(BAD);
    }
    model.ok_or(ModelError::Missing)
}

/// `Some(value)` when this part is the `model` field. Errors on headers that are not CRLF lines,
/// and on a `model` part whose encoding or name form is ambiguous.
fn part_model_value(part: &[u8]) -> Result<Option<String>, ModelError> {
    const BAD: ModelError = ModelError::Unreadable("a multipart part could not be read");
    let (head, value) = match find(part, b"\r\n\r\n") {
        Some(i) => (part.get(..i).ok_or(BAD)?, part.get(i + 4..).ok_or(BAD)?),
        // A part with headers only (empty value) ends right after them.
        None if part.ends_with(b"\r\n") => (part, &b""[..]),
        None => return Err(BAD),
    };
    let head = std::str::from_utf8(head).map_err(|_| BAD)?;
    let mut name: Option<String> = None;
    let mut extended_name = false;
    let mut has_filename = false;
    let mut encoded = false;
    for line in head.split("\r\n") {
        if line.contains(['\r', '\n']) || line.starts_with([' ', '\t']) {
            return Err(BAD); // bare CR/LF or folded header lines
        }
        let (field, val) = line.split_once(':').ok_or(BAD)?;
        let field = field.trim().to_ascii_lowercase();
        if field == "content-transfer-encoding" {
            let v = val.trim().to_ascii_lowercase();
            encoded |= !matches!(v.as_str(), "7bit" | "8bit" | "binary");
        }
        if field != "content-disposition" {
            continue;
        }
        if name.is_some() || extended_name {
            return Err(BAD); // two dispositions
        }
        for param in disposition_params(val)? {
            let (k, v) = param;
            match k.as_str() {
                "name" => {
                    if name.is_some() {
                        return Err(BAD);
                    }
                    name = Some(v);
                }
                "name*" => extended_name = true,
                "filename" | "filename*" => has_filename = true,
                _ => {}
            }
        }
    }
    let is_model = name
        .as_deref()
        .is_some_and(|n| n.eq_ignore_ascii_case("model"));
    if extended_name || (is_model && name.as_deref() != Some("model")) {
        return Err(ModelError::Unreadable(
            "a form field name is written in a form this gateway does not check",
        ));
    }
    if !is_model {
        return Ok(None);
    }
    if encoded || has_filename {
        return Err(ModelError::Unreadable(
            "the `model` form field must be plain text",
        ));
    }
    let text = std::str::from_utf8(value).map_err(|_| BAD)?.trim();
    if text.is_empty() {
        return Err(ModelError::Missing);
    }
    Ok(Some(text.to_string()))
}

/// The parameters of a `Content-Disposition` value (`form-data; name="model"`), names
/// lower-cased, quoted values unescaped.
fn disposition_params(value: &str) -> Result<Vec<(String, String)>, ModelError> {
    const BAD: ModelError = ModelError::Unreadable("a Content-Disposition could not be read");
    let mut out = Vec::new();
    let mut chars = value.char_indices().peekable();
    // Skip the disposition type.
    for (_, c) in chars.by_ref() {
        if c == ';' {
            break;
        }
    }
    loop {
        while chars
            .next_if(|(_, c)| c.is_whitespace() || *c == ';')
            .is_some()
        {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && *c != ';') {
            key.push(c);
        }
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            return Err(BAD); // a parameter without a value
        }
        while chars.next_if(|(_, c)| *c == ' ' || *c == '\t').is_some() {}
        let mut val = String::new();
        if chars.next_if(|(_, c)| *c == '"').is_some() {
            let mut ended = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => val.push(chars.next().ok_or(BAD)?.1),
                    '"' => {
                        ended = true;
                        break;
                    }
                    _ => val.push(c),
                }
            }
            if !ended {
                return Err(BAD);
            }
        } else {
            while let Some((_, c)) = chars.next_if(|(_, c)| *c != ';') {
                val.push(c);
            }
            val = val.trim().to_string();
        }
        out.push((key.trim().to_ascii_lowercase(), val));
    }
}

/// The one `model` field of an url-encoded form (also used for query strings). A second
/// `model`, or a name that differs only in case or spelling after decoding, is refused.
pub fn form_model(body: &[u8]) -> Result<String, ModelError> {
    const BAD: ModelError = ModelError::Unreadable("the form could not be read");
    let text = std::str::from_utf8(body).map_err(|_| BAD)?;
    let mut found: Option<String> = None;
    for pair in text.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = form_decode(k).ok_or(BAD)?;
        if !key.trim().eq_ignore_ascii_case("model") {
            continue;
        }
        if key != "model" {
            return Err(ModelError::Unreadable(
                "a form field name is written in a form this gateway does not check",
            ));
        }
        if found.is_some() {
            return Err(ModelError::Unreadable("the form has two `model` fields"));
        }
        found = Some(form_decode(v).ok_or(BAD)?);
    }
    match found {
        Some(m) if !m.trim().is_empty() => Ok(m.trim().to_string()),
        _ => Err(ModelError::Missing),
    }
}

fn form_decode(s: &str) -> Option<String> {
    percent_decode_strict(&s.replace('+', " "))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(haystack, needle)
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() {
        return Vec::new();
    }
    memchr::memmem::find_iter(haystack, needle).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
