//! Request bodies: which content types may be parsed as JSON, and the fields the access checks
//! read (`model`, `stream`).

/// What the access checks need from a JSON request body.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestBody {
    pub json: serde_json::Value,
    pub model: Option<String>,
    pub stream: bool,
}

/// Parses a JSON request body. Not JSON, not an object, or a non-string `model` → the message of
/// a 400 reply.
pub fn parse_body(bytes: &[u8]) -> Result<RequestBody, String> {
    let json: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("We could not parse the JSON body of your request: {e}"))?;
    let obj = json
        .as_object()
        .ok_or_else(|| "The request body must be a JSON object".to_string())?;
    let model = match obj.get("model") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(m)) => Some(m.clone()),
        Some(_) => return Err("`model` must be a string".into()),
    };
    let stream = obj
        .get("stream")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    Ok(RequestBody {
        json,
        model,
        stream,
    })
}

/// True when a `content-type` is one whose body may be buffered and parsed as JSON: JSON, or no
/// type at all (many clients omit it). Multipart uploads and forms are never buffered.
pub fn is_json_content_type(content_type: Option<&str>) -> bool {
    match content_type.map(|c| c.trim().to_ascii_lowercase()) {
        None => true,
        Some(c) => {
            !(c.starts_with("multipart/") || c.starts_with("application/x-www-form-urlencoded"))
        }
    }
}
