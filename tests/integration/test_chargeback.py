"""Chargeback buckets, written by each step's own commit and read back by day, stack
and model — against real Redis (standalone and a cluster), the real engine and the
real openai SDK on the fake LLM server."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from agentstack_api.views import TRACES
from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.pricing import Price
from agentstack_core.protocol import Outcome, RedisClient
from agentstack_core.redis.publishing import delete_stack
from agentstack_core.redis.usage import Spent, day_of, read_usage
from agentstack_devkit.fakellm import FakeLLMServer, Reply
from agentstack_runner import metrics
from tests.integration.support import STACK, make_engine, openai_spec, publish, request

pytestmark = pytest.mark.asyncio
QUIET = '{"thought": "nothing to add", "actions": []}'
OTHER = StackRef(STACK.namespace, "other")
HOUSE = {"provider": "openai", "name": "house-model"}


def _namespace_metric(counter: Any, namespace: str) -> float:
    return counter.labels(namespace)._value.get()  # type: ignore[no-any-return]


async def _traced(client: RedisClient, stack: StackRef) -> list[Any]:
    return [TRACES.render(i, f) for i, f in await client.xrange(StackKeys(stack).trace)]


async def _bucket_sum(client: RedisClient, stack: StackRef, counter: str) -> int:
    fields = await client.hgetall(StackKeys(stack).usage_days)
    return sum(int(v) for k, v in fields.items() if k.endswith(f"|{counter}"))


async def test_the_buckets_cost_adds_up_to_the_traces_cost(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    fake_llm.add_rule(Reply(QUIET, prompt_tokens=1200, completion_tokens=300), repeat_last=True)
    await publish(aredis, openai_spec(fake_llm))
    cost_before = _namespace_metric(metrics.NAMESPACE_LLM_COST, STACK.namespace)
    tokens_before = _namespace_metric(metrics.NAMESPACE_LLM_TOKENS, STACK.namespace)
    engine = make_engine(aredis)

    for slot in (1, 2):
        result = (await engine.execute(request(slot))).result
        assert result is not None
        assert result.outcome is Outcome.SUCCEEDED

    traced = await _traced(aredis, STACK)
    assert len(traced) == 8
    traced_cost = sum(int(f["cost"]) for _i, f in await aredis.xrange(StackKeys(STACK).trace))
    assert traced_cost == 8 * Price(0.15, 0.60).cost(1200, 300)
    assert await _bucket_sum(aredis, STACK, "cost") == traced_cost
    assert await _bucket_sum(aredis, STACK, "tokens") == 8 * 1500
    assert await _bucket_sum(aredis, STACK, "calls") == 8
    assert await _bucket_sum(aredis, STACK, "unpriced") == 0
    days = {day_of(t.at) for t in traced}
    fields = await aredis.hgetall(StackKeys(STACK).usage_days)
    assert {name.split("|")[0] for name in fields} == days
    assert {name.split("|")[1] for name in fields} == {"openai:gpt-4o-mini"}
    cost_metric = _namespace_metric(metrics.NAMESPACE_LLM_COST, STACK.namespace) - cost_before
    assert cost_metric == pytest.approx(traced_cost / 1e9)
    tokens_metric = _namespace_metric(metrics.NAMESPACE_LLM_TOKENS, STACK.namespace)
    assert tokens_metric - tokens_before == 8 * 1500


async def test_a_resumed_tick_adds_nothing_twice(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    fake_llm.add_rule(Reply(QUIET, prompt_tokens=100, completion_tokens=10), repeat_last=True)
    await publish(aredis, openai_spec(fake_llm))
    engine = make_engine(aredis)
    await engine.execute(request(1))
    spent = await aredis.hgetall(StackKeys(STACK).usage_days)

    await engine.execute(request(1))  # delivered again: its id is done, nothing runs

    assert await aredis.hgetall(StackKeys(STACK).usage_days) == spent


async def test_unpriced_calls_are_counted_apart_and_the_key_leaves_with_the_stack(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    fake_llm.add_rule(Reply(QUIET, prompt_tokens=50, completion_tokens=5), repeat_last=True)
    await publish(aredis, openai_spec(fake_llm, model=HOUSE), stack=OTHER)
    await make_engine(aredis).execute(request(1, stack=OTHER))

    assert await _bucket_sum(aredis, OTHER, "unpriced") == 4
    assert await _bucket_sum(aredis, OTHER, "calls") == 4
    assert await _bucket_sum(aredis, OTHER, "cost") == 0
    keys = StackKeys(OTHER)
    assert keys.usage_days in await aredis.smembers(keys.index)

    await delete_stack(aredis, OTHER)

    assert not await aredis.exists(keys.usage_days)


async def test_the_reader_gives_rows_by_day_stack_and_model_and_their_totals(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    fake_llm.add_rule(Reply(QUIET, prompt_tokens=1000, completion_tokens=100), repeat_last=True)
    await publish(aredis, openai_spec(fake_llm))
    await publish(aredis, openai_spec(fake_llm, model=HOUSE), stack=OTHER)
    await make_engine(aredis).execute(request(1))
    await make_engine(aredis).execute(request(1, stack=OTHER))
    traced = [*await _traced(aredis, STACK), *await _traced(aredis, OTHER)]
    days = sorted({day_of(t.at) for t in traced})  # one day, or two across midnight
    first, last = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
    # a day long past, as a commit then would have written it: outside the range read
    await aredis.hset(StackKeys(STACK).usage_days, "2001-01-01|openai:gpt-4o-mini|cost", "7")

    report = await read_usage(
        aredis, STACK.namespace, [STACK.name, OTHER.name, "never-ticked"], first, last
    )

    step = Price(0.15, 0.60).cost(1000, 100)
    assert {row.day for row in report.rows} == set(days)
    by_stack: dict[tuple[str, str], Spent] = {}
    for row in report.rows:
        key = (row.stack, row.model)
        by_stack[key] = by_stack.get(key, Spent()) + row.spent
    assert by_stack == {
        (STACK.name, "openai:gpt-4o-mini"): Spent(cost=4 * step, tokens=4400, calls=4),
        (OTHER.name, "openai:house-model"): Spent(tokens=4400, calls=4, unpriced=4),
    }
    assert report.total == Spent(cost=4 * step, tokens=8800, calls=8, unpriced=4)
    assert [(r.day, r.stack, r.model) for r in report.rows] == sorted(
        (r.day, r.stack, r.model) for r in report.rows
    )
    past = await read_usage(
        aredis, STACK.namespace, [STACK.name], date(2001, 1, 1), first - timedelta(days=1)
    )
    assert [(r.day, r.spent.cost) for r in past.rows] == [("2001-01-01", 7)]
