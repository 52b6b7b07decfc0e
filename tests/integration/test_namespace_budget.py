"""A namespace's budget as the runners keep it, against real Redis (standalone and a real
Cluster) and the real openai SDK on the fake server at its dearest (every call costs its
worst case, so only the holds stand between the namespace and an overspend).

The ledger is published here as the operator publishes it
(:meth:`~agentstack_core.namespacebudget.BudgetSpec.ledger_limits`); the operator's side
is tested end to end in ``tests/e2e/test_namespace_budget.py``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from agentstack_core.keys import NamespaceKeys, StackKeys, StackRef
from agentstack_core.namespacebudget import parse_budget
from agentstack_core.pricing import Price, nanos, prompt_bound
from agentstack_core.protocol import Outcome, RedisClient
from agentstack_core.redis.ledger import NamespaceLedger
from agentstack_devkit.fakellm import FakeLLMServer, Reply
from agentstack_runner.namespacebudgets import NamespaceBudgets
from tests.integration.support import make_engine, openai_spec, publish, request

pytestmark = pytest.mark.asyncio
QUIET = '{"thought": "nothing to add", "actions": []}'
NAMESPACE = "team"
STACKS = [StackRef(NAMESPACE, f"s{index}") for index in range(6)]
MINI = Price(0.15, 0.60)  # gpt-4o-mini's default price


async def _budget(client: RedisClient, **spec: Any) -> tuple[NamespaceLedger, dict[str, str]]:
    """Publish one budget ``cap`` for the namespace, as the operator does; the ledger and
    the windows it is kept in now."""
    budget = parse_budget("cap", spec)
    ledger = NamespaceLedger(client, NAMESPACE)
    await ledger.publish({"cap": budget.ledger_limits()})
    return ledger, {"cap": budget.window(time.time()).id}


async def _trace_costs(client: RedisClient, stack: StackRef) -> list[dict[str, Any]]:
    return [fields for _id, fields in await client.xrange(StackKeys(stack).trace)]


async def test_concurrent_runners_never_spend_more_than_the_namespace_may(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    """Two runners tick six stacks of one namespace at once, round after round, until
    every call is refused: the ledger's spend stays within the cap, and it equals what
    the stacks' traces say their calls cost (the chargeback is the trace's sum)."""
    fake_llm.add_rule(Reply(QUIET, worst_case=True), repeat_last=True)
    cap = 0.01
    ledger, windows = await _budget(aredis, maxCostUSD=cap)
    for stack in STACKS:
        await publish(aredis, openai_spec(fake_llm), stack=stack)
    runners = [
        make_engine(aredis, f"runner-{name}", budgets=NamespaceBudgets(aredis)) for name in "ab"
    ]
    for slot in range(1, 20):
        ticks = [
            runners[index % 2].execute(request(slot, stack=stack))
            for index, stack in enumerate(STACKS)
        ]
        results = [execution.result for execution in await asyncio.gather(*ticks)]
        assert all(r is not None for r in results)
        if all(r is not None and r.cost == 0 for r in results):
            break
    else:
        pytest.fail("the namespace's budget never stopped the calls")

    spend = (await ledger.spent(windows, now=time.time()))["cap"]
    assert 0 < spend.cost <= nanos(cap)
    assert (spend.held_cost, spend.held_tokens, spend.unsettled) == (0, 0, 0)
    traced = [entry for stack in STACKS for entry in await _trace_costs(aredis, stack)]
    assert sum(int(entry.get("cost") or 0) for entry in traced) == spend.cost
    assert spend.calls == len(fake_llm.requests)
    # What the provider charged (each call's worst case) is what the ledger counted.
    charged = sum(
        MINI.cost(
            sum(len(str(m["content"]).encode()) for m in r.body["messages"]),
            int(r.body["max_tokens"]),
        )
        for r in fake_llm.requests
    )
    assert charged == spend.cost
    refused = [e for e in traced if "namespace's cap" in str(e.get("error") or "")]
    assert refused, "no step says the namespace's budget refused its call"
    assert all(e["reason"] == "BudgetExceeded" for e in refused)


async def test_a_call_is_shortened_to_fit_what_the_window_has_left(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    """The window has room for the first call's prompt and 300 tokens of answer: the call
    is made, asking for at most what fits, and settled at what it used."""
    fake_llm.add_rule(Reply(QUIET, prompt_tokens=10, completion_tokens=5), repeat_last=True)
    for stack in STACKS[:2]:
        await publish(aredis, openai_spec(fake_llm), stack=stack)
    # The same tick of another stack, without a budget: how big the first prompt is.
    await make_engine(aredis).execute(request(1, stack=STACKS[1]))
    prompt = prompt_bound(fake_llm.requests[0].body["messages"])
    wanted = int(fake_llm.requests[0].body["max_tokens"])
    fake_llm.clear()
    cap = prompt + 300
    assert wanted > 300 + 64  # (the prompt's size may differ by the stack's name)
    ledger, windows = await _budget(aredis, maxTokens=cap)
    engine = make_engine(aredis, budgets=NamespaceBudgets(aredis))

    await engine.execute(request(1, stack=STACKS[0]))

    first = fake_llm.requests[0].body
    asked = int(first["max_tokens"])
    assert 32 <= asked < wanted
    assert prompt_bound(first["messages"]) + asked <= cap
    spend = (await ledger.spent(windows, now=time.time()))["cap"]
    assert spend.tokens == 15 * len(fake_llm.requests)  # settled at what was used
    assert spend.held_tokens == 0


async def test_a_dollar_cap_refuses_a_model_without_a_price_without_calling_it(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    spec = openai_spec(fake_llm, model={"provider": "openai", "name": "house-model"})
    await publish(aredis, spec, stack=STACKS[0])
    await _budget(aredis, maxCostUSD=5)
    engine = make_engine(aredis, budgets=NamespaceBudgets(aredis))

    result = (await engine.execute(request(1, stack=STACKS[0]))).result

    assert result is not None
    assert result.outcome is Outcome.FAILED
    (first, *_rest) = await _trace_costs(aredis, STACKS[0])
    assert first["reason"] == "UnpricedModel"
    assert fake_llm.requests == []


async def test_a_namespace_without_a_budget_writes_no_ledger(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    fake_llm.add_rule(Reply(QUIET), repeat_last=True)
    await publish(aredis, openai_spec(fake_llm), stack=STACKS[0])
    engine = make_engine(aredis, budgets=NamespaceBudgets(aredis))

    result = (await engine.execute(request(1, stack=STACKS[0]))).result

    assert result is not None
    assert result.outcome is Outcome.SUCCEEDED
    keys = NamespaceKeys(NAMESPACE)
    for key in (keys.budgets, keys.spend, keys.holds, keys.held):
        assert not await aredis.exists(key)
