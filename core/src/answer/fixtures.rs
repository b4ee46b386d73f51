//! Recorded-style OpenAI streams, shared by the tests of `answer` and of `sse`.

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
