"""One tick, end to end, against real Redis (standalone and cluster) and real SDKs."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import Outcome, RedisClient
from agentstack_core.records import (
    ArchiveKind,
    ArchiveRecord,
    GoalRecord,
    GoalState,
    TraceRecord,
)
from agentstack_core.redis.errors import LeaseLostError
from agentstack_core.redis.tick import lease_token
from agentstack_core.spec import DEFAULT_TEAM
from agentstack_devkit.fakellm import Delay, Fail, FakeLLMServer, Hang, Reply
from agentstack_runner.actions import MAX_REPLY_CHARS
from tests.integration.support import (
    STACK,
    dump_all,
    make_engine,
    openai_spec,
    publish,
    request,
    wait_for_call,
)

KEYS = StackKeys(STACK)
pytestmark = pytest.mark.asyncio


async def trace(client: RedisClient) -> list[dict[str, Any]]:
    return [fields for _id, fields in await client.xrange(KEYS.trace)]


async def test_a_tick_runs_the_team_in_order_and_leaves_its_state(aredis: RedisClient) -> None:
    await publish(aredis, {"goal": "Write a haiku about autumn"})
    result = (await make_engine(aredis).execute(request(1))).result

    assert result is not None
    assert result.outcome is Outcome.SUCCEEDED
    assert result.reason == "Completed"
    assert result.steps == 4
    assert result.progressed
    entries = await trace(aredis)
    assert [entry["agent"] for entry in entries] == list(DEFAULT_TEAM)
    assert all(entry["outcome"] == "Succeeded" for entry in entries)
    assert all(entry["model"] == "scripted:scripted-v1" for entry in entries)

    plan = json.loads(await aredis.get(KEYS.plan))
    assert [task["id"] for task in plan] == ["t1", "t2", "t3"]
    artifacts = await aredis.hgetall(KEYS.artifacts)
    assert set(artifacts) == {"t1.md"}
    assert json.loads(artifacts["t1.md"])["author"] == "builder"
    feed = await aredis.xrange(KEYS.feed)
    assert len(feed) == 1
    assert "task(s) open" in feed[0][1]["content"]
    # The planner wrote to the builder, the builder to the reviewer; both read theirs.
    assert (await aredis.xrange(KEYS.inbox("builder")))[0][1]["from"] == "planner"
    assert (await aredis.xrange(KEYS.inbox("reviewer")))[0][1]["from"] == "builder"
    cursors = await aredis.hgetall(KEYS.cursors)
    assert set(cursors) == {"builder", "reviewer"}
    assert await aredis.hget(KEYS.memory("communicator"), "last_report")
    history = await aredis.xrange(KEYS.history)
    assert [fields["outcome"] for _id, fields in history] == ["Succeeded"]
    assert int(await aredis.hget(KEYS.usage, "tokens")) == result.tokens > 0
    assert await aredis.get(KEYS.lease) is None  # the finish released it


async def test_scripted_team_makes_visible_progress_over_ticks(aredis: RedisClient) -> None:
    await publish(aredis, {"goal": "Plan a team offsite"})
    engine = make_engine(aredis)
    for slot in range(1, 11):
        result = (await engine.execute(request(slot))).result
        assert result is not None
        assert result.outcome is Outcome.SUCCEEDED
    # The first iteration was finished (its tasks left the plan for the archive, done)
    # and a second one planned: the plan holds open work only.
    plan = json.loads(await aredis.get(KEYS.plan))
    assert plan
    assert {task["id"] for task in plan} <= {"t4", "t5", "t6"}
    closed = [
        ArchiveRecord.from_fields(fields)
        for _id, fields in await aredis.xrange(KEYS.archive)
        if fields["kind"] == ArchiveKind.TASK
    ]
    assert {(entry.ref, entry.text.endswith("(done)")) for entry in closed[:3]} == {
        ("t1", True),
        ("t2", True),
        ("t3", True),
    }
    statuses = {json.loads(a)["status"] for a in (await aredis.hgetall(KEYS.artifacts)).values()}
    assert "accepted" in statuses
    assert len(await aredis.xrange(KEYS.feed)) == 10


async def test_the_scripted_builder_recalls_a_task_before_revising_it(
    aredis: RedisClient,
) -> None:
    await publish(aredis, {"goal": "Plan a team offsite"})
    engine = make_engine(aredis)
    for slot in (1, 2):  # t1.md is sent back in tick 1, revised in tick 2
        await engine.execute(request(slot))
    steps = [TraceRecord.from_fields(fields) for _id, fields in await aredis.xrange(KEYS.trace)]
    recalling = [step for step in steps if step.recalls]
    assert [(step.agent, step.tick_id) for step in recalling] == [("builder", request(2).tick_id)]
    (recalled,) = recalling[0].recalls
    assert recalled.query == "Outline the approach to: Plan a team offsite"
    assert recalled.mode == "lexical"
    found = {
        entry_id: ArchiveRecord.from_fields(fields)
        for entry_id, fields in await aredis.xrange(KEYS.archive)
    }
    assert found[recalled.hits[0]].ref == "t1.md@v1"  # the version it revises, first
    revised = json.loads(await aredis.hget(KEYS.artifacts, "t1.md"))
    assert revised["version"] == 2
    assert "Recalled artifact t1.md@v1: # Outline the approach" in revised["content"]


async def test_a_duplicate_tick_executes_once(aredis: RedisClient) -> None:
    await publish(aredis, {"goal": "g"})
    first, second = make_engine(aredis, "runner-a"), make_engine(aredis, "runner-b")
    runs = await asyncio.gather(first.execute(request(1)), second.execute(request(1)))
    assert sorted(run.duplicate for run in runs) == [False, True]
    later = await first.execute(request(1))  # and again, later: the recorded outcome
    assert later.duplicate
    assert later.result == next(run.result for run in runs if not run.duplicate)
    assert len(await trace(aredis)) == 4
    assert len(await aredis.xrange(KEYS.history)) == 1


async def test_two_ticks_of_one_stack_never_run_at_once(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    fake_llm.add_rule(Delay(0.3, Reply('{"actions": []}')), repeat_last=True)
    await publish(aredis, openai_spec(fake_llm))
    runs = await asyncio.gather(
        make_engine(aredis, "runner-a").execute(request(1)),
        make_engine(aredis, "runner-b").execute(request(2)),
    )
    outcomes = sorted((r.result.outcome.value, r.result.reason) for r in runs if r.result)
    assert outcomes == [("Dropped", "StackBusy"), ("Succeeded", "Completed")]
    assert len(await trace(aredis)) == 4


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"published": 2, "requested": 1}, "OutdatedGeneration"),
        ({"published": 1, "requested": 2}, "SpecNotPublished"),
        ({"deadline_in": -1.0}, "DeadlineExceeded"),
        ({"spec": {"executionState": "Paused"}}, "NotRunning"),
        ({"spec": {"budget": {"maxTicks": 0}}}, "BudgetExceeded"),
        ({"spec": {"agents": [{"name": "poet", "role": "poet"}]}}, "InvalidSpec"),
    ],
)
async def test_ticks_that_must_not_run_are_dropped_with_a_reason(
    aredis: RedisClient, setup: dict[str, Any], reason: str
) -> None:
    published = setup.get("published", 1)
    if published is not None:
        await publish(aredis, {"goal": "g", **setup.get("spec", {})}, generation=published)
    tick = request(
        1, generation=setup.get("requested", 1), deadline_in=setup.get("deadline_in", 60.0)
    )
    engine = make_engine(aredis)
    result = (await engine.execute(tick)).result
    assert result is not None
    assert result.outcome is Outcome.DROPPED
    assert result.reason == reason
    assert result.message
    history = [fields for _id, fields in await aredis.xrange(KEYS.history)]
    assert [(h["outcome"], h["reason"]) for h in history] == [("Dropped", reason)]
    assert await trace(aredis) == []  # no agent ran
    again = await engine.execute(tick)  # recorded: a redelivery is a duplicate ...
    assert again.duplicate
    assert again.result == result  # ... that reports the recorded outcome again


@pytest.mark.parametrize(
    ("garbage", "error"),
    [
        ("Sure! Here is my plan: first, we...", "not valid JSON"),
        ('{"thought": "' + "x" * MAX_REPLY_CHARS + '"}', "characters; the limit is"),
        ('{"actions": [{"type": "write_artifact", "name": ["a"], "content": 5}]}', "name"),
        ('{"actions": [{"type": "delete_everything"}]}', "actions.0"),
    ],
)
async def test_bad_model_output_is_a_recorded_step_failure(
    aredis: RedisClient, fake_llm: FakeLLMServer, garbage: str, error: str
) -> None:
    fake_llm.add_rule(Reply(garbage), Reply(garbage), headers={"X-Agentstack-Agent": "builder"})
    await publish(aredis, openai_spec(fake_llm))
    result = (await make_engine(aredis).execute(request(1))).result

    assert result is not None
    assert result.outcome is Outcome.SUCCEEDED  # the default policy carries on
    assert "builder failed (InvalidOutput)" in result.message
    entries = {entry["agent"]: entry for entry in await trace(aredis)}
    assert set(entries) == set(DEFAULT_TEAM)
    assert entries["builder"]["outcome"] == "Failed"
    assert entries["builder"]["reason"] == "InvalidOutput"
    assert error in entries["builder"]["error"]
    assert entries["reviewer"]["outcome"] == "Succeeded"
    builder_calls = [r for r in fake_llm.requests if r.headers["x-agentstack-agent"] == "builder"]
    assert len(builder_calls) == 2  # the answer and one repair
    assert "That reply was rejected" in builder_calls[1].messages[-1]["content"]


async def test_output_repaired_on_the_second_try_counts_as_success(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    fixed = '{"actions": [{"type": "post_update", "content": "fixed it"}]}'
    fake_llm.add_rule(
        Reply("not json"), Reply(fixed), headers={"X-Agentstack-Agent": "communicator"}
    )
    await publish(aredis, openai_spec(fake_llm))
    result = (await make_engine(aredis).execute(request(1))).result
    assert result is not None
    assert result.outcome is Outcome.SUCCEEDED
    assert result.message == ""
    feed = await aredis.xrange(KEYS.feed)
    assert [fields["content"] for _id, fields in feed] == ["fixed it"]


async def test_fail_tick_policy_stops_at_the_failed_step(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    fake_llm.add_rule(Reply("nope"), repeat_last=True, headers={"X-Agentstack-Agent": "builder"})
    await publish(aredis, openai_spec(fake_llm, onStepFailure="FailTick"))
    result = (await make_engine(aredis).execute(request(1))).result
    assert result is not None
    assert result.outcome is Outcome.FAILED
    assert result.reason == "StepFailed"
    assert result.message.startswith("builder: InvalidOutput")
    assert [entry["agent"] for entry in await trace(aredis)] == ["planner", "builder"]


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (Fail(429, retry_after=0.3), "RateLimited"),
        (Fail(500), "ServerError"),
        (Delay(5, Reply("{}")), "Timeout"),
    ],
    ids=["429-retry-after", "500", "timeout"],
)
async def test_groq_failing_falls_back_to_openai_within_the_tick(
    aredis: RedisClient,
    fake_llm: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
    failure: Fail | Delay,
    reason: str,
) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test-secret-groq")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-openai")
    fake_llm.add_rule(failure, provider="groq", repeat_last=True)
    await publish(
        aredis,
        {
            "goal": "g",
            "agents": [{"name": "planner", "role": "planner"}],
            "llm": {
                "model": {"provider": "groq", "name": "llama-3.3-70b-versatile"},
                "fallbackModels": [{"provider": "openai", "name": "gpt-4o-mini"}],
                "providers": {
                    "groq": {"baseURL": fake_llm.groq_base_url},
                    "openai": {"baseURL": fake_llm.openai_base_url},
                },
                "requestTimeoutSeconds": 0.5,
            },
        },
    )
    result = (await make_engine(aredis).execute(request(1))).result

    assert result is not None
    assert result.outcome is Outcome.SUCCEEDED
    (entry,) = await trace(aredis)
    assert entry["model"] == "openai:gpt-4o-mini"
    assert entry["fallback"] == "true"
    attempts = json.loads(entry["attempts"])
    assert [a["outcome"] for a in attempts] == [reason, reason, "Succeeded"]
    groq_calls = [r for r in fake_llm.requests if r.provider == "groq"]
    assert len(groq_calls) == 2
    if reason == "RateLimited":
        assert groq_calls[1].received_at - groq_calls[0].received_at >= 0.3  # Retry-After
    # Keys reach the provider (redacted in the recording) and nothing else.
    assert all(r.headers["authorization"] == "<redacted>" for r in fake_llm.requests)
    assert "test-secret" not in await dump_all(aredis)


async def test_unknown_scripted_model_fails_every_step_with_a_clear_reason(
    aredis: RedisClient,
) -> None:
    await publish(aredis, {"goal": "g", "llm": {"model": {"provider": "scripted", "name": "gpt"}}})
    result = (await make_engine(aredis).execute(request(1))).result
    assert result is not None
    assert result.outcome is Outcome.FAILED
    assert result.reason == "AllStepsFailed"
    assert "unknown model 'gpt'" in result.message


async def test_one_stack_with_a_rejected_model_does_not_cut_off_the_others(
    aredis: RedisClient,
) -> None:
    broken, healthy = StackRef("team", "broken"), StackRef("team", "healthy")
    await publish(
        aredis, {"goal": "g", "llm": {"model": {"provider": "scripted", "name": "x"}}}, stack=broken
    )
    await publish(aredis, {"goal": "g"}, stack=healthy)
    engine = make_engine(aredis)  # one runner: one circuit breaker per provider
    for slot in range(1, 4):
        failed = (await engine.execute(request(slot, stack=broken))).result
        assert failed is not None
        assert failed.outcome is Outcome.FAILED
    result = (await engine.execute(request(1, stack=healthy))).result
    assert result is not None
    assert result.outcome is Outcome.SUCCEEDED


async def test_missing_api_key_is_reported_without_calling_anyone(
    aredis: RedisClient, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    await publish(aredis, openai_spec(fake_llm))
    result = (await make_engine(aredis).execute(request(1))).result
    assert result is not None
    assert result.outcome is Outcome.FAILED
    assert "no API key (OPENAI_API_KEY not available to the runner)" in result.message
    assert fake_llm.requests == []


async def test_lost_lease_stops_writes_and_a_retry_resumes_after_the_last_step(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    fake_llm.add_rule(Hang(), headers={"X-Agentstack-Agent": "builder"})
    await publish(aredis, openai_spec(fake_llm))
    tick = request(1)
    running = asyncio.create_task(make_engine(aredis, "runner-a", lease_ttl=0.6).execute(tick))
    await wait_for_call(fake_llm, "builder")
    await aredis.set(KEYS.lease, "someone-else")  # the lease expired and was taken over
    fake_llm.clear_rules()
    with pytest.raises(LeaseLostError):
        await asyncio.wait_for(running, timeout=30)
    assert [entry["agent"] for entry in await trace(aredis)] == ["planner"]

    await aredis.delete(KEYS.lease)
    started = time.monotonic()
    result = (await make_engine(aredis, "runner-b").execute(tick)).result
    assert result is not None
    assert result.outcome is Outcome.SUCCEEDED
    assert result.steps == 4
    assert time.monotonic() - started < 30
    assert [entry["agent"] for entry in await trace(aredis)] == list(DEFAULT_TEAM)
    planner_calls = [r for r in fake_llm.requests if r.headers["x-agentstack-agent"] == "planner"]
    assert len(planner_calls) == 1  # the committed step was not run again


async def test_a_tick_dropped_as_busy_counts_the_steps_an_earlier_attempt_committed(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    """An attempt commits the planner's step, then loses the stack to another tick (its
    Redis went away, it handed the tick back): when the tick comes again, it is dropped
    as busy — recorded with the committed step's progress and tokens, or a consolidation
    done then would be done twice by the checker's count and its tokens never billed."""
    message = '{"actions": [{"type": "send_message", "to": "builder", "content": "go"}]}'
    fake_llm.add_rule(Reply(message), headers={"X-Agentstack-Agent": "planner"})
    fake_llm.add_rule(Hang(), headers={"X-Agentstack-Agent": "builder"})
    await publish(aredis, openai_spec(fake_llm))
    tick = request(1)
    running = asyncio.create_task(make_engine(aredis, "runner-a", lease_ttl=0.6).execute(tick))
    await wait_for_call(fake_llm, "builder")
    other = lease_token(request(2).tick_id, "runner-b", "0")
    await aredis.set(KEYS.lease, other)  # another tick of the stack holds it now
    with pytest.raises(LeaseLostError):
        await asyncio.wait_for(running, timeout=30)
    (planner,) = [entry for entry in await trace(aredis)]
    assert planner["agent"] == "planner"

    dropped = (await make_engine(aredis, "runner-c").execute(tick)).result
    assert dropped is not None
    assert (dropped.outcome, dropped.reason) == (Outcome.DROPPED, "StackBusy")
    assert (dropped.steps, dropped.progressed) == (1, True)
    spent = int(planner["prompt_tokens"]) + int(planner["completion_tokens"])
    assert dropped.tokens == spent > 0
    (entry,) = [fields for _id, fields in await aredis.xrange(KEYS.history)]
    assert (entry["outcome"], entry["progressed"]) == ("Dropped", "true")
    assert int(await aredis.hget(KEYS.usage, "tokens")) == dropped.tokens
    assert await aredis.get(KEYS.lease) == other  # the other tick's lease untouched


