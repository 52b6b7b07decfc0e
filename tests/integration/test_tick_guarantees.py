"""The tick guarantees under the faults that used to break them (real Redis, real SDKs).

Each test here reproduces a defect that broke a promise of the README — a key sent to a
stack author's server, a running tick's outcome thrown away by a second runner, a
result lost between recording and publishing, keys recreated by a tick of a deleted
stack — and checks the promise from Redis afterwards.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from agentstack_core import protocol
from agentstack_core.keys import FleetKeys, StackKeys
from agentstack_core.protocol import Outcome, RedisClient, TickResult
from agentstack_core.redis.errors import LeaseLostError
from agentstack_core.redis.publishing import delete_stack, publish_spec
from agentstack_core.redis.tick import TickStore
from agentstack_core.retention import OUTCOMES_WINDOW
from agentstack_core.spec import ProviderConfig
from agentstack_devkit.fakellm import (
    Delay,
    FakeLLMServer,
    Garbage,
    Hang,
    Held,
    Reply,
    credential_digest,
)
from agentstack_runner.config import RunnerConfig
from agentstack_runner.providers import ApiKey, ProviderRegistry
from agentstack_runner.service import Runner
from tests.helpers import eventually_async
from tests.integration.conftest import RedisBackend
from tests.integration.support import (
    STACK,
    dump_all,
    make_engine,
    openai_spec,
    publish,
    request,
    wait_for_call,
)

pytestmark = pytest.mark.asyncio
KEYS = StackKeys(STACK)
POOL_KEY = "sk-fake-openai"  # the fake_llm fixture's OPENAI_API_KEY: the platform's key


@pytest.fixture
def attacker() -> Iterator[FakeLLMServer]:
    """A server a stack author controls: never on the platform's allow-list."""
    with FakeLLMServer() as server:
        yield server


def _stack_on(server: FakeLLMServer) -> dict[str, object]:
    return {
        "goal": "g",
        "agents": [{"name": "planner", "role": "planner"}],
        "llm": {
            "model": {"provider": "openai", "name": "gpt-4o-mini"},
            "providers": {"openai": {"baseURL": server.openai_base_url}},
        },
    }


async def test_the_platform_key_never_reaches_an_endpoint_a_stack_author_chose(
    aredis: RedisClient, fake_llm: FakeLLMServer, attacker: FakeLLMServer
) -> None:
    await publish(aredis, _stack_on(attacker))
    result = (await make_engine(aredis).execute(request(1))).result

    assert attacker.requests == []  # not even a request without the key
    assert result is not None
    assert result.outcome is Outcome.FAILED
    assert "not sent to" in result.message
    assert "secretRef" in result.message
    assert POOL_KEY not in await dump_all(aredis)


