"""The official `openai` client, unchanged, against `llm-forward run --demo`."""
import json
import socket
import urllib.request

import openai
import pytest
from conftest import start_gateway, stop_gateway


def client(gw):
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key="sk-anything", max_retries=0)


def test_chat_completion_non_stream(demo_gateway):
    r = client(demo_gateway).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Hello world, from mock!"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_completion_stream(demo_gateway):
    stream = client(demo_gateway).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello world, from mock!"


def test_stream_with_usage(demo_gateway):
    stream = client(demo_gateway).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_embeddings_and_models(demo_gateway):
    c = client(demo_gateway)
    e = c.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(e.data) == 2 and len(e.data[0].embedding) > 0
    models = [m.id for m in c.models.list()]
    assert models


def test_upstream_error_reaches_the_client_as_an_api_error(demo_gateway):
    c = openai.OpenAI(
        base_url=demo_gateway.base_url + "/v1",
        api_key="sk-anything",
        max_retries=0,
        default_headers={"x-mock-status": "400"},
    )
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


def test_curl_style_plain_http(demo_gateway):
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(
        demo_gateway.base_url + "/v1/chat/completions", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.load(resp)["choices"][0]["message"]["content"] == "Hello world, from mock!"


def test_banner_lists_route_and_never_secrets(tmp_path):
    gw = start_gateway(tmp_path, "--demo", env_extra={"OPENAI_API_KEY": "sk-should-never-print"})
    try:
        out = gw.output()
        assert "ready to serve" in out and "(openai)" in out
        assert "sk-should-never-print" not in out
    finally:
        assert stop_gateway(gw) == 0, gw.output()


def test_sigterm_stops_everything(tmp_path):
    gw = start_gateway(tmp_path, "--demo")
    assert stop_gateway(gw) == 0
    # Envoy's listener is gone with it.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gw.port), timeout=1).close()
