//! OpenAI-shaped error bodies for replies the gateway produces itself.
//!
//! Clients (the official SDKs included) read `error.message`, `error.type` and `error.code`; keeping
//! the shape identical to OpenAI's means their retry and error handling works unchanged.

use serde_json::json;

/// The body `{"error":{"message":…,"type":…,"code":…}}` as bytes.
pub fn error_body(message: &str, kind: &str, code: &str) -> Vec<u8> {
    let value = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    value.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_openai_shaped() {
        let body = error_body(
            "Incorrect API key provided",
            "invalid_request_error",
            "invalid_api_key",
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["message"], "Incorrect API key provided");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert!(v["error"]["param"].is_null());
    }

    #[test]
    fn message_is_escaped() {
        let body = error_body("quote \" and \n newline", "t", "c");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["message"], "quote \" and \n newline");
    }
}