async def test_the_platform_key_goes_to_an_allow_listed_gateway(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    await publish(aredis, _stack_on(fake_llm))  # fake_llm is on the allow-list
    result = (await make_engine(aredis).execute(request(1))).result
    assert result is not None
    assert result.outcome is Outcome.SUCCEEDED
    (call,) = fake_llm.requests
    assert call.credential == credential_digest(f"Bearer {POOL_KEY}")


class OwnKeys:
    """Credentials of a stack that brought its own key (as a ``secretRef`` does)."""

    async def api_key(self, namespace: str, provider: str, config: ProviderConfig) -> ApiKey:
        return ApiKey("sk-the-authors-own", owned=True)


async def test_a_stack_authors_own_key_may_go_where_the_author_chose(
    aredis: RedisClient, fake_llm: FakeLLMServer, attacker: FakeLLMServer
) -> None:
    await publish(aredis, _stack_on(attacker))
    engine = make_engine(aredis)
    engine.registry = ProviderRegistry(OwnKeys())
    result = (await engine.execute(request(1))).result
    assert result is not None
    assert result.outcome is Outcome.SUCCEEDED
    (call,) = attacker.requests
    assert call.credential == credential_digest("Bearer sk-the-authors-own")


async def test_a_second_runner_never_drops_a_tick_that_is_still_running(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    """A delivery claimed while its tick runs (past its start deadline) must not be
    recorded as dropped: the owner's result and tokens are the tick's outcome."""
    fake_llm.add_rule(
        Delay(3, Reply('{"actions": []}', prompt_tokens=7, completion_tokens=3)),
        headers={"X-Agentstack-Agent": "builder"},
    )
    await publish(aredis, openai_spec(fake_llm))
    tick = request(1, deadline_in=1.0)
    owner = asyncio.create_task(make_engine(aredis, "runner-a").execute(tick))
    await wait_for_call(fake_llm, "builder")
    await eventually_async(
        lambda: _true_after(tick.deadline), "the tick's start deadline to pass", 10
    )
    claimed = await make_engine(aredis, "runner-b").execute(tick)
    assert claimed.duplicate
    assert claimed.result is None  # running elsewhere: its owner reports it ...
    assert not claimed.settled  # ... and this delivery stays pending until it has

    ran = await asyncio.wait_for(owner, 60)
    assert ran.result is not None
    assert ran.result.outcome is Outcome.SUCCEEDED
    history = [f for _id, f in await aredis.xrange(KEYS.history)]
    assert [(h["outcome"], h["runner"]) for h in history] == [("Succeeded", "runner-a")]
    usage = await aredis.hgetall(KEYS.usage)
    assert int(usage["tokens"]) == ran.result.tokens > 0
    assert int(usage["ticks"]) == 1


async def _true_after(moment: float) -> bool | None:
    return True if time.time() > moment else None


async def test_a_result_recorded_but_not_published_is_published_by_the_redelivery(
    aredis: RedisClient, redis_backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis fails between the tick's atomic finish and publishing its result: the
    delivery stays pending, is claimed again, and the recorded outcome is published."""
    await publish(aredis, {"goal": "g"})
    await protocol.ensure_groups(aredis)
    real_publish = protocol.publish_results
    failures = 0

    async def publish_failing_once(client: RedisClient, results: list[TickResult]) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise ConnectionError("Redis went away")
        await real_publish(client, results)

    monkeypatch.setattr(protocol, "publish_results", publish_failing_once)
    runner = Runner(
        RunnerConfig(
            redis_url=redis_backend.url,
            redis_cluster=redis_backend.cluster,
            runner_id="runner-a",
            visibility_timeout=0.5,
            claim_interval=0.2,
            block_ms=100,
            metrics_port=0,
        )
    )
    serving = asyncio.create_task(runner.run())
    try:
        await protocol.dispatch(aredis, [request(1)])

        async def published() -> list[TickResult] | None:
            entries = await aredis.xrange(FleetKeys.results)
            return [TickResult.from_fields(f) for _id, f in entries] or None

        (result,) = await eventually_async(published, "the result to be published", 30)
    finally:
        runner.stop()
        await asyncio.wait_for(serving, 30)
        await runner.client.aclose()
    assert failures == 1
    assert result.outcome is Outcome.SUCCEEDED
    assert len(await aredis.xrange(KEYS.history)) == 1  # ran once, reported once
    assert await aredis.xpending(FleetKeys.lane("Normal"), protocol.RUNNERS_GROUP) == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }


async def _stack_keys(client: RedisClient) -> list[str]:
    return [key async for key in client.scan_iter(match=f"{KEYS.prefix}*")]


async def test_a_tick_in_flight_when_its_stack_is_deleted_leaves_no_key(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    fake_llm.add_rule(Hang(), headers={"X-Agentstack-Agent": "builder"})
    await publish(aredis, openai_spec(fake_llm))
    tick = request(1)
    running = asyncio.create_task(make_engine(aredis, "runner-a", lease_ttl=0.9).execute(tick))
    await wait_for_call(fake_llm, "builder")
    assert await delete_stack(aredis, STACK) > 0
    with pytest.raises(LeaseLostError):  # its renewal finds the lease gone
        await asyncio.wait_for(running, 30)
    assert await _stack_keys(aredis) == []

    again = await make_engine(aredis, "runner-b").execute(tick)  # the redelivery
    assert again.result is None
    assert await _stack_keys(aredis) == []


async def test_a_tick_of_a_deleted_stack_writes_nothing_into_its_successor(
    aredis: RedisClient,
) -> None:
    """Deleted and re-created under the same name: the old incarnation's tick is gone."""
    await publish_spec(aredis, STACK, 1, {"goal": "old"}, uid="uid-old")
    stale = request(1)
    stale = protocol.TickRequest(**{**stale.__dict__, "uid": "uid-old"})
    await delete_stack(aredis, STACK)
    await publish_spec(aredis, STACK, 1, {"goal": "new"}, uid="uid-new")

    gone = await make_engine(aredis).execute(stale)
    assert gone.result is None
    assert await aredis.xrange(KEYS.history) == []
    assert await aredis.exists(KEYS.usage, KEYS.done, KEYS.lease) == 0


async def test_a_standby_never_rolls_a_published_spec_back(aredis: RedisClient) -> None:
    assert await publish_spec(aredis, STACK, 3, {"goal": "new"}, uid="u")
    assert not await publish_spec(aredis, STACK, 2, {"goal": "old"}, uid="u")
    assert (await aredis.hget(KEYS.spec, "generation")) == "3"


@pytest.mark.parametrize(
    "garbage",
    [Garbage(), Garbage(body="<html>502 Bad Gateway</html>"), Garbage(truncate=40)],
    ids=["malformed-json", "html", "truncated"],
)
async def test_an_unreadable_llm_answer_is_a_failed_call_not_a_crashed_tick(
    aredis: RedisClient, fake_llm: FakeLLMServer, garbage: Garbage
) -> None:
    fake_llm.add_rule(garbage, repeat_last=True, headers={"X-Agentstack-Agent": "builder"})
    await publish(aredis, openai_spec(fake_llm))
    result = (await make_engine(aredis).execute(request(1))).result
    assert result is not None
    assert result.outcome is Outcome.SUCCEEDED  # the default policy carries on
    assert "builder failed (LLMUnavailable)" in result.message
    entries = {f["agent"]: f for _id, f in await aredis.xrange(KEYS.trace)}
    assert entries["builder"]["outcome"] == "Failed"
    assert len(await aredis.xrange(KEYS.history)) == 1


async def test_no_llm_call_starts_once_the_token_budget_is_reached(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    """Each call answers with at most what is left, and the tick stops before the step
    that would start with the budget spent (10 + 5 tokens a call, 30 allowed)."""
    fake_llm.add_rule(
        Reply('{"actions": []}', prompt_tokens=10, completion_tokens=5), repeat_last=True
    )
    await publish(aredis, openai_spec(fake_llm) | {"budget": {"maxTokens": 30}})
    result = (await make_engine(aredis).execute(request(1))).result
    assert result is not None
    assert (result.outcome, result.reason) == (Outcome.FAILED, "BudgetExceeded")
    assert "stopped before reviewer" in result.message
    assert [call.body["max_tokens"] for call in fake_llm.requests] == [30, 15]
    assert int(await aredis.hget(KEYS.usage, "tokens")) == 30
    again = (await make_engine(aredis).execute(request(2))).result  # and no next tick
    assert again is not None
    assert (again.outcome, again.reason) == (Outcome.DROPPED, "BudgetExceeded")
    assert len(fake_llm.requests) == 2


async def test_a_tick_that_ended_never_keeps_its_lease_even_if_a_cancel_is_lost(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    """A cancellation lost inside a Redis call (seen with redis-py under load) must not
    leave the renewer running: it would hold the stack's lease and delivery for ever.

    The planner's LLM call is held until the renewer has renewed and entered the
    keep-alive, which waits there until the tick's end cancels it, and loses that
    cancellation: the renewer must end all the same."""
    release = threading.Event()
    fake_llm.add_rule(Held(release, Reply('{"actions": []}')))
    await publish(
        aredis, openai_spec(fake_llm) | {"agents": [{"name": "planner", "role": "planner"}]}
    )
    renewals = 0
    lost = 0
    renewed = asyncio.Event()

    async def keep_alive_that_swallows_cancels() -> None:
        nonlocal renewals, lost
        renewals += 1
        renewed.set()
        try:
            await asyncio.Event().wait()  # until the tick's end cancels it
        except asyncio.CancelledError:
            lost += 1  # the lost cancellation: it returns as if nothing had happened

    # A lease that outlasts the tick without a second renewal (it renews after 1 s).
    engine = make_engine(aredis, lease_ttl=3.0)
    before = asyncio.all_tasks()
    running = asyncio.create_task(engine.execute(request(1), keep_alive_that_swallows_cancels))
    await asyncio.wait_for(renewed.wait(), 30)
    release.set()
    ran = await asyncio.wait_for(running, 30)
    assert ran.result is not None
    assert ran.result.outcome is Outcome.SUCCEEDED
    assert renewals > 0  # it did renew while the tick ran
    assert lost == 1  # the tick's end cancelled it in the keep-alive, and that was lost
    # And not once since: nothing the tick started is still running (no renewer).
    assert asyncio.all_tasks() - before == set()
    assert renewals == 1
    assert await aredis.get(KEYS.lease) is None


@pytest.mark.parametrize("lost", ["begin", "finish_tick"])
async def test_a_lease_redis_could_not_take_back_is_given_back_once_it_answers(
    aredis: RedisClient, monkeypatch: pytest.MonkeyPatch, lost: str
) -> None:
    """A Redis failover mid-tick: the answer to the tick's begin (which took the lease)
    or its finish is lost with the dead primary, and so is the lease's release. The
    lease is given back as soon as Redis answers again, not held for its whole TTL
    (every next tick of the stack dropped as busy meanwhile: 30 s by default, the
    failover bench's first figures)."""
    await publish(aredis, {"goal": "g", "agents": [{"name": "planner", "role": "planner"}]})
    refusals = 1
    original = getattr(TickStore, lost)
    release = TickStore.release_lease

    async def answer_lost(self: TickStore, *args: Any, **kwargs: Any) -> None:
        if lost == "begin":
            await original(self, *args, **kwargs)  # done, then the connection breaks
        raise RedisConnectionError("Connection refused (the primary died)")

    async def release_once_refused(self: TickStore, token: str) -> None:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise RedisConnectionError("Connection refused (the primary died)")
        await release(self, token)

    monkeypatch.setattr(TickStore, lost, answer_lost)
    monkeypatch.setattr(TickStore, "release_lease", release_once_refused)
    engine = make_engine(aredis, lease_ttl=30.0)
    with pytest.raises(RedisConnectionError):
        await engine.execute(request(1))
    assert refusals == 0  # the tick's own attempt was refused
    assert await aredis.get(KEYS.lease)  # held still, for up to 30 s

    async def given_back() -> bool | None:
        return True if await aredis.get(KEYS.lease) is None else None

    await eventually_async(given_back, "the lease to be given back", timeout=5)


async def test_whole_results_are_kept_for_the_newest_ticks_and_ids_for_longer(
    aredis: RedisClient,
) -> None:
    """A result is some hundred bytes: only the newest ticks keep theirs (a redelivery
    comes soon); older ticks are still known as done, so they never run again."""
    await publish(aredis, {"goal": "g", "agents": [{"name": "planner", "role": "planner"}]})
    engine = make_engine(aredis)
    for slot in range(1, OUTCOMES_WINDOW + 6):
        assert (await engine.execute(request(slot))).result is not None
    assert await aredis.hlen(KEYS.outcomes) == OUTCOMES_WINDOW
    old = await engine.execute(request(1))  # done long ago: not run, nothing to publish
    assert old.duplicate
    assert old.result is None
    recent = await engine.execute(request(OUTCOMES_WINDOW + 5))
    assert recent.duplicate
    assert recent.result is not None
    assert len(await aredis.xrange(KEYS.history)) == OUTCOMES_WINDOW + 5
