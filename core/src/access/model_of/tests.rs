use super::*;

fn named(m: &str) -> Option<ModelSource> {
    Some(ModelSource::Named(m.to_string()))
}

#[test]
fn body_endpoints_on_openai_routes() {
    for path in [
        "/v1/chat/completions",
        "/chat/completions",
        "/v1/responses",
        "/v1/responses/",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
        "/v1/audio/speech",
        "/v1/moderations",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/batches",
        "/v1/threads/t_1/runs",
        "/v1/messages",
        "/v1beta/openai/chat/completions",
        "/V1/Responses",
    ] {
        assert_eq!(
            model_source(true, "POST", path, None),
            Some(ModelSource::Body),
            "{path}"
        );
    }
    // Not model-bearing, or not a create.
    for (method, path) in [
        ("GET", "/v1/models"),
        ("GET", "/v1/responses/resp_1"),
        ("GET", "/v1/chat/completions"),
        ("POST", "/v1/files"),
        ("POST", "/v1/responses/resp_1/cancel"),
        ("POST", "/v1/threads/t_1/messages"),
        ("DELETE", "/v1/models/ft-x"),
    ] {
        assert_eq!(
            model_source(true, method, path, None),
            None,
            "{method} {path}"
        );
    }
    // General routes: only path forms.
    assert_eq!(model_source(false, "POST", "/v1/responses", None), None);
}

#[test]
fn models_named_in_the_path() {
    assert_eq!(
        model_source(
            true,
            "POST",
            "/openai/deployments/gpt-4o/chat/completions",
            None
        ),
        named("gpt-4o")
    );
    assert_eq!(
        model_source(true, "POST", "/deployments/gpt-4o/chat/completions", None),
        named("gpt-4o"),
        "route /openai to an Azure base URL ending in /openai"
    );
    assert_eq!(
        model_source(
            false,
            "POST",
            "/OpenAI/Deployments/gpt%2D4o/embeddings",
            None
        ),
        named("gpt-4o")
    );
    assert_eq!(
        model_source(
            false,
            "POST",
            "/v1beta/models/gemini-1.5-pro:generateContent",
            None
        ),
        named("gemini-1.5-pro")
    );
    assert_eq!(
        model_source(
            false,
            "POST",
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
            Some("alt=sse")
        ),
        named("gemini-2.0-flash")
    );
    assert_eq!(
        model_source(
            false,
            "POST",
            "/v1/projects/p/locations/us/publishers/google/models/gemini-pro:predict",
            None
        ),
        named("gemini-pro")
    );
    // The route's base URL may hide the first part of the path.
    assert_eq!(
        model_source(false, "POST", "/deployments/gpt-4o/chat/completions", None),
        named("gpt-4o")
    );
    assert_eq!(
        model_source(false, "POST", "/gemini-pro:streamGenerateContent", None),
        named("gemini-pro")
    );
    assert_eq!(model_source(false, "POST", "/a:b/c", None), None);
    assert_eq!(
        model_source(false, "POST", "/v1/deployments/x/echo", None),
        None,
        "deployments deeper in a path are Azure's only after /openai"
    );
    // Model metadata is not a use of the model.
    assert_eq!(
        model_source(false, "GET", "/v1beta/models/gemini-pro", None),
        None
    );
    assert_eq!(
        model_source(true, "GET", "/v1/realtime", Some("model=gpt-4o-realtime")),
        named("gpt-4o-realtime")
    );
    assert_eq!(
        model_source(true, "GET", "/v1/realtime", None),
        Some(ModelSource::Unknown)
    );
    assert_eq!(
        model_source(true, "GET", "/v1/realtime", Some("model=a&model=b")),
        Some(ModelSource::Unknown)
    );
    assert_eq!(
        model_source(false, "POST", "/v1beta/models/:generateContent", None),
        Some(ModelSource::Unknown)
    );
}

#[test]
fn ambiguous_paths_are_unknown() {
    for path in [
        "/openai/deployments/gpt-4o-mini/../gpt-4o/chat/completions",
        "/v1//chat/completions",
        "/v1/./responses",
        "/openai/deployments/a%2Fb/chat/completions",
        "/openai/deployments/%2e%2e/x",
        "/v1/chat\\completions",
        "/v1/%zz",
        "/openai/deployments/a;b/chat/completions",
    ] {
        assert_eq!(
            model_source(true, "POST", path, None),
            Some(ModelSource::Unknown),
            "{path}"
        );
    }
}

