"""HTTP/2 (h2c) request trailers: a body that ends with trailers instead of end-of-stream must not
slip past the checks that read the body. Found by hand: a level-restricted key sent a forbidden
model with one trailer and got 200 (the body phase never saw its end, so the model check and the
key swap were skipped)."""
import json
import socket

import h2.config
import h2.connection
import h2.events
import pytest
from conftest import start_gateway, start_mock, stop_gateway, stop_mock

CONFIG = """routes:
  - route: /
    base_url: http://127.0.0.1:{mock}
keys:
  upstream: [{{key: sk-h2-upstream, levels: [0, 1]}}]
  forward: [{{name: user, key: fk-h2-user, level: 1}}, {{name: admin, key: fk-h2-admin, level: 0}}]
  levels: {{1: [gpt-4o-mini]}}
"""


@pytest.fixture
def keyed_gateway(tmp_path):
    mock, mock_port = start_mock()
    (tmp_path / "llm-forward.yaml").write_text(CONFIG.format(mock=mock_port))
    gw = start_gateway(tmp_path)
    yield gw
    stop_gateway(gw)
    stop_mock(mock)


def h2_chat(port, key, model, trailers):
    """One POST over HTTP/2 prior knowledge; the body ends with a trailer block when asked."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    conn.send_headers(1, [(":method", "POST"), (":path", "/v1/chat/completions"), (":scheme", "http"),
                          (":authority", "127.0.0.1"), ("authorization", f"Bearer {key}"),
                          ("content-type", "application/json")])
    conn.send_data(1, body, end_stream=not trailers)
    if trailers:
        conn.send_headers(1, [("x-checksum", "abc")], end_stream=True)
    sock.sendall(conn.data_to_send())
    status, data, ended = None, b"", False
    while not ended:
        chunk = sock.recv(65536)
        if not chunk:
            break
        for event in conn.receive_data(chunk):
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                data += event.data
                conn.acknowledge_received_data(len(event.data), event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                ended = True
        sock.sendall(conn.data_to_send())
    sock.close()
    return status, json.loads(data)


def test_request_trailers_cannot_skip_the_model_check(keyed_gateway):
    port = keyed_gateway.port
    # Without trailers over HTTP/2: allowed model 200, forbidden model 403.
    assert h2_chat(port, "fk-h2-user", "gpt-4o-mini", trailers=False)[0] == 200
    status, body = h2_chat(port, "fk-h2-user", "gpt-4o", trailers=False)
    assert (status, body["error"]["code"]) == (403, "model_not_allowed")
    # With trailers, a held body is refused with an OpenAI-shaped error, never forwarded unchecked.
    status, body = h2_chat(port, "fk-h2-user", "gpt-4o", trailers=True)
    assert (status, body["error"]["code"]) == (400, "unsupported_trailers"), body
    # A request whose body nobody holds (level 0: every model) still passes with trailers.
    status, body = h2_chat(port, "fk-h2-admin", "gpt-4o", trailers=True)
    assert status == 200 and body["object"] == "chat.completion", body
