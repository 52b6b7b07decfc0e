"""A namespace's budget ledger in a real Redis, standalone and Redis Cluster alike (every
script touches the namespace's keys only: on a cluster, one slot or ``CROSSSLOT``).

Each behaviour is read back where every runner would see it: the ``spend`` hash, the
``holds`` sorted set and the ``held`` hash of :class:`~agentstack_core.keys.NamespaceKeys`.
Time is an argument of every call, so expiry is a number passed, never a wait. The last
test is several runner processes racing for one small budget.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

import pytest

from agentstack_core.protocol import RedisClient
from agentstack_core.redis.ledger import (
    Held,
    NamespaceLedger,
    Refused,
    Spend,
    Stale,
    Unbudgeted,
)
from tests.integration.conftest import RedisBackend

pytestmark = pytest.mark.asyncio

NOW = 1_000_000.0
TTL = 60.0
DAY = "2026-12-07"
WEEK = "2026-W49"
BOTH = {"daily": DAY, "weekly": WEEK}
NOTHING = Spend(cost=0, tokens=0, calls=0, held_cost=0, held_tokens=0, unsettled=0)


async def _ledger(aredis: RedisClient, **budgets: dict[str, str]) -> NamespaceLedger:
    """The ledger of a namespace of its own, with ``budgets`` published."""
    ledger = NamespaceLedger(aredis, f"team-{uuid.uuid4().hex[:8]}")
    await ledger.publish(budgets)
    return ledger


async def _spend(aredis: RedisClient, ledger: NamespaceLedger) -> dict[str, int]:
    """The spend hash as Redis holds it: field → integer."""
    raw: dict[str, str] = await aredis.hgetall(ledger.keys.spend)  # type: ignore[misc]
    return {field: int(value) for field, value in raw.items()}


async def _holds(aredis: RedisClient, ledger: NamespaceLedger) -> dict[str, Any]:
    """Each outstanding hold: its expiry (the sorted set) and record (the hash)."""
    redis: Any = aredis
    expiries = dict(await redis.zrange(ledger.keys.holds, 0, -1, withscores=True))
    records = {k: json.loads(v) for k, v in (await redis.hgetall(ledger.keys.held)).items()}
    assert set(expiries) == set(records), "the sorted set and the hash name the same holds"
    return {hold: (expiries[hold], records[hold]) for hold in records}


async def test_a_hold_that_fits_is_held_in_the_window_of_every_budget(
    aredis: RedisClient,
) -> None:
    ledger = await _ledger(aredis, daily={"maxCost": "1000"}, weekly={"maxTokens": "500"})
    assert await ledger.hold("h1", BOTH, 300, 40, now=NOW, ttl=TTL) == Held("h1")
    assert await _spend(aredis, ledger) == {
        f"daily|{DAY}|held_cost": 300,
        f"daily|{DAY}|held_tokens": 40,
        f"weekly|{WEEK}|held_cost": 300,
        f"weekly|{WEEK}|held_tokens": 40,
    }
    assert await _holds(aredis, ledger) == {
        "h1": (NOW + TTL, {"cost": "300", "tokens": "40", "windows": BOTH})
    }


async def test_a_settle_charges_the_actual_cost_and_ends_the_hold(aredis: RedisClient) -> None:
    ledger = await _ledger(aredis, daily={"maxCost": "1000"}, weekly={"maxTokens": "500"})
    await ledger.hold("h1", BOTH, 300, 40, now=NOW, ttl=TTL)
    assert await ledger.settle("h1", 120, 25, now=NOW + 1) is True
    spent = Spend(cost=120, tokens=25, calls=1, held_cost=0, held_tokens=0, unsettled=0)
    assert await ledger.spent(BOTH, now=NOW + 1) == {"daily": spent, "weekly": spent}
    assert await _holds(aredis, ledger) == {}


async def test_a_settle_repeated_charges_once(aredis: RedisClient) -> None:
    ledger = await _ledger(aredis, daily={"maxCost": "1000"})
    await ledger.hold("h1", {"daily": DAY}, 300, 40, now=NOW, ttl=TTL)
    assert await ledger.settle("h1", 120, 25, now=NOW) is True
    before = await _spend(aredis, ledger)
    assert await ledger.settle("h1", 120, 25, now=NOW) is False
    assert await ledger.settle("never-held", 5, 5, now=NOW) is False
    assert await _spend(aredis, ledger) == before
    assert before[f"daily|{DAY}|calls"] == 1


async def test_a_hold_asked_again_is_held_once(aredis: RedisClient) -> None:
    ledger = await _ledger(aredis, daily={"maxCost": "1000"})
    assert await ledger.hold("h1", {"daily": DAY}, 300, 40, now=NOW, ttl=TTL) == Held("h1")
    assert await ledger.hold("h1", {"daily": DAY}, 300, 40, now=NOW + 1, ttl=TTL) == Held("h1")
    spend = await _spend(aredis, ledger)
    assert spend[f"daily|{DAY}|held_cost"] == 300
    [(expiry, _)] = (await _holds(aredis, ledger)).values()
    assert expiry == NOW + TTL  # the first hold's, not extended by the retry


async def test_a_hold_that_does_not_fit_is_refused_and_holds_nothing(
    aredis: RedisClient,
) -> None:
    ledger = await _ledger(aredis, daily={"maxCost": "1000", "maxTokens": "100"})
    await ledger.hold("first", {"daily": DAY}, 300, 10, now=NOW, ttl=TTL)
    await ledger.settle("first", 250, 10, now=NOW)
    await ledger.hold("second", {"daily": DAY}, 400, 10, now=NOW, ttl=TTL)
    before = await _spend(aredis, ledger)
    # 250 charged + 400 held + 351 asked > 1000: what is left counts both.
    answer = await ledger.hold("third", {"daily": DAY}, 351, 10, now=NOW, ttl=TTL)
    assert answer == Refused(budget="daily", window=DAY, room_cost=350, room_tokens=80)
    assert await _spend(aredis, ledger) == before
    assert set(await _holds(aredis, ledger)) == {"second"}
    # What is left fits exactly.
    assert await ledger.hold("fourth", {"daily": DAY}, 350, 80, now=NOW, ttl=TTL) == Held("fourth")


async def test_the_first_budget_by_name_that_a_hold_exceeds_refuses_it(
    aredis: RedisClient,
) -> None:
    ledger = await _ledger(
        aredis,
        b_tokens={"maxTokens": "10"},
        a_cost={"maxCost": "10"},
        c_free={"window": "Day"},  # limits nothing: never refuses
    )
    windows = {"a_cost": DAY, "b_tokens": DAY, "c_free": DAY}
    both = await ledger.hold("h", windows, 11, 11, now=NOW, ttl=TTL)
    assert both == Refused(budget="a_cost", window=DAY, room_cost=10, room_tokens=None)
    tokens = await ledger.hold("h", windows, 10, 11, now=NOW, ttl=TTL)
    assert tokens == Refused(budget="b_tokens", window=DAY, room_cost=None, room_tokens=10)
    assert await ledger.hold("h", windows, 10, 10, now=NOW, ttl=TTL) == Held("h")


async def test_windows_are_counted_apart(aredis: RedisClient) -> None:
    ledger = await _ledger(aredis, daily={"maxCost": "100"})
    await ledger.hold("monday", {"daily": "2026-12-07"}, 100, 0, now=NOW, ttl=TTL)
    assert isinstance(
        await ledger.hold("x", {"daily": "2026-12-07"}, 1, 0, now=NOW, ttl=TTL), Refused
    )
    tuesday = await ledger.hold("tuesday", {"daily": "2026-12-08"}, 100, 0, now=NOW, ttl=TTL)
    assert tuesday == Held("tuesday")


async def test_a_settle_beyond_the_worst_case_is_charged_and_fills_the_window(
    aredis: RedisClient,
) -> None:
    ledger = await _ledger(aredis, daily={"maxCost": "1000"})
    await ledger.hold("h1", {"daily": DAY}, 900, 0, now=NOW, ttl=TTL)
    assert await ledger.settle("h1", 1100, 0, now=NOW) is True  # the provider counted more
    assert (await ledger.spent({"daily": DAY}, now=NOW))["daily"].cost == 1100
    # Past the limit: even a free call is refused, and the room reads 0, not -100.
    answer = await ledger.hold("h2", {"daily": DAY}, 0, 0, now=NOW, ttl=TTL)
    assert answer == Refused(budget="daily", window=DAY, room_cost=0, room_tokens=None)


async def test_a_hold_naming_other_budgets_than_published_is_stale(aredis: RedisClient) -> None:
    ledger = await _ledger(aredis, daily={"maxCost": "1000"}, weekly={"maxCost": "5000"})
    for windows in ({"daily": DAY}, {**BOTH, "monthly": "2026-12"}, {"daily": DAY, "x": WEEK}):
        answer = await ledger.hold("h", windows, 1, 1, now=NOW, ttl=TTL)
        assert answer == Stale(published=("daily", "weekly"))
    assert await _spend(aredis, ledger) == {}
    assert await _holds(aredis, ledger) == {}


async def test_a_budget_removed_by_publish_is_no_longer_checked(aredis: RedisClient) -> None:
    ledger = await _ledger(aredis, daily={"maxCost": "1000"}, tight={"maxCost": "1"})
    windows = {"daily": DAY, "tight": DAY}
    assert isinstance(await ledger.hold("h", windows, 10, 0, now=NOW, ttl=TTL), Refused)
    await ledger.publish({"daily": {"maxCost": "1000", "window": "Day"}})
    assert await ledger.published() == {"daily": {"maxCost": "1000", "window": "Day"}}
    assert await ledger.hold("h", windows, 10, 0, now=NOW, ttl=TTL) == Stale(("daily",))
    assert await ledger.hold("h", {"daily": DAY}, 10, 0, now=NOW, ttl=TTL) == Held("h")
    assert await _spend(aredis, ledger) == {
        f"daily|{DAY}|held_cost": 10,
        f"daily|{DAY}|held_tokens": 0,
    }


async def test_without_budgets_a_hold_is_unbudgeted_and_writes_nothing(
    aredis: RedisClient,
) -> None:
    ledger = await _ledger(aredis)
    assert await ledger.hold("h", {}, 10, 10, now=NOW, ttl=TTL) == Unbudgeted()
    assert await ledger.hold("h", {"daily": DAY}, 10, 10, now=NOW, ttl=TTL) == Stale(())
    assert await ledger.settle("h", 10, 10, now=NOW) is False
    redis: Any = aredis
    assert await redis.exists(ledger.keys.budgets, ledger.keys.spend, ledger.keys.holds) == 0
    assert await redis.exists(ledger.keys.held) == 0


async def test_an_expired_hold_is_charged_at_its_worst_case_by_the_next_hold(
    aredis: RedisClient,
) -> None:
    ledger = await _ledger(aredis, daily={"maxCost": "1000"}, weekly={"maxCost": "1000"})
    await ledger.hold("dead", BOTH, 300, 40, now=NOW, ttl=TTL)
    await ledger.hold("live", BOTH, 100, 10, now=NOW + 30, ttl=TTL)
    # At its expiry exactly the hold still stands; after it, it is charged.
    await ledger.hold("probe", BOTH, 0, 0, now=NOW + TTL, ttl=TTL)
    assert set(await _holds(aredis, ledger)) == {"dead", "live", "probe"}
    await ledger.settle("probe", 0, 0, now=NOW + TTL)
    await ledger.hold("next", BOTH, 100, 10, now=NOW + TTL + 1, ttl=TTL)
    assert set(await _holds(aredis, ledger)) == {"live", "next"}
    charged = Spend(cost=300, tokens=40, calls=2, held_cost=200, held_tokens=20, unsettled=1)
    assert await ledger.spent(BOTH, now=NOW + TTL + 1) == {"daily": charged, "weekly": charged}
    # Its runner's settle, come too late, charges nothing more.
    assert await ledger.settle("dead", 10, 1, now=NOW + TTL + 2) is False
    assert (await ledger.spent(BOTH, now=NOW + TTL + 2))["daily"] == charged


async def test_a_settle_after_the_expiry_charges_the_worst_case_once(
    aredis: RedisClient,
) -> None:
    ledger = await _ledger(aredis, daily={"maxCost": "1000"})
    await ledger.hold("slow", {"daily": DAY}, 300, 40, now=NOW, ttl=TTL)
    assert await ledger.settle("slow", 10, 1, now=NOW + TTL + 1) is False
    assert await ledger.spent({"daily": DAY}, now=NOW + TTL + 1) == {
        "daily": Spend(cost=300, tokens=40, calls=1, held_cost=0, held_tokens=0, unsettled=1)
    }


async def test_reading_the_spend_charges_expired_holds_first(aredis: RedisClient) -> None:
    ledger = await _ledger(aredis, daily={"maxCost": "1000"})
    await ledger.hold("dead", {"daily": DAY}, 300, 40, now=NOW, ttl=TTL)
    held = Spend(cost=0, tokens=0, calls=0, held_cost=300, held_tokens=40, unsettled=0)
    assert await ledger.spent({"daily": DAY}, now=NOW + TTL) == {"daily": held}
    charged = Spend(cost=300, tokens=40, calls=1, held_cost=0, held_tokens=0, unsettled=1)
    assert await ledger.spent({"daily": DAY}, now=NOW + TTL + 1) == {"daily": charged}
    assert await _holds(aredis, ledger) == {}
    # Any budget and window may be read; one never charged reads zeros.
    assert await ledger.spent({"other": "2026-01-01"}, now=NOW) == {"other": NOTHING}


async def test_prune_removes_the_windows_not_kept_but_those_of_outstanding_holds(
    aredis: RedisClient,
) -> None:
    ledger = await _ledger(aredis, daily={"maxCost": "1000"}, weekly={"maxCost": "1000"})
    for day in ("2026-12-05", "2026-12-06", "2026-12-07"):
        windows = {"daily": day, "weekly": WEEK}
        await ledger.hold(day, windows, 10, 1, now=NOW, ttl=TTL)
        await ledger.settle(day, 10, 1, now=NOW)  # 5 fields in each window: no unsettled
    await ledger.hold("open", {"daily": "2026-12-06", "weekly": WEEK}, 10, 1, now=NOW, ttl=TTL)
    removed = await ledger.prune({"daily": ["2026-12-07"]})
    # 2026-12-05 goes; 2026-12-06 and the week stay while "open" holds against them.
    assert removed == 5
    assert {field.rsplit("|", 1)[0] for field in await _spend(aredis, ledger)} == {
        "daily|2026-12-06",
        "daily|2026-12-07",
        f"weekly|{WEEK}",
    }
    await ledger.settle("open", 10, 1, now=NOW)
    assert await ledger.prune({"daily": ["2026-12-07"]}) == 10
    assert {field.rsplit("|", 1)[0] for field in await _spend(aredis, ledger)} == {
        "daily|2026-12-07"
    }
    assert await ledger.prune({"daily": ["2026-12-07"]}) == 0
    assert await ledger.prune({}) == 5
    assert await _spend(aredis, ledger) == {}


RACER = """
import asyncio, json, random, sys
from agentstack_core.connection import connect
from agentstack_core.redis.ledger import Held, NamespaceLedger, Refused

