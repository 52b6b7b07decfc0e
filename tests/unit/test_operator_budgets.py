"""The operator's keeper of namespace budgets, against fakes of the API server and the
ledgers: what it publishes, the status and Events it writes, and the verdict each stack
gets (held, throttled, resumed). The ledger itself is tested against real Redis
(``tests/integration/test_ledger*.py``), the whole end to end
(``tests/e2e/test_namespace_budget.py``)."""

from __future__ import annotations

from typing import Any
from unittest.mock import ANY

import pytest

from agentstack_core.keys import StackRef
from agentstack_core.namespacebudget import Level
from agentstack_core.pricing import nanos
from agentstack_core.redis.ledger import Spend
from agentstack_core.spec import parse_spec
from agentstack_operator.budgets import BudgetKeeper
from agentstack_operator.stackstate import StackRecord, conditions_for, phase_for
from tests.unit.operator_fakes import FakeKube, FakeLedgers

pytestmark = pytest.mark.asyncio
NOW = 1_796_860_800.0  # 2026-12-10, UTC


def _budget(namespace: str, name: str, spec: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": f"uid-{name}",
            "generation": generation,
        },
        "spec": spec,
    }


class World:
    def __init__(self) -> None:
        self.api = FakeKube()
        self.ledgers = FakeLedgers()
        self.records = {
            ref: StackRecord(ref=ref, uid=str(ref))
            for ref in (StackRef("team-a", "one"), StackRef("team-a", "two"), StackRef("b", "x"))
        }
        self.changes: list[tuple[str, bool]] = []
        self.now = NOW
        self.keeper = BudgetKeeper(
            self.api,
            self.ledgers,
            stacks=self.records.values,
            changed=lambda record, resumed: self.changes.append((str(record.ref), resumed)),
            clock=lambda: self.now,
        )

    def spend(self, dollars: float, budget: str = "monthly") -> None:
        self.ledgers.spend[("team-a", budget)] = Spend(nanos(dollars), 100, 3, 0, 0, 0)


@pytest.fixture
def world() -> World:
    world = World()
    world.keeper.seen(_budget("team-a", "monthly", {"maxCostUSD": 10}))
    return world


async def test_budgets_are_published_once_and_again_only_when_they_change(world: World) -> None:
    await world.keeper.step()
    await world.keeper.step()
    assert world.ledgers.publications == 1
    assert world.ledgers.published["team-a"] == {
        "monthly": {"maxCost": str(nanos(10)), "period": "Month", "timeZone": "UTC"}
    }
    world.keeper.seen(_budget("team-a", "monthly", {"maxCostUSD": 20}, generation=2))
    await world.keeper.step()
    assert world.ledgers.published["team-a"]["monthly"]["maxCost"] == str(nanos(20))
    world.keeper.gone("team-a", "monthly")
    await world.keeper.step()
    assert world.ledgers.published["team-a"] == {}
    publications = world.ledgers.publications
    await world.keeper.step()
    assert world.ledgers.publications == publications  # nothing left to publish


async def test_status_is_written_when_it_moves_and_events_when_the_level_does(
    world: World,
) -> None:
    await world.keeper.step()
    status = world.api.budget_status[("team-a", "monthly")]
    assert (status["level"], status["spentUSD"], status["window"]) == ("Ok", "0.000000", "2026-12")
    assert status["stacks"] == 2  # the namespace's, not the other one's
    assert world.api.budget_events == []  # a new budget within its caps: nothing to tell
    writes = world.api.budget_writes
    await world.keeper.step()
    assert world.api.budget_writes == writes  # unchanged: not written again

    world.spend(8.5)
    await world.keeper.step()
    status = world.api.budget_status[("team-a", "monthly")]
    assert (status["level"], status["spentUSD"], status["percent"]) == ("Warning", "8.500000", 85)
    warning = {c["type"]: c for c in status["conditions"]}["Warning"]
    assert warning["status"] == "True"
    assert "AgentBudget monthly" in warning["message"]
    assert [(n, r, w) for n, r, _m, w in world.api.budget_events] == [
        ("monthly", "NamespaceBudgetWarning", True)
    ]
    world.spend(10)
    await world.keeper.step()
    assert world.api.budget_events[-1][1] == "NamespaceBudgetExceeded"


async def test_an_exceeded_budget_holds_every_stack_of_its_namespace_until_it_rolls_over(
    world: World,
) -> None:
    one, two, other = world.records.values()
    await world.keeper.step()
    world.spend(10)
    await world.keeper.step()
    for record in (one, two):
        assert record.hold is not None
        assert "AgentBudget monthly" in record.hold.message
        assert phase_for(record) == "BudgetExceeded"
        budget = {c["type"]: c for c in conditions_for(record, NOW)}["BudgetExceeded"]
        assert (budget["status"], budget["reason"]) == ("True", "NamespaceBudgetSpent")
    assert other.hold is None
    assert other.namespace_budget is None
    assert world.changes == [("team-a/one", False), ("team-a/two", False)]

    # The month rolls over: the new window has spent nothing.
    world.now = NOW + 40 * 86400
    world.ledgers.spend.clear()
    await world.keeper.step()
    assert one.hold is None
    assert one.namespace_budget is None
    assert world.changes[-2:] == [("team-a/one", True), ("team-a/two", True)]
    assert world.api.budget_events[-1][1] == "NamespaceBudgetOk"