async def test_a_tick_past_its_timeout_fails_and_frees_the_stack(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    fake_llm.add_rule(Hang(), headers={"X-Agentstack-Agent": "builder"})
    await publish(
        aredis, openai_spec(fake_llm, requestTimeoutSeconds=30) | {"tickTimeoutSeconds": 1}
    )
    started = time.monotonic()
    result = (await make_engine(aredis).execute(request(1))).result
    assert result is not None
    assert result.outcome is Outcome.FAILED
    assert result.reason == "TickTimeout"
    assert time.monotonic() - started < 10
    assert await aredis.get(KEYS.lease) is None  # the next tick is not blocked


async def test_a_tick_runs_after_redis_forgot_its_scripts(aredis: RedisClient) -> None:
    """Scripts go by SHA; a Redis that lost its script cache (restart, failover, flush)
    gets the text again instead of failing the tick with NOSCRIPT."""
    await publish(aredis, {"goal": "g"})
    engine = make_engine(aredis)
    assert (await engine.execute(request(1))).result is not None  # scripts now cached
    await aredis.script_flush()  # type: ignore[misc]
    result = (await engine.execute(request(2))).result
    assert result is not None
    assert result.outcome is Outcome.SUCCEEDED
    assert result.steps == 4


@pytest.mark.parametrize("confirm_by", ["Reviewer", "Judge"])
async def test_a_finite_goal_is_declared_confirmed_and_then_ticks_no_more(
    aredis: RedisClient, confirm_by: str
) -> None:
    spec = {"goal": "Plan a team offsite", "completion": {"criterion": "all planned work done"}}
    spec["completion"]["confirmBy"] = confirm_by  # type: ignore[index]
    await publish(aredis, spec)
    engine = make_engine(aredis)
    outcomes = []
    for slot in range(1, 40):
        result = (await engine.execute(request(slot))).result
        assert result is not None
        outcomes.append((result.outcome, result.reason))
        if result.outcome is Outcome.DROPPED:
            break
    assert outcomes[-1] == (Outcome.DROPPED, "GoalMet")
    assert all(outcome is Outcome.SUCCEEDED for outcome, _reason in outcomes[:-1])
    goal = GoalRecord.from_json(await aredis.get(KEYS.goal))
    assert (goal.state, goal.declared_by) == (GoalState.MET, "planner")
    assert goal.decided_by == ("reviewer" if confirm_by == "Reviewer" else "(judge)")
    assert goal.summary.startswith("2 iterations planned, built and reviewed")
    traces = [f for _id, f in await aredis.xrange(KEYS.trace)]
    judged = [f for f in traces if f["agent"] == "(judge)"]
    assert len(judged) == (1 if confirm_by == "Judge" else 0)  # once, when it was declared
    # Memory is kept, and the next ticks are dropped as well.
    assert await aredis.exists(KEYS.plan, KEYS.archive) == 2
    again = (await engine.execute(request(99))).result
    assert again is not None
    assert (again.outcome, again.reason) == (Outcome.DROPPED, "GoalMet")