async def race(url, cluster, namespace, worker, attempts, worst):
    client = connect(url, cluster=cluster == "true")
    ledger = NamespaceLedger(client, namespace)
    chance = random.Random(int(worker))
    counts = {"held": 0, "refused": 0}

    async def caller(lane):
        for attempt in range(int(attempts)):
            hold_id = f"{worker}-{lane}-{attempt}"
            answer = await ledger.hold(
                hold_id, {"tight": "w"}, int(worst), 1, now=1000.0, ttl=600.0
            )
            if isinstance(answer, Held):
                counts["held"] += 1
                actual = chance.randint(0, int(worst))
                assert await ledger.settle(hold_id, actual, 1, now=1000.0)
            else:
                assert isinstance(answer, Refused), answer
                counts["refused"] += 1

    await asyncio.gather(*(caller(lane) for lane in range(3)))
    await client.aclose()
    print(json.dumps(counts), flush=True)

asyncio.run(race(*sys.argv[1:]))
"""
"""A runner process: three calls at a time, each a hold of the worst case then (if held)
a settle of a random actual cost no greater."""


async def test_runner_processes_racing_never_overspend_together(
    aredis: RedisClient, redis_backend: RedisBackend
) -> None:
    worst, fit = 1_000_000, 50
    ledger = await _ledger(aredis, tight={"maxCost": str(worst * fit)})
    racers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            RACER,
            redis_backend.url,
            str(redis_backend.cluster).lower(),
            ledger.keys.namespace,
            str(worker),
            "60",
            str(worst),
            stdout=asyncio.subprocess.PIPE,
        )
        for worker in range(4)
    ]
    outputs = [await racer.communicate() for racer in racers]
    assert [racer.returncode for racer in racers] == [0] * len(racers)
    counts = [json.loads(out) for out, _ in outputs]
    held = sum(c["held"] for c in counts)
    refused = sum(c["refused"] for c in counts)
    assert held + refused == 4 * 3 * 60
    spent = (await ledger.spent({"tight": "w"}, now=1000.0))["tight"]
    assert spent.cost <= worst * fit
    assert spent.calls == held
    assert (spent.held_cost, spent.held_tokens, spent.unsettled) == (0, 0, 0)
    assert await _holds(aredis, ledger) == {}
    # The limit was reached, and not before its 50 worst cases were held: a refusal
    # means the held and charged sum exceeds 49 worst cases, which only 50 holds make.
    assert refused > 0
    assert held >= fit