async def test_a_throttled_namespace_stretches_its_stacks_intervals(world: World) -> None:
    one = world.records[StackRef("team-a", "one")]
    base = one.interval
    world.spend(9.5)
    await world.keeper.step()
    assert one.interval == 2 * base
    assert one.hold is None
    budget = {c["type"]: c for c in conditions_for(one, NOW)}["BudgetExceeded"]
    assert (budget["status"], budget["reason"]) == ("False", "NamespaceBudgetThrottled")


async def test_the_furthest_spent_budget_decides(world: World) -> None:
    world.keeper.seen(_budget("team-a", "daily", {"maxCostUSD": 1, "window": {"calendar": "Day"}}))
    world.spend(1, budget="daily")
    world.spend(1)  # 10 % of the monthly one
    await world.keeper.step()
    verdict = world.records[StackRef("team-a", "one")].namespace_budget
    assert verdict is not None
    assert (verdict.budget, verdict.level) == ("daily", Level.EXCEEDED)


async def test_a_budget_the_operator_cannot_keep_says_why_and_is_not_published(
    world: World,
) -> None:
    world.keeper.seen(_budget("team-a", "monthly", {"maxTokens": 5, "window": {"timeZone": "X/Y"}}))
    await world.keeper.step()
    assert world.ledgers.published.get("team-a", {}) == {}
    ready = world.api.budget_status[("team-a", "monthly")]["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "InvalidSpec")
    assert "unknown time zone" in ready["message"]
    assert world.records[StackRef("team-a", "one")].namespace_budget is None


async def test_a_quota_of_stacks_is_a_resource_quota_owned_by_its_budget(world: World) -> None:
    world.keeper.seen(_budget("team-a", "monthly", {"maxCostUSD": 10, "quota": {"maxStacks": 3}}))
    await world.keeper.step()
    await world.keeper.step()
    assert world.api.quotas == {("team-a", "agentbudget-monthly"): (("monthly", "uid-monthly"), 3)}
    assert world.api.quota_writes == 1  # unchanged: not written again
    world.keeper.seen(_budget("team-a", "monthly", {"maxCostUSD": 10}, generation=2))
    await world.keeper.step()
    assert world.api.quotas == {}


async def test_a_quota_of_ticks_stretches_every_stack_of_the_namespace_alike(
    world: World,
) -> None:
    """Three stacks (two here, one elsewhere) at the default interval; the namespace may
    ask for half of what its two ask for together."""
    one, two, other = world.records.values()
    for record in world.records.values():
        record.spec = parse_spec({"goal": "g", "tickIntervalSeconds": 10})
    world.keeper.seen(_budget("team-a", "rate", {"quota": {"maxTicksPerSecond": 0.1}}))
    await world.keeper.step()
    assert world.ledgers.published.get("team-a", {}) == {"monthly": ANY}  # quota: no ledger
    quota_only = world.api.budget_status[("team-a", "rate")]
    assert quota_only["stacks"] == 2
    assert quota_only["conditions"][0]["status"] == "True"
    assert quota_only["conditions"][0]["message"] == "a quota, with no spending cap"
    assert (one.interval, two.interval, other.interval) == (20, 20, 10)
    budget = {c["type"]: c for c in conditions_for(one, NOW)}["BudgetExceeded"]
    assert (budget["status"], budget["reason"]) == ("False", "NamespaceQuotaThrottled")
    assert "0.2 ticks/s, its quota allows 0.1: every interval stretched 2x" in budget["message"]
    assert one.hold is None


async def test_a_namespace_fair_share_is_its_budgets_largest_weight(world: World) -> None:
    assert world.keeper.weight("team-a") == 1  # a budget without a weight: the default
    world.keeper.seen(_budget("team-a", "share", {"fairShare": {"weight": 4}}))
    world.keeper.seen(_budget("team-a", "more", {"fairShare": {"weight": 7}}))
    world.keeper.seen(_budget("team-a", "broken", {"fairShare": {"weight": 5000}}))
    assert world.keeper.weight("team-a") == 7  # the invalid one gives nothing
    world.keeper.gone("team-a", "more")
    assert (world.keeper.weight("team-a"), world.keeper.weight("elsewhere")) == (4, 1)


async def test_a_namespace_concurrency_is_its_budgets_smallest_quota(world: World) -> None:
    assert world.keeper.concurrency("team-a") is None  # no budget says: no limit
    world.keeper.seen(_budget("team-a", "wide", {"quota": {"maxConcurrentTicks": 10}}))
    world.keeper.seen(_budget("team-a", "narrow", {"quota": {"maxConcurrentTicks": 3}}))
    assert world.keeper.concurrency("team-a") == 3
    assert world.keeper.concurrency("elsewhere") is None


async def test_a_budget_without_a_cap_says_what_it_keeps(world: World) -> None:
    world.keeper.seen(_budget("team-a", "share", {"fairShare": {"weight": 2}}))
    both = {"fairShare": {"weight": 2}, "quota": {"maxConcurrentTicks": 3}}
    world.keeper.seen(_budget("team-a", "both", both))
    await world.keeper.step()
    messages = {
        name: world.api.budget_status[("team-a", name)]["conditions"][0]["message"]
        for name in ("share", "both")
    }
    assert messages == {
        "share": "a fair share, with no spending cap",
        "both": "a quota and a fair share, with no spending cap",
    }
