"""What ticks cost, against real Redis and the real openai SDK on the fake server.

The dollar budget is tested with the provider at its dearest: the fake reports one prompt
token per byte and the whole ``max_tokens`` as the answer (``Reply(worst_case=True)``),
so only the bound the runner keeps before each call stands between the stack and an
overspend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from agentstack_api.views import TICKS, TRACES
from agentstack_core.keys import StackKeys
from agentstack_core.pricing import Price, PriceTable, nanos
from agentstack_core.protocol import Outcome, RedisClient
from agentstack_core.redis.errors import LeaseLostError
from agentstack_core.spec import ModelRef
from agentstack_devkit.fakellm import FakeLLMServer, Hang, Reply
from agentstack_runner import metrics
from tests.integration.support import (
    STACK,
    make_engine,
    openai_spec,
    publish,
    request,
    wait_for_call,
)

KEYS = StackKeys(STACK)
pytestmark = pytest.mark.asyncio
QUIET = '{"thought": "nothing to add", "actions": []}'
MINI = ModelRef("openai", "gpt-4o-mini")


async def _entries(client: RedisClient, key: str) -> list[tuple[str, dict[str, Any]]]:
    return list(await client.xrange(key))


def _cost_metric(model: str) -> float:
    return metrics.LLM_COST.labels("openai", model)._value.get()  # type: ignore[no-any-return]


async def test_steps_ticks_and_the_stack_carry_the_cost_of_their_calls(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    fake_llm.add_rule(Reply(QUIET, prompt_tokens=1200, completion_tokens=300), repeat_last=True)
    await publish(aredis, openai_spec(fake_llm))
    before = _cost_metric("gpt-4o-mini")

    result = (await make_engine(aredis).execute(request(1))).result

    assert result is not None
    assert result.outcome is Outcome.SUCCEEDED
    step_cost = Price(0.15, 0.60).cost(1200, 300)  # gpt-4o-mini's default price
    assert step_cost == 360_000  # $0.00036
    assert (result.cost, result.unpriced) == (4 * step_cost, 0)
    traced = [TRACES.render(i, f) for i, f in await _entries(aredis, KEYS.trace)]
    assert [t.costUSD for t in traced] == [pytest.approx(0.00036)] * 4
    (tick,) = [TICKS.render(i, f) for i, f in await _entries(aredis, KEYS.history)]
    assert tick.costUSD == pytest.approx(0.00144)
    assert (await aredis.hgetall(KEYS.usage))["cost"] == str(4 * step_cost)
    assert _cost_metric("gpt-4o-mini") - before == pytest.approx(0.00144)


async def test_calls_of_a_model_without_a_price_cost_unknown_not_zero(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    await publish(
        aredis, openai_spec(fake_llm, model={"provider": "openai", "name": "house-model"})
    )
    result = (await make_engine(aredis).execute(request(1))).result

    assert result is not None
    assert result.outcome is Outcome.SUCCEEDED
    assert (result.cost, result.unpriced) == (0, 4)
    traced = [TRACES.render(i, f) for i, f in await _entries(aredis, KEYS.trace)]
    assert [t.costUSD for t in traced] == [None] * 4
    (tick,) = [TICKS.render(i, f) for i, f in await _entries(aredis, KEYS.history)]
    assert tick.costUSD is None
    assert (await aredis.hgetall(KEYS.usage))["unpriced"] == "4"


async def test_a_price_override_prices_a_house_model(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    fake_llm.add_rule(Reply(QUIET, prompt_tokens=1000, completion_tokens=1000), repeat_last=True)
    await publish(
        aredis, openai_spec(fake_llm, model={"provider": "openai", "name": "house-model"})
    )
    prices = PriceTable.with_overrides("openai: {house-model: {input: 1, output: 3}}")
    result = (await make_engine(aredis, prices=prices).execute(request(1))).result

    assert result is not None
    assert (result.cost, result.unpriced) == (4 * 4_000_000, 0)  # $0.004 a step


async def test_a_dollar_budget_is_never_overspent_by_a_provider_at_its_dearest(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    fake_llm.add_rule(Reply(QUIET, worst_case=True), repeat_last=True)
    limit = 0.02
    await publish(aredis, {**openai_spec(fake_llm), "budget": {"maxCostUSD": limit}})
    engine = make_engine(aredis)
    reasons: list[str] = []
    for slot in range(1, 30):
        result = (await engine.execute(request(slot))).result
        assert result is not None
        reasons.append(result.reason)
        if result.reason == "BudgetExceeded" and result.outcome is Outcome.DROPPED:
            break
    usage = await aredis.hgetall(KEYS.usage)
    spent = int(usage["cost"])
    assert 0 < spent <= nanos(limit), reasons
    # The runner stopped because the next call's worst case did not fit, and says so.
    assert int(usage["needed"]) > nanos(limit) - spent
    assert reasons[-1] == "BudgetExceeded", reasons
    # What the provider charged is what the stack counted: each call's worst case.
    charged = sum(
        Price(0.15, 0.60).cost(
            sum(len(str(m["content"]).encode()) for m in r.body["messages"]),
            int(r.body["max_tokens"]),
        )
        for r in fake_llm.requests
    )
    assert charged == spent


async def test_a_dollar_budget_refuses_a_model_without_a_price_without_calling_it(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    await publish(
        aredis,
        {
            **openai_spec(fake_llm, model={"provider": "openai", "name": "house-model"}),
            "budget": {"maxCostUSD": 5},
        },
    )
    result = (await make_engine(aredis).execute(request(1))).result

    assert result is not None
    assert result.outcome is Outcome.FAILED
    (first, *_rest) = [f for _i, f in await _entries(aredis, KEYS.trace)]
    assert first["reason"] == "UnpricedModel"
    assert "openai:house-model has no price" in first["error"]
    assert fake_llm.requests == []


async def test_a_resumed_tick_dropped_late_still_counts_what_its_committed_steps_spent(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    """A runner dies after the planner's step committed; the tick is taken again only
    after its deadline and dropped — the planner's call was made and paid for, so its
    tokens and dollars count against the budgets all the same."""
    fake_llm.add_rule(Reply(QUIET, prompt_tokens=1200, completion_tokens=300))
    fake_llm.add_rule(Hang(), headers={"X-Agentstack-Agent": "builder"})
    await publish(aredis, openai_spec(fake_llm))
    tick = request(1, deadline_in=3)
    running = asyncio.create_task(make_engine(aredis, "runner-a", lease_ttl=0.6).execute(tick))
    await wait_for_call(fake_llm, "builder")
    await aredis.set(KEYS.lease, "someone-else")  # its lease expired and was taken over
    with pytest.raises(LeaseLostError):
        await asyncio.wait_for(running, timeout=30)
    await aredis.delete(KEYS.lease)

    late = dataclasses.replace(tick, deadline=time.time() - 1)
    result = (await make_engine(aredis, "runner-b").execute(late)).result

    assert result is not None
    assert (result.outcome, result.reason) == (Outcome.DROPPED, "DeadlineExceeded")
    planner = Price(0.15, 0.60).cost(1200, 300)
    assert (result.tokens, result.cost, result.steps) == (1500, planner, 1)
    usage = await aredis.hgetall(KEYS.usage)
    assert (usage["tokens"], usage["cost"], usage["ticks"]) == ("1500", str(planner), "0")
