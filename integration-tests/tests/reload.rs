//! Hot reload: `llm-forward run` applies edits of its config file without dropping streams.

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_integration_tests::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn config(upstream: &str, port: u16, _admin: u16, limits: &str) -> String {
    format!(
        "server:\n  address: 127.0.0.1\n  port: {port}\n  concurrency: 2\ncache:\n  openai: false\nroutes:\n  - route: /\n    base_url: {upstream}\n{limits}"
    )
}

#[test]
fn an_edit_during_a_stream_applies_to_the_next_request_and_the_stream_completes() {
    let up = MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let dir = TempDir::new("reload");
    let (port, admin) = (free_port(), free_port());
    let path = dir.0.join("llm-forward.yaml");
    std::fs::write(&path, config(&up.base_url(), port, admin, "")).unwrap();
    let mut cmd = gateway_command();
    cmd.args(["run", "--config"]).arg(&path).current_dir(&dir.0);
    let gw = RunningGateway::spawn(cmd, "ready to serve");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // A 2-second stream, started before the edit.
    let stream = std::thread::spawn(move || {
        let mut conn = RawConnection::connect(addr);
        conn.request(
            "POST",
            "/v1/chat/completions",
            &[
                ("content-type", "application/json"),
                ("x-mock-chunks", "20"),
                ("x-mock-delay-ms", "100"),
            ],
            br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        )
    });
    std::thread::sleep(Duration::from_millis(400));
    let limited =
        "limits:\n  strategy: sliding-window\n  requests:\n    - path: /v1/models\n      limit: 1/minute\n      per: global\n";
    std::fs::write(
        dir.0.join("llm-forward.yaml"),
        config(&up.base_url(), port, admin, limited),
    )
    .unwrap();
    gw.wait_for("applied the edited", Duration::from_secs(10));

    // Envoy picks the new listener up within moments; the limit then holds: one 200, then 429s.
    let url = format!("http://127.0.0.1:{port}/v1/models");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut statuses = Vec::new();
    while Instant::now() < deadline && !statuses.ends_with(&[200, 429]) {
        statuses.push(client().get(&url).send().unwrap().status().as_u16());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        statuses.ends_with(&[200, 429]),
        "the new limit never applied: {statuses:?}"
    );

    let resp = stream.join().unwrap();
    assert_eq!(resp.status, 200);
    let text = String::from_utf8_lossy(&resp.body);
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "the stream was cut: {text}"
    );
    assert_eq!(text.matches("tok").count(), 20, "all 20 chunks arrive");

    // An invalid edit is refused with the field named, and the running config stays.
    std::fs::write(dir.0.join("llm-forward.yaml"), config(&up.base_url(), port, admin, "limits:\n  strategy: sliding-window\n  requests:\n    - path: /v1/models\n      limit: 1/fortnight\n      per: global\n")).unwrap();
    gw.wait_for("NOT applied", Duration::from_secs(10));
    assert!(
        gw.output().contains("limits.requests[0]"),
        "{}",
        gw.output()
    );
    assert_eq!(
        client().get(&url).send().unwrap().status(),
        429,
        "the previous limit still holds"
    );
    assert_eq!(
        client()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .unwrap()
            .status(),
        200
    );
}
