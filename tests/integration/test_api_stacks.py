"""The stacks router alone: an app of that one router, the real services over a fake
watch cache and Authorizer, and Redis (standalone and a cluster) holding one stack's
records as the runner writes them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from agentstack_api.auth import User
from agentstack_api.routes import stacks
from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import RedisClient
from agentstack_core.records import (
    Attempt,
    FeedRecord,
    MessageRecord,
    Recalled,
    TickRecord,
    TraceRecord,
)
from agentstack_core.redis.inputs import send_input
from agentstack_core.redis.publishing import publish_spec
from tests.unit import test_api_fakes as fakes

TOKEN = {"Authorization": "Bearer alice-token"}
BASE = "/api/v1/namespaces/team/stacks/alpha"
KEYS = StackKeys(StackRef("team", "alpha"))
SECRET_SPEC: dict[str, Any] = {
    "llm": {
        "model": {"provider": "scripted"},
        "providers": {"openai": {"secretRef": {"name": "llm-keys", "key": "OPENAI_API_KEY"}}},
    }
}


async def _records(redis: RedisClient) -> None:
    """Alpha's records; each stream's entries get ids ``1700-0``, ``1700-1``, …"""
    pipe: Any = redis.pipeline(transaction=False)
    for i in range(5):
        pipe.xadd(
            KEYS.trace,
            TraceRecord(
                tick_id=f"team/alpha/{i}",
                agent="planner",
                role="planner",
                outcome="Succeeded",
                model="groq:llama",
                fallback=i % 2 == 1,
                attempts=(
                    Attempt("groq:llama", "RateLimited", 0.25),
                    Attempt("openai:gpt", "ok", 1.5),
                ),
                prompt_tokens=100 + i,
                actions=("post_update",),
                recalls=(Recalled(query="launch code", hits=("1-0",)),),
                at=1700.5 + i,
            ).to_fields(),
            id=f"1700-{i}",
        )
        pipe.xadd(
            KEYS.history,
            TickRecord(tick_id=f"team/alpha/{i}", outcome="Succeeded").to_fields(),
            id=f"1700-{i}",
        )
        pipe.xadd(
            KEYS.feed,
            FeedRecord(agent="communicator", content=f"update {i}").to_fields(),
            id=f"1700-{i}",
        )
    for i, (sender, content) in enumerate((("planner", "build t1"), ("reviewer", "fix t1"))):
        message = MessageRecord(sender=sender, content=content).to_fields()
        pipe.xadd(KEYS.inbox("builder"), message, id=f"1700-{i}")
    pipe.hset(KEYS.memory("planner"), mapping={"notes": "n", "plan_version": "2"})
    pipe.hset(KEYS.usage, mapping={"tokens": "1200", "ticks": "5"})
    pipe.set(KEYS.plan, '[{"id": "t1", "title": "write"}]')
    artifacts = {
        "t2.md": '{"status": "draft", "version": 1, "author": "builder", "content": "# two"}',
        "t1.md": '{"status": "approved", "version": "3", "updated_at": "soon", "task_id": "t1"}',
    }
    pipe.hset(KEYS.artifacts, mapping=artifacts)
    await pipe.execute()


@pytest_asyncio.fixture
async def http(aredis: RedisClient) -> AsyncIterator[httpx.AsyncClient]:
    """Alice may read ``team`` and ``other``, not ``hidden``."""
    cache = fakes.FakeCache(
        [
            fakes.stack("team", "alpha", **SECRET_SPEC),
            fakes.stack("team", "beta", state="Paused"),
            fakes.stack("team", "gamma", agents=[{"name": "solo", "role": "builder"}]),
            fakes.stack("other", "delta"),
            fakes.stack("hidden", "epsilon"),
        ]
    )
    auth = fakes.FakeAuthorizer({"team", "other"}, tokens={"alice-token": User("alice")})
    await _records(aredis)
    access, views, _ = fakes.services(cache, auth, aredis)
    async with fakes.client(fakes.app_with(stacks.router, access=access, views=views)) as http:
        yield http


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.asyncio
async def test_without_accepted_credentials_every_route_is_401(http: httpx.AsyncClient) -> None:
    for path in ("/api/v1/stacks", BASE, f"{BASE}/traces", f"{BASE}/messages?agent=builder"):
        for headers in ({}, {"Authorization": "Bearer someone-else"}):
            fakes.error_of(await http.get(path, headers=headers), 401, "Unauthorized")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "suffix", ["", "/agents", "/ticks", "/traces", "/feed", "/memory", "/artifacts", "/search?q=x"]
)
async def test_a_denied_namespace_is_403_and_an_unknown_stack_404(
    http: httpx.AsyncClient, suffix: str
) -> None:
    denied = await http.get(f"/api/v1/namespaces/hidden/stacks/epsilon{suffix}", headers=TOKEN)
    assert "alice may not get agentstacks in hidden" in fakes.error_of(denied, 403, "Forbidden")
    missing = await http.get(f"/api/v1/namespaces/team/stacks/nope{suffix}", headers=TOKEN)
    assert "no AgentStack team/nope" in fakes.error_of(missing, 404, "NotFound")


@pytest.mark.asyncio
async def test_the_list_pages_filters_and_hides_denied_namespaces(
    http: httpx.AsyncClient,
) -> None:
    listed = _ok(await http.get("/api/v1/stacks", headers=TOKEN))
    names = [f"{s['namespace']}/{s['name']}" for s in listed["items"]]
    assert names == ["other/delta", "team/alpha", "team/beta", "team/gamma"]
    first = _ok(await http.get("/api/v1/stacks", params={"limit": 3}, headers=TOKEN))
    assert first["nextCursor"] == "team/beta"
    rest = await http.get(
        "/api/v1/stacks", params={"limit": 3, "cursor": first["nextCursor"]}, headers=TOKEN
    )
    assert [s["name"] for s in _ok(rest)["items"]] == ["gamma"]
    assert _ok(rest)["nextCursor"] is None
    paused = _ok(await http.get("/api/v1/stacks", params={"state": "Paused"}, headers=TOKEN))
    assert [s["name"] for s in paused["items"]] == ["beta"]
    hidden = await http.get("/api/v1/stacks", params={"namespace": "hidden"}, headers=TOKEN)
    assert _ok(hidden)["items"] == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "params", "fragment"),
    [
        ("/api/v1/stacks", {"limit": 0}, "limit"),
        ("/api/v1/stacks", {"limit": 501}, "limit"),
        ("/api/v1/stacks", {"cursor": "no-slash"}, "cursor"),
        ("/api/v1/stacks", {"state": "Sleeping"}, "state"),
        (f"{BASE}/traces", {"cursor": "yesterday"}, "cursor"),
        (f"{BASE}/ticks", {"limit": "many"}, "limit"),
        (f"{BASE}/messages", {}, "agent"),
        (f"{BASE}/search", {}, "q"),
        (f"{BASE}/search", {"q": ""}, "q"),
        (f"{BASE}/search", {"q": "x" * 501}, "q"),
        (f"{BASE}/search", {"q": "x", "limit": 0}, "limit"),
        (f"{BASE}/search", {"q": "x", "limit": 101}, "limit"),
        (f"{BASE}/search", {"q": "x", "kind": "diary"}, "kind"),
        ("/api/v1/namespaces/Not_A_Namespace/stacks/alpha", {}, "namespace"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(
    http: httpx.AsyncClient, path: str, params: dict[str, Any], fragment: str
) -> None:
    response = await http.get(path, params=params, headers=TOKEN)
    assert fragment in fakes.error_of(response, 400, "InvalidParameter")


@pytest.mark.asyncio
async def test_bad_parameters_are_400_even_for_a_denied_stack(http: httpx.AsyncClient) -> None:
    """Parameters are checked before access: a bad cursor never reveals a stack."""
    response = await http.get(
        "/api/v1/namespaces/hidden/stacks/epsilon/traces",
        params={"cursor": "yesterday"},
        headers=TOKEN,
    )
    fakes.error_of(response, 400, "InvalidParameter")


@pytest.mark.asyncio
async def test_one_stack_shows_its_spec_summary_without_secrets(http: httpx.AsyncClient) -> None:
    response = await http.get(BASE, headers=TOKEN)
    detail = _ok(response)
    assert (detail["uid"], detail["generation"], detail["ready"]) == ("uid-alpha", 1, "True")
    assert detail["spec"]["goal"] == "goal of alpha"
    assert detail["spec"]["providers"] == [{"name": "openai", "usesSecret": True, "baseURL": None}]
    assert "llm-keys" not in response.text
    assert "OPENAI_API_KEY" not in response.text


@pytest.mark.asyncio
async def test_a_trace_page_is_decoded_from_records_newest_first(
    http: httpx.AsyncClient,
) -> None:
    first = _ok(await http.get(f"{BASE}/traces", params={"limit": 2}, headers=TOKEN))
    assert [t["id"] for t in first["items"]] == ["1700-4", "1700-3"]
    assert first["nextCursor"] == "1700-3"
    newest = first["items"][0]
    assert newest["tickId"] == "team/alpha/4"
    assert newest["promptTokens"] == 104
    assert newest["fallback"] is False
    assert newest["attempts"] == [
        {"model": "groq:llama", "outcome": "RateLimited", "seconds": 0.25},
        {"model": "openai:gpt", "outcome": "ok", "seconds": 1.5},
    ]
    assert newest["actions"] == ["post_update"]
    assert newest["recalls"] == [{"query": "launch code", "hits": ["1-0"], "mode": "lexical"}]
    assert newest["at"] == 1704.5
    rest = await http.get(
        f"{BASE}/traces", params={"limit": 500, "cursor": first["nextCursor"]}, headers=TOKEN
    )
    assert [t["tickId"] for t in _ok(rest)["items"]] == [f"team/alpha/{i}" for i in (2, 1, 0)]
    assert _ok(rest)["nextCursor"] is None


@pytest.mark.asyncio
async def test_ticks_and_feed_pages_read_their_own_streams(http: httpx.AsyncClient) -> None:
    ticks = _ok(await http.get(f"{BASE}/ticks", params={"limit": 1}, headers=TOKEN))
    assert ticks["items"][0]["tickId"] == "team/alpha/4"
    assert ticks["items"][0]["outcome"] == "Succeeded"
    feed = _ok(await http.get(f"{BASE}/feed", headers=TOKEN))
    assert [f["content"] for f in feed["items"]] == [f"update {i}" for i in range(4, -1, -1)]


@pytest.mark.asyncio
async def test_messages_are_an_agents_inbox_and_unknown_agents_404(
    http: httpx.AsyncClient,
) -> None:
    page = _ok(await http.get(f"{BASE}/messages", params={"agent": "builder"}, headers=TOKEN))
    assert [(m["from"], m["to"], m["content"]) for m in page["items"]] == [
        ("reviewer", "builder", "fix t1"),
        ("planner", "builder", "build t1"),
    ]
    ghost = await http.get(f"{BASE}/messages", params={"agent": "ghost"}, headers=TOKEN)
    assert "no agent 'ghost' in team/alpha" in fakes.error_of(ghost, 404, "NotFound")
    declared = "/api/v1/namespaces/team/stacks/gamma/messages"
    builder = await http.get(declared, params={"agent": "builder"}, headers=TOKEN)
    fakes.error_of(builder, 404, "NotFound")
    _ok(await http.get(declared, params={"agent": "solo"}, headers=TOKEN))


@pytest.mark.asyncio
async def test_agents_memory_and_artifacts(http: httpx.AsyncClient) -> None:
    agents = _ok(await http.get(f"{BASE}/agents", headers=TOKEN))["items"]
    assert [a["name"] for a in agents] == ["planner", "builder", "reviewer", "communicator"]
    by_name = {a["name"]: a for a in agents}
    assert (by_name["planner"]["memoryKeys"], by_name["builder"]["inboxMessages"]) == (2, 2)
    assert by_name["planner"]["models"] == ["scripted:scripted-v1"]

    memory = _ok(await http.get(f"{BASE}/memory", headers=TOKEN))
    # The task was stored without a status: it reads as the typed task, status todo.
    assert memory["plan"] == [{"id": "t1", "title": "write", "status": "todo"}]
    assert memory["agents"]["planner"] == {"notes": "n", "plan_version": "2"}
    assert memory["agents"]["builder"] == {}
    assert memory["usage"] == {"tokens": 1200, "ticks": 5}

    artifacts = _ok(await http.get(f"{BASE}/artifacts", headers=TOKEN))["items"]
    assert [a["name"] for a in artifacts] == ["t1.md", "t2.md"]
    assert (artifacts[0]["version"], artifacts[0]["updatedAt"], artifacts[0]["taskId"]) == (
        3,
        None,
        "t1",
    )
    assert (artifacts[1]["author"], artifacts[1]["content"]) == ("builder", "# two")


@pytest.mark.asyncio
async def test_search_finds_what_the_archive_keeps_best_first(
    http: httpx.AsyncClient, aredis: RedisClient
) -> None:
    alpha = StackRef("team", "alpha")
    await publish_spec(aredis, alpha, 1, {"goal": "g"})
    for content in ("The launch code is ZEBRA-42", "Launch party on Friday", "Lunch at noon"):
        await send_input(
            aredis, alpha, agent="planner", sender="alice", content=content, per_minute=10
        )
    found = _ok(await http.get(f"{BASE}/search", params={"q": "Launch code?"}, headers=TOKEN))
    assert (found["query"], found["terms"], found["archived"]) == (
        "Launch code?",
        ["launch", "code"],
        3,
    )
    assert [item["text"] for item in found["items"]] == [
        "The launch code is ZEBRA-42",
        "Launch party on Friday",
    ]
    first = found["items"][0]
    assert (first["kind"], first["ref"], first["agent"]) == ("input", "#1", "alice")
    assert first["score"] > found["items"][1]["score"] > 0
    assert set(first) == {"id", "kind", "ref", "agent", "tickId", "at", "text", "score"}
    one = _ok(await http.get(f"{BASE}/search", params={"q": "launch", "limit": 1}, headers=TOKEN))
    assert len(one["items"]) == 1
    tasks = await http.get(f"{BASE}/search", params={"q": "launch", "kind": "task"}, headers=TOKEN)
    assert _ok(tasks)["items"] == []
    nothing = _ok(await http.get(f"{BASE}/search", params={"q": "the of !!"}, headers=TOKEN))
    assert (nothing["terms"], nothing["items"]) == ([], [])
