use super::fixtures::*;
use super::replay::pieces;
use super::*;
use crate::sse::{SseEvent, SseParser};
use serde_json::{json, Value};

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
    let error =
        br#"{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}"#;
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

/// `usage_from_json_body` must agree with `from_json_body` on whether a body is an answer and on
/// its id, model and usage, for well-formed and odd bodies alike.
#[test]
fn usage_only_json_body_agrees_with_the_full_read() {
    let bodies: &[&str] = &[
        r#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello\nworld \"q\" \u00e9"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":4,"total_tokens":14,"prompt_tokens_details":{"cached_tokens":2}}}"#,
        r#"{"id":"x","model":"m","choices":[{"index":0,"message":{"content":null,"reasoning_content":"think","tool_calls":[{"id":"call_a","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}"#,
        r#"{"id":"cmpl-1","model":"inst","choices":[{"text":"\n\nHi","index":0,"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":4,"total_tokens":5}}"#,
        r#"{"object":"list","data":[{"embedding":[0.1]}],"model":"emb","usage":{"prompt_tokens":2,"total_tokens":2}}"#,
        // Lenient leaves: content parts, numbers as text, counts as floats and strings.
        r#"{"model":"m","choices":[{"index":"0","message":{"content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},"b",{"text":[1,{"text":"c"}]}]},"finish_reason":7}],"usage":{"prompt_tokens":3.0,"completion_tokens":"4","prompt_tokens_details":null}}"#,
        r#"{"model":"m","choices":[{"index":[1],"message":{"content":true},"text":{"a":[1,2]},"finish_reason":null}],"usage":{"prompt_tokens":{"x":1}}}"#,
        // Structs given as arrays (serde reads them field by field), too short and too long.
        r#"{"model":"m","choices":[[0,null,["hi",null,null,null],null,"stop"]],"usage":{"prompt_tokens":1}}"#,
        r#"{"model":"m","choices":[[0,null]],"usage":{"prompt_tokens":1}}"#,
        r#"{"model":"m","choices":[[0,null,null,null,null,1]],"usage":{"prompt_tokens":1}}"#,
        // Wrong shapes inside choices fail the whole body.
        r#"{"model":"m","choices":"none","usage":{"prompt_tokens":1}}"#,
        r#"{"model":"m","choices":[1],"usage":{"prompt_tokens":1}}"#,
        r#"{"model":"m","choices":[{"message":"hi"}],"usage":{"prompt_tokens":1}}"#,
        r#"{"model":"m","choices":[{"message":{"tool_calls":{}}}],"usage":{"prompt_tokens":1}}"#,
        r#"{"model":"m","choices":[{"message":{"tool_calls":[{"function":7}]}}],"usage":{"prompt_tokens":1}}"#,
        r#"{"model":"m","choices":[{"index":0,"index":1}],"usage":{"prompt_tokens":1}}"#,
        r#"{"model":"m","choices":[{"message":{"content":"a","content":"b"}}],"usage":{"prompt_tokens":1}}"#,
        r#"{"model":"m","choices":[{"text":1e400}],"usage":{"prompt_tokens":1}}"#,
        r#"{"model":"m","choices":[{"text":"bad \u12"}],"usage":{"prompt_tokens":1}}"#,
        r#"{"model":"m","model":"n","choices":[]}"#,
        // Not answers.
        r#"{"error":{"message":"bad"},"choices":[]}"#,
        r#"{"choices":[],"error":null,"usage":null}"#,
        r#"{"object":"list"}"#,
        r#"{"choices":null}"#,
        "[1,2]",
        "not json",
        "",
    ];
    let mut invalid_utf8 = br#"{"model":"m","choices":[{"message":{"content":"x"#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
    invalid_utf8.extend_from_slice(br#""}}],"usage":{"prompt_tokens":1}}"#);
    let mut all: Vec<Vec<u8>> = bodies.iter().map(|b| b.as_bytes().to_vec()).collect();
    all.push(invalid_utf8);
    for body in &all {
        for kind in [ApiKind::Chat, ApiKind::Completion, ApiKind::Embedding] {
            let full = from_json_body(kind, body);
            let usage = usage_from_json_body(kind, body);
            let text = String::from_utf8_lossy(body);
            assert_eq!(full.is_some(), usage.is_some(), "{kind:?} {text}");
            if let (Some(full), Some(usage)) = (full, usage) {
                assert_eq!(
                    (&usage.id, &usage.model, &usage.usage),
                    (&full.id, &full.model, &full.usage),
                    "{kind:?} {text}"
                );
                assert!(usage.choices.is_empty());
            }
        }
    }
}

/// In usage-only mode the same events are malformed, and id, model, usage, events and done agree
/// with the full read on every recorded stream.
#[test]
fn usage_only_stream_agrees_with_the_full_read() {
    let odd = concat!(
        "data: {\"id\":\"a\",\"model\":\"m\",\"choices\":[{\"delta\":\"oops\"}],\"usage\":{\"prompt_tokens\":9}}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":[\"x\",{\"text\":\"y\"}]}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n",
        "data: {\"choices\":[[0,{\"content\":\"z\"}]],\"usage\":null}\n\n",
    );
    // Once id and model are known: a broken chunk with a null usage changes nothing, a usage
    // chunk with broken choices is refused by both.
    let known = concat!(
        "data: {\"id\":\"a\",\"model\":\"m\",\"choices\":[],\"usage\":null}\n\n",
        "data: {\"id\":\"b\",\"model\":\"n\",\"choices\":[{\"delta\":1}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\" : null}\n\n",
        "data: {\"choices\":[{\"delta\":1}],\"usage\":{\"prompt_tokens\":5}}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}\n\n",
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":null}\n\n",
        "data: [DONE]\n\n",
    );
    for stream in ALL.iter().copied().chain([odd, known]) {
        let mut parser = SseParser::new(MAX);
        let mut events = Vec::new();
        parser.feed(stream.as_bytes(), &mut events);
        let (mut full, mut only) = (StreamExtractor::new(MAX), StreamExtractor::usage_only());
        for ev in &events {
            full.on_event(ev);
            only.on_event(ev);
        }
        let malformed = (full.malformed(), only.malformed());
        assert!(malformed.1 <= malformed.0, "{stream}");
        let (full, only) = (full.into_answer(), only.into_answer());
        assert_eq!(
            (&only.id, &only.model, &only.usage, only.events, only.done),
            (&full.id, &full.model, &full.usage, full.events, full.done),
            "{stream}"
        );
        if stream == known {
            assert_eq!(malformed, (2, 1));
            assert_eq!(only.usage.as_ref().map(|u| u.total_tokens), Some(3));
        }
    }
}

#[test]
fn usage_keys_that_may_carry_a_usage() {
    for (data, may) in [
        (r#"{"choices":[],"usage":null}"#, false),
        (r#"{"usage" : null ,"choices":[]}"#, false),
        (
            r#"{"choices":[{"delta":{"content":"say \"usage\": {}"}}],"usage":null}"#,
            false,
        ),
        (r#"{"choices":[{"delta":{"role":"usage"}}]}"#, false),
        (r#"{"choices":[]}"#, false),
        (r#"{"usage":{"prompt_tokens":1}}"#, true),
        (r#"{"usage":null,"usage":{"prompt_tokens":1}}"#, true),
        (r#"{"usage":	{}}"#, true),
        (r#"{"usage":0}"#, true),
        (
            r#"{"choices":[{"delta":{"role":"usage"}}],"usage":{}}"#,
            true,
        ),
        (r#"{"choices":[{"usage":{"x":1}}],"usage":null}"#, true),
        (r#"{"usage""#, false),
        (r#"{"usage":"#, true),
    ] {
        assert_eq!(may_carry_usage(data), may, "{data}");
    }
}
