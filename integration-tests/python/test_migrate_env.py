"""The official openai client against `llm-forward run` started in a folder holding an OpenAI-Forward .env."""
import time

import openai
import pytest
from conftest import free_port, start_gateway, start_mock, stop_gateway, stop_mock

ENV = """LOG_OPENAI=true
CACHE_OPENAI=true
CACHE_BACKEND=MEMORY
CACHE_ROUTES=["/v1/chat/completions","/v1/embeddings"]
FORWARD_CONFIG=[{{"base_url":"http://127.0.0.1:{mock}","route":"/","type":"openai"}}]
OPENAI_API_KEY_CONFIG={{"sk-python-upstream": [0]}}
FORWARD_KEY_CONFIG={{"fk-python": 0}}
REQ_RATE_LIMIT='{{
"/v1/models":[{{"level":0,"limit":"2/minute"}}]
}}'
RATE_LIMIT_STRATEGY=moving-window
ITER_CHUNK_TYPE=one-by-one
"""


@pytest.fixture
def env_gateway(tmp_path):
    mock, mock_port = start_mock()
    (tmp_path / ".env").write_text(ENV.format(mock=mock_port))
    gw = start_gateway(tmp_path, env_extra={"CACHE_PORT": str(free_port())})
    yield gw
    stop_gateway(gw)
    stop_mock(mock)


def test_openai_client_through_an_openai_forward_env(env_gateway):
    assert "ITER_CHUNK_TYPE is ignored" in env_gateway.output()
    assert "sk-python-upstream" not in env_gateway.output()
    client = openai.OpenAI(base_url=env_gateway.base_url + "/v1", api_key="fk-python", max_retries=0)
    messages = [{"role": "user", "content": "hello from python"}]
    first = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=messages, extra_body={"caching": True}
    )
    assert first.parse().choices[0].message.content
    # The second identical request is answered from the cache.
    deadline = time.time() + 5
    while True:
        again = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=messages, extra_body={"caching": True}
        )
        if again.headers.get("x-cache") == "HIT":
            assert again.parse().choices[0].message.content
            break
        assert time.time() < deadline, "never served from the cache"
        time.sleep(0.1)
    # An unknown key is refused by the gateway.
    stranger = openai.OpenAI(base_url=env_gateway.base_url + "/v1", api_key="fk-unknown", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.models.list()
    # REQ_RATE_LIMIT: 2 a minute on /v1/models.
    client.models.list()
    client.models.list()
    with pytest.raises(openai.RateLimitError):
        client.models.list()
