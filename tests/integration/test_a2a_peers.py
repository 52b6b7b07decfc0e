"""A2A agents as peers: our client (the ``a2a-sdk``'s) against an agent built from the
SDK's own server parts, in its own process (:mod:`agentstack_devkit.a2aagent`).

The peer's log says what reached it, so each test proves what was sent — and what was
not: skills off the allow-list, arguments that break the message schema, calls waiting
for approval. A failing peer, a hanging one and one that is down come back to the agent
as results, never as a wedged step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from agentstack_core.approvals import ApprovalState as State
from agentstack_core.keys import StackKeys
from agentstack_core.protocol import RedisClient
from agentstack_core.redis.approvals import decide_approval as decide
from agentstack_core.redis.approvals import read_approvals as approvals
from agentstack_core.spec import SecretKeyRef, parse_spec
from agentstack_devkit.a2aagent import A2aAgent
from agentstack_devkit.processes import free_port
from agentstack_runner.tools import ListingCache, Toolbox
from tests.integration.support import STACK, make_engine, publish, request

KEYS = StackKeys(STACK)


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[A2aAgent]:
    with A2aAgent(tmp_path_factory.mktemp("a2a")) as running:
        yield running


class Secrets:
    def __init__(self, values: dict[tuple[str, str], str]) -> None:
        self.values = values

    async def secret_value(self, namespace: str, ref: SecretKeyRef) -> str:
        return self.values[(ref.name, ref.key)]

    def forget(self, namespace: str, name: str) -> None:
        pass  # nothing cached


def _spec(url: str, **server: Any) -> dict[str, Any]:
    peer = {"name": "peer", "url": url, "protocol": "A2A", "allowedTools": ["echo"], **server}
    return {"goal": "Write a short guide to Redis streams", "tools": {"servers": [peer]}}


def _toolbox(raw: dict[str, Any], secrets: Any = None) -> Toolbox:
    spec = parse_spec(raw)
    (builder,) = [a for a in spec.agents if a.name == "builder"]
    return Toolbox("team", spec, builder, secrets or Secrets({}), ListingCache())


@pytest.mark.asyncio
async def test_allow_listed_skills_are_the_tools_and_a_call_is_a_message(peer: A2aAgent) -> None:
    secrets = Secrets({("peer-token", "token"): "Bearer peer-s3cret"})
    headers = [{"name": "Authorization", "secretKeyRef": {"name": "peer-token", "key": "token"}}]
    toolbox = _toolbox(_spec(peer.url, headers=headers), secrets)
    offer = await toolbox.offer()
    assert [tool.ref for tool in offer.tools] == ["peer/echo"]  # not peer/secret
    (echo,) = offer.tools
    assert echo.description == "Ask peer (Echo): Repeats the text."
    assert echo.input_schema["required"] == ["text"]

    before = len(peer.messages())
    answered = await toolbox.call("peer/echo", {"text": "hello"})
    assert answered.use.outcome == "ok"
    head, body = answered.text.split("\n", 1)
    assert head.startswith("task ")
    assert head.endswith(": completed")
    assert body == "echo: hello\n\ndone"
    [sent] = peer.messages()[before:]
    assert (sent["message"], sent["skill"]) == ("hello", "echo")
    assert all(h.get("authorization") == "Bearer peer-s3cret" for h in peer.request_headers())

    refused = await toolbox.call("peer/secret", {"text": "x"})
    invalid = await toolbox.call("peer/echo", {"query": "x"})
    assert (refused.use.outcome, invalid.use.outcome) == ("refused", "invalid")
    assert len(peer.messages()) == before + 1  # neither reached the peer


@pytest.mark.asyncio
async def test_a_call_made_again_in_the_same_tick_is_the_same_message(peer: A2aAgent) -> None:
    """A resumed step calls again under the same message id (a peer that deduplicates,
    as agentstack stacks do, answers once); another tick's call is another message."""
    toolbox = _toolbox(_spec(peer.url))
    await toolbox.offer()
    before = len(peer.messages())
    for tick in ("t-1", "t-1", "t-2"):
        result = await toolbox.call("peer/echo", {"text": "again"}, tick=tick)
        assert result.use.outcome == "ok"
    ids = [m["message_id"] for m in peer.messages()[before:]]
    assert len(ids) == 3
    assert ids[0] == ids[1] != ids[2]


@pytest.mark.asyncio
async def test_a_failing_hanging_or_absent_peer_is_a_result(peer: A2aAgent) -> None:
    toolbox = _toolbox(_spec(peer.url, timeoutSeconds=2))
    await toolbox.offer()
    failed = await toolbox.call("peer/echo", {"text": "fail"})
    assert failed.use.outcome == "error"
    assert failed.text.endswith(": failed\nthe peer failed on purpose")
    hung = await toolbox.call("peer/echo", {"text": "hang"})
    assert (hung.use.outcome, hung.text) == ("timeout", "no answer within 2s")

    down = _toolbox(_spec(f"http://127.0.0.1:{free_port()}", timeoutSeconds=2))
    offer = await down.offer()
    assert offer.tools == []
    assert offer.problems[0].startswith("peer: ")


@pytest.mark.asyncio
async def test_the_builder_asks_a_peer_only_once_approved(
    aredis: RedisClient, peer: A2aAgent
) -> None:
    """A tick of the engine: the scripted builder asks the peer; the call waits for a
    person, and runs once the next tick finds it approved."""
    await publish(aredis, _spec(peer.url, requireApproval=True))
    before = len(peer.messages())
    first = (await make_engine(aredis).execute(request(1))).result
    assert first is not None
    assert first.approvals == 1
    (waiting,) = await approvals(aredis, STACK)
    assert (waiting.agent, waiting.tool) == ("builder", "peer/echo")
    assert len(peer.messages()) == before  # asked for, not sent

    assert (await decide(aredis, STACK, waiting.id, approved=True, by="alice"))[1]
    await make_engine(aredis).execute(request(2))
    (done,) = [a for a in await approvals(aredis, STACK) if a.id == waiting.id]
    assert done.state == State.EXECUTED
    sent = peer.messages()[before:]
    assert [m["skill"] for m in sent] == ["echo"]
    assert sent[0]["message"] == json.loads(waiting.arguments)["text"]
    assert "echo: " in (done.result or "")
