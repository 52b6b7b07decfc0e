"""The fake LLM server speaks the real ``groq`` and ``openai`` SDKs' protocol, as scripted.

Every test goes through the SDKs themselves (never a hand-made HTTP call, except for bodies
no SDK would send), so what the runner will see — parsed completions, error classes,
``Retry-After``, timeouts — is what these tests check.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from types import ModuleType

import groq
import httpx
import openai
import pytest

from agentstack_devkit.fakellm import (
    DEFAULT_CONTENT,
    EMBEDDING_DIMENSIONS,
    REDACTED,
    Delay,
    Fail,
    FakeLLMServer,
    Hang,
    Held,
    Reply,
)
from agentstack_devkit.processes import DevEnvError

MESSAGES = [
    {"role": "system", "content": "You are the builder."},
    {"role": "user", "content": "What next?"},
]
SDKS = ["openai", "groq"]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


def _sdk(name: str) -> ModuleType:
    """The SDK module: both define the same exception classes."""
    return openai if name == "openai" else groq


def _client(
    name: str, server: FakeLLMServer, *, timeout: float = 10.0, agent: str | None = None
) -> openai.AsyncOpenAI | groq.AsyncGroq:
    headers = {} if agent is None else {"X-Agentstack-Agent": agent}
    if name == "openai":
        return openai.AsyncOpenAI(
            api_key="test-key",
            base_url=server.openai_base_url,
            max_retries=0,
            timeout=timeout,
            default_headers=headers,
        )
    return groq.AsyncGroq(
        api_key="test-key",
        base_url=server.groq_base_url,
        max_retries=0,
        timeout=timeout,
        default_headers=headers,
    )


async def _ask(
    name: str,
    server: FakeLLMServer,
    *,
    model: str = "test-model",
    client_timeout: float = 10.0,
    agent: str | None = None,
) -> str | None:
    """One chat completion through the SDK ``name``; its message content."""
    async with _client(name, server, timeout=client_timeout, agent=agent) as client:
        completion = await client.chat.completions.create(model=model, messages=MESSAGES)
        return completion.choices[0].message.content


@pytest.mark.asyncio
@pytest.mark.parametrize("sdk", SDKS)
async def test_reply_round_trips_with_usage_and_is_recorded(
    server: FakeLLMServer, sdk: str
) -> None:
    server.add_rule(Reply('{"actions": ["build"]}', prompt_tokens=120, completion_tokens=7))
    async with _client(sdk, server) as client:
        completion = await client.chat.completions.create(
            model="llama-3.3-70b-versatile",
            messages=MESSAGES,
        )
    assert completion.object == "chat.completion"
    assert completion.model == "llama-3.3-70b-versatile"
    assert completion.choices[0].message.content == '{"actions": ["build"]}'
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (120, 7)
    assert completion.usage.total_tokens == 127

    [recorded] = server.requests
    assert recorded.provider == sdk
    assert recorded.path == (
        "/v1/chat/completions" if sdk == "openai" else "/openai/v1/chat/completions"
    )
    assert recorded.model == "llama-3.3-70b-versatile"
    assert recorded.messages == MESSAGES
    assert recorded.body["messages"] == MESSAGES
    assert recorded.headers["authorization"] == REDACTED
    assert "test-key" not in repr(recorded)
    assert recorded.status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("sdk", SDKS)
async def test_rate_limit_surfaces_with_retry_after(server: FakeLLMServer, sdk: str) -> None:
    server.add_rule(Fail(429, "Rate limit reached for model", retry_after=7))
    with pytest.raises(_sdk(sdk).RateLimitError) as caught:
        await _ask(sdk, server)
    assert caught.value.response.headers["retry-after"] == "7"
    # openai unwraps the body's "error" object into `.body`; groq keeps the whole body.
    body = caught.value.body
    assert isinstance(body, dict)
    assert body.get("error", body) == {
        "message": "Rate limit reached for model",
        "type": "rate_limit_exceeded",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert [r.status for r in server.requests] == [429]


@pytest.mark.asyncio
@pytest.mark.parametrize("sdk", SDKS)
async def test_server_error_surfaces_as_internal_server_error(
    server: FakeLLMServer, sdk: str
) -> None:
    server.add_rule(Fail(500, "upstream exploded"))
    with pytest.raises(_sdk(sdk).InternalServerError, match="upstream exploded"):
        await _ask(sdk, server)


@pytest.mark.asyncio
@pytest.mark.parametrize("sdk", SDKS)
async def test_delay_longer_than_the_client_timeout_times_out(
    server: FakeLLMServer, sdk: str
) -> None:
    server.add_rule(Delay(30, Reply("too late")))
    with pytest.raises(_sdk(sdk).APITimeoutError):
        await _ask(sdk, server, client_timeout=0.3)
    [recorded] = server.requests
    assert recorded.status is None  # the client gave up before any answer


@pytest.mark.asyncio
async def test_delay_shorter_than_the_client_timeout_answers(server: FakeLLMServer) -> None:
    server.add_rule(Delay(0.05, Reply("after a pause")))
    assert await _ask("openai", server) == "after a pause"


@pytest.mark.asyncio
async def test_a_held_call_answers_once_released(server: FakeLLMServer) -> None:
    release = threading.Event()
    server.add_rule(Held(release, Reply("let go")))
    call = asyncio.create_task(_ask("openai", server, client_timeout=60))
    [recorded] = await asyncio.to_thread(server.wait_for_requests, 1)
    assert recorded.status is None  # arrived, and not answered while held
    release.set()
    assert await asyncio.wait_for(call, timeout=30) == "let go"
    assert [r.status for r in server.requests] == [200]


@pytest.mark.asyncio
async def test_rules_match_headers_and_used_up_rules_fall_through(
    server: FakeLLMServer,
) -> None:
    server.add_rule(Reply("builder plan"), headers={"x-agentstack-agent": "builder"})
    server.add_rule(Reply("review notes"), headers={"X-Agentstack-Agent": "reviewer"})
    assert await _ask("groq", server, agent="reviewer") == "review notes"
    assert await _ask("groq", server, agent="builder") == "builder plan"
    assert await _ask("groq", server, agent="builder") == DEFAULT_CONTENT
    assert await _ask("groq", server) == DEFAULT_CONTENT
    assert [r.headers.get("x-agentstack-agent") for r in server.requests] == [
        "reviewer",
        "builder",
        "builder",
        None,
    ]


@pytest.mark.asyncio
async def test_rules_match_provider_and_model_first_added_first(
    server: FakeLLMServer,
) -> None:
    server.add_rule(Reply("groq fallback model"), provider="groq", model="small")
    server.add_rule(Reply("any groq"), provider="groq", repeat_last=True)
    server.add_rule(Reply("any model"), repeat_last=True)
    assert await _ask("openai", server, model="small") == "any model"
    assert await _ask("groq", server, model="big") == "any groq"
    assert await _ask("groq", server, model="small") == "groq fallback model"
    assert await _ask("groq", server, model="small") == "any groq"


def test_repeat_last_keeps_answering_from_a_sync_client(server: FakeLLMServer) -> None:
    server.add_rule(
        Reply("first"),
        Reply(lambda request: f"again for {request.model}"),
        repeat_last=True,
    )
    with openai.OpenAI(
        api_key="test-key", base_url=server.openai_base_url, max_retries=0, timeout=10
    ) as client:
        answers = [
            client.chat.completions.create(model=f"m{i}", messages=MESSAGES)
            .choices[0]
            .message.content
            for i in range(4)
        ]
    assert answers == ["first", "again for m1", "again for m2", "again for m3"]


def test_default_responder_sees_the_request() -> None:
    with FakeLLMServer(default=lambda request: f"default for {request.provider}") as fake:
        assert asyncio.run(_ask("groq", fake)) == "default for groq"


def test_rules_can_be_cleared_while_serving(server: FakeLLMServer) -> None:
    server.add_rule(Reply("scripted"), repeat_last=True)
    assert asyncio.run(_ask("openai", server)) == "scripted"
    server.clear_rules()
    server.clear()
    assert asyncio.run(_ask("openai", server)) == DEFAULT_CONTENT
    assert len(server.requests) == 1


@pytest.mark.asyncio
async def test_latency_is_applied_to_every_answer() -> None:
    with FakeLLMServer(latency=(0.2, 0.3), seed=7) as fake:
        for sdk in SDKS:
            started = time.monotonic()
            assert await _ask(sdk, fake) == DEFAULT_CONTENT
            assert time.monotonic() - started >= 0.2


@pytest.mark.asyncio
@pytest.mark.parametrize("sdk", SDKS)
async def test_hang_holds_the_call_until_the_server_stops(sdk: str) -> None:
    fake = FakeLLMServer()
    fake.start()
    try:
        fake.add_rule(Hang())
        call = asyncio.create_task(_ask(sdk, fake, client_timeout=60))
        await asyncio.to_thread(fake.wait_for_requests, 1)
        assert not call.done()
    finally:
        await asyncio.to_thread(fake.stop)
    # The connection drops at once: a connection error, not the client's 60 s timeout.
    with pytest.raises(_sdk(sdk).APIConnectionError) as caught:
        await asyncio.wait_for(call, timeout=10)
    assert not isinstance(caught.value, _sdk(sdk).APITimeoutError)
    assert [r.status for r in fake.requests] == [None]


def test_wait_for_requests_returns_what_arrived(server: FakeLLMServer) -> None:
    asyncio.run(_ask("openai", server, model="first"))
    assert [r.model for r in server.wait_for_requests(1, timeout=5)] == ["first"]


def test_wait_for_requests_times_out_with_a_clear_error(server: FakeLLMServer) -> None:
    with pytest.raises(DevEnvError, match=r"timed out after 0.2s waiting for 1 LLM request.*0"):
        server.wait_for_requests(1, timeout=0.2)


def test_malformed_json_is_a_400_with_an_openai_error_body(server: FakeLLMServer) -> None:
    response = httpx.post(
        f"{server.openai_base_url}/chat/completions",
        content=b"{not json",
        headers={"Content-Type": "application/json", "Authorization": "Bearer test-key"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == error["code"] == "invalid_request_error"
    assert "not valid JSON" in error["message"]
    [recorded] = server.requests
    assert (recorded.status, recorded.body, recorded.headers["authorization"]) == (
        400,
        {},
        REDACTED,
    )


def test_unknown_paths_are_404_and_models_list_is_empty(server: FakeLLMServer) -> None:
    assert httpx.post(f"{server.url}/v1/completions", json={}).status_code == 404
    assert httpx.get(f"{server.openai_base_url}/chat/completions").status_code == 405
    assert httpx.get(f"{server.openai_base_url}/models").json() == {"object": "list", "data": []}
    assert server.requests == []


def test_a_scripted_failure_must_be_an_http_error() -> None:
    with pytest.raises(ValueError, match="400-599"):
        Fail(200)


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.mark.asyncio
@pytest.mark.parametrize("sdk", SDKS)
async def test_embeddings_are_deterministic_and_near_for_shared_words(
    server: FakeLLMServer, sdk: str
) -> None:
    texts = [
        "the launch code is zebra",
        "what is the launch code",
        "weekly meeting notes",
        "the launch code is zebra",
    ]
    async with _client(sdk, server) as client:
        answer = await client.embeddings.create(model="embed-model", input=texts)
    vectors = [list(item.embedding) for item in sorted(answer.data, key=lambda d: d.index)]
    assert [len(v) for v in vectors] == [EMBEDDING_DIMENSIONS] * 4
    assert vectors[0] == vectors[3]
    assert abs(_cosine(vectors[0], vectors[0]) - 1) < 1e-5
    assert _cosine(vectors[0], vectors[1]) > 0.5 > _cosine(vectors[0], vectors[2])
    assert answer.usage.prompt_tokens > 0
    [recorded] = server.requests
    assert recorded.endpoint == "embeddings"
    assert recorded.path == ("/v1/embeddings" if sdk == "openai" else "/openai/v1/embeddings")
    assert recorded.body["input"] == texts


@pytest.mark.asyncio
async def test_embeddings_take_dimensions_and_answer_base64_when_asked(
    server: FakeLLMServer,
) -> None:
    async with _client("openai", server) as client:
        shorter = await client.embeddings.create(model="m", input="hello world", dimensions=16)
        raw = await client.embeddings.create(
            model="m", input="hello world", encoding_format="base64"
        )
    assert len(shorter.data[0].embedding) == 16
    assert isinstance(raw.data[0].embedding, str)  # as sent: the SDK decodes only its default
    assert server.requests[0].body["encoding_format"] == "base64"  # the SDK's default


@pytest.mark.asyncio
async def test_embeddings_rules_script_failures_and_chat_rules_leave_them_alone(
    server: FakeLLMServer,
) -> None:
    server.add_rule(Reply("chat only"), repeat_last=True)
    server.add_rule(Fail(503), Reply("ignored: embeddings answer"), endpoint="embeddings")
    async with _client("openai", server) as client:
        with pytest.raises(openai.InternalServerError):
            await client.embeddings.create(model="m", input="x")
        answer = await client.embeddings.create(model="m", input="x")
        assert len(answer.data[0].embedding) == EMBEDDING_DIMENSIONS
        assert await _ask("openai", server) == "chat only"


def test_an_empty_text_to_embed_is_a_400(server: FakeLLMServer) -> None:
    response = httpx.post(
        f"{server.openai_base_url}/embeddings", json={"model": "m", "input": ["ok", ""]}
    )
    assert response.status_code == 400
    assert "empty string" in response.json()["error"]["message"]