#[test]
fn json_bodies() {
    assert_eq!(
        json_model(br#"{"model":"gpt-4o","input":"x"}"#),
        Ok("gpt-4o".into())
    );
    assert_eq!(json_model(br#"{"input":"x"}"#), Err(ModelError::Missing));
    assert_eq!(json_model(br#"{"model":null}"#), Err(ModelError::Missing));
    assert!(matches!(
        json_model(br#"{"model":4}"#),
        Err(ModelError::Unreadable(_))
    ));
    assert!(matches!(
        json_model(br#"{"model":""}"#),
        Err(ModelError::Unreadable(_))
    ));
    assert!(matches!(
        json_model(br#"{"model":"gpt-4o-mini","model":"gpt-4o"}"#),
        Err(ModelError::Unreadable(_))
    ));
    assert!(matches!(
        json_model(b"{not json"),
        Err(ModelError::Unreadable(_))
    ));
    assert!(matches!(json_model(b"[1]"), Err(ModelError::Unreadable(_))));
    assert!(matches!(
        json_model(br#"{"model":"a"} x"#),
        Err(ModelError::Unreadable(_))
    ));
    // Escapes in the key are decoded like every JSON parser does.
    assert_eq!(
        json_model(br#"{"mod\u0065l":"gpt-4o"}"#),
        Ok("gpt-4o".into())
    );
    assert_eq!(body_model(None, br#"{"model":"m"}"#), Ok("m".into()));
    assert_eq!(
        body_model(Some("application/json; charset=utf-8"), br#"{"model":"m"}"#),
        Ok("m".into())
    );
    assert!(body_model(Some("text/plain"), br#"{"model":"m"}"#).is_err());
}

fn form(parts: &[(&str, &str)]) -> Vec<u8> {
    let mut out = String::new();
    for (headers, value) in parts {
        out.push_str(&format!("--XyZ\r\n{headers}\r\n\r\n{value}\r\n"));
    }
    out.push_str("--XyZ--\r\n");
    out.into_bytes()
}

const CT: &str = "multipart/form-data; boundary=XyZ";

#[test]
fn multipart_model_field() {
    let body = form(&[
        (
            "Content-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\nContent-Type: audio/mpeg",
            "ID3\u{0}binary--XY",
        ),
        ("Content-Disposition: form-data; name=\"model\"", "whisper-1"),
        ("content-disposition: form-data; name=language", "en"),
    ]);
    assert_eq!(body_model(Some(CT), &body), Ok("whisper-1".into()));
    assert_eq!(
        body_model(Some("multipart/form-data; boundary=\"XyZ\""), &body),
        Ok("whisper-1".into())
    );
    // A preamble is allowed; an epilogue too.
    let mut with_pre = b"preamble\r\n".to_vec();
    with_pre.extend_from_slice(&body);
    with_pre.extend_from_slice(b"epilogue");
    assert_eq!(body_model(Some(CT), &with_pre), Ok("whisper-1".into()));
    // No model field.
    let none = form(&[("Content-Disposition: form-data; name=\"file\"", "x")]);
    assert_eq!(body_model(Some(CT), &none), Err(ModelError::Missing));
}

#[test]
fn ambiguous_multipart_bodies_are_refused() {
    let two = form(&[
        (
            "Content-Disposition: form-data; name=\"model\"",
            "whisper-1",
        ),
        (
            "Content-Disposition: form-data; name=\"model\"",
            "gpt-4o-transcribe",
        ),
    ]);
    let upper = form(&[("Content-Disposition: form-data; name=\"MODEL\"", "x")]);
    let extended = form(&[("Content-Disposition: form-data; name*=utf-8''model", "x")]);
    let encoded = form(&[(
        "Content-Disposition: form-data; name=\"model\"\r\nContent-Transfer-Encoding: base64",
        "Z3B0LTRv",
    )]);
    let file = form(&[(
        "Content-Disposition: form-data; name=\"model\"; filename=\"m.txt\"",
        "gpt-4o",
    )]);
    // Delimiters with a bare LF some parsers accept.
    let lf = b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o\r\n--XyZ--\r\n".to_vec();
    let unclosed =
        b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n".to_vec();
    let folded = form(&[("Content-Disposition: form-data;\r\n name=\"model\"", "x")]);
    for (what, body) in [
        ("two", two),
        ("upper", upper),
        ("extended", extended),
        ("encoded", encoded),
        ("file", file),
        ("lf", lf),
        ("unclosed", unclosed),
        ("folded", folded),
    ] {
        assert!(
            matches!(body_model(Some(CT), &body), Err(ModelError::Unreadable(_))),
            "{what}: {:?}",
            body_model(Some(CT), &body)
        );
    }
    for ct in [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=a; boundary=b",
    ] {
        assert!(body_model(Some(ct), b"--a\r\n\r\n--a--").is_err(), "{ct}");
    }
}

#[test]
fn url_encoded_forms() {
    let ct = Some("application/x-www-form-urlencoded");
    assert_eq!(
        body_model(ct, b"prompt=hi&model=dall-e-3"),
        Ok("dall-e-3".into())
    );
    assert_eq!(body_model(ct, b"model=gpt%2D4o+x"), Ok("gpt-4o x".into()));
    assert_eq!(body_model(ct, b"prompt=hi"), Err(ModelError::Missing));
    assert!(matches!(
        body_model(ct, b"model=a&model=b"),
        Err(ModelError::Unreadable(_))
    ));
    assert!(
        body_model(ct, b"%6dodel=a").is_ok(),
        "decoded name is model"
    );
    assert!(matches!(
        body_model(ct, b"Model=a"),
        Err(ModelError::Unreadable(_))
    ));
    assert!(matches!(
        body_model(ct, b"model=%zz"),
        Err(ModelError::Unreadable(_))
    ));
}

#[test]
fn nothing_panics_on_odd_input() {
    let samples: [&[u8]; 8] = [
        b"",
        b"--",
        b"--XyZ",
        b"--XyZ--",
        b"--XyZ\r\n",
        b"--XyZ\r\n\r\n",
        b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n\r\n--XyZ--",
        b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model",
    ];
    for s in samples {
        let _ = body_model(Some(CT), s);
        let _ = body_model(Some("application/x-www-form-urlencoded"), s);
        let _ = body_model(None, s);
    }
}
