"""The namespace ledger in a real redis-server against a model of it in plain Python:
whatever the order of holds, settles (within their worst case or beyond it), retries,
clock jumps past expiries, budgets published, changed and removed, window changes,
reads and prunes, Redis holds exactly the counters and holds the model does.

And the promise the ledger exists for: a window's charged spend plus what is held in it
never exceeds the limit its last hold was granted under, but by what settles since then
charged beyond their own worst case — so with every actual cost within its worst case,
no limit is ever exceeded. (Not "by the largest single excess": holds granted together
may all settle beyond their worst case, and their excesses add up.)
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from agentstack_core.connection import connect
from agentstack_core.redis.ledger import (
    COUNTERS,
    Held,
    HoldAnswer,
    NamespaceLedger,
    Refused,
    Spend,
    Stale,
    Unbudgeted,
)
from agentstack_devkit.redisserver import RedisServer

BUDGETS = ("a", "b", "c")
WINDOWS = ("w1", "w2")
LIMITS = st.tuples(
    st.one_of(st.none(), st.integers(0, 400)),  # nano-dollars
    st.one_of(st.none(), st.integers(0, 40)),  # tokens
)
Limits = tuple[int | None, int | None]
KINDS = ("cost", "tokens")
"""What a budget limits, in the order of :data:`Limits`."""
TTLS = (5.0, 20.0)
"""Advancing the clock by these too brings a hold to its expiry exactly (not yet
expired), then past it."""


@dataclass
class ModelHold:
    cost: int
    tokens: int
    windows: dict[str, str]
    expires: float


@dataclass
class Grant:
    """What a window was last granted a hold under, and the excess settled since."""

    limits: Limits
    excess: list[int] = field(default_factory=lambda: [0, 0])


class LedgerModel:
    """The ledger's rules, restated in Python over plain dicts."""

    def __init__(self) -> None:
        self.published: dict[str, Limits] = {}
        self.spend: dict[str, int] = {}
        self.holds: dict[str, ModelHold] = {}
        self.grants: dict[tuple[str, str], Grant] = {}

    def bump(self, budget: str, window: str, counter: str, amount: int) -> None:
        name = f"{budget}|{window}|{counter}"
        self.spend[name] = self.spend.get(name, 0) + amount

    def count(self, budget: str, window: str, counter: str) -> int:
        return self.spend.get(f"{budget}|{window}|{counter}", 0)

    def release(self, hold_id: str, cost: int, tokens: int, *, unsettled: bool) -> None:
        hold = self.holds.pop(hold_id)
        for budget, window in hold.windows.items():
            self.bump(budget, window, "held_cost", -hold.cost)
            self.bump(budget, window, "held_tokens", -hold.tokens)
            self.bump(budget, window, "cost", cost)
            self.bump(budget, window, "tokens", tokens)
            self.bump(budget, window, "calls", 1)
            if unsettled:
                self.bump(budget, window, "unsettled", 1)
            grant = self.grants[budget, window]
            grant.excess[0] += max(0, cost - hold.cost)
            grant.excess[1] += max(0, tokens - hold.tokens)

    def charge_expired(self, now: float) -> None:
        for hold_id in sorted(self.holds):
            hold = self.holds[hold_id]
            if hold.expires < now:
                self.release(hold_id, hold.cost, hold.tokens, unsettled=True)

    def hold(
        self, hold_id: str, windows: dict[str, str], cost: int, tokens: int, now: float, ttl: float
    ) -> HoldAnswer:
        self.charge_expired(now)
        if hold_id in self.holds:
            return Held(hold_id)
        if set(windows) != set(self.published):
            return Stale(tuple(sorted(self.published)))
        if not windows:
            return Unbudgeted()
        for budget in sorted(windows):
            rooms = [self.room_in(budget, windows[budget], kind) for kind in KINDS]
            if any(
                room is not None and ask > room
                for room, ask in zip(rooms, (cost, tokens), strict=True)
            ):
                room_cost, room_tokens = (None if r is None else max(0, r) for r in rooms)
                return Refused(budget, windows[budget], room_cost, room_tokens)
        self.holds[hold_id] = ModelHold(cost, tokens, dict(windows), now + ttl)
        for budget, window in windows.items():
            self.bump(budget, window, "held_cost", cost)
            self.bump(budget, window, "held_tokens", tokens)
            self.grants[budget, window] = Grant(self.published[budget])
        return Held(hold_id)

    def room_in(self, budget: str, window: str, kind: str) -> int | None:
        """What a budget's window has left of ``kind`` (``None``: it limits none)."""
        limit = self.published[budget][KINDS.index(kind)]
        if limit is None:
            return None
        return limit - self.count(budget, window, kind) - self.count(budget, window, f"held_{kind}")

    def room(self, windows: dict[str, str], kind: str) -> int | None:
        """The least any of ``windows`` has left of ``kind`` (``None``: none limits it)."""
        rooms = [self.room_in(b, w, kind) for b, w in windows.items()]
        return min((room for room in rooms if room is not None), default=None)

    def settle(self, hold_id: str, cost: int, tokens: int, now: float) -> bool:
        self.charge_expired(now)
        if hold_id not in self.holds:
            return False
        self.release(hold_id, cost, tokens, unsettled=False)
        return True

    def prune(self, keep: dict[str, list[str]]) -> int:
        kept = {(b, w) for b, windows in keep.items() for w in windows}
        kept |= {(b, w) for hold in self.holds.values() for b, w in hold.windows.items()}
        gone = [name for name in self.spend if tuple(name.split("|")[:2]) not in kept]
        for name in gone:
            del self.spend[name]
        return len(gone)


class LedgerMachine(RuleBasedStateMachine):
    """One namespace's ledger in Redis, and its model, driven alike."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.client: Any = connect(url)
        self.ledger = NamespaceLedger(self.client, f"team-{uuid.uuid4().hex[:8]}")
        self.model = LedgerModel()
        self.windows = dict.fromkeys(BUDGETS, WINDOWS[0])
        self.now = 1_000.0
        self.ids: list[str] = []

    def run(self, call: Any) -> Any:
        return self.loop.run_until_complete(call)

    def teardown(self) -> None:
        keys = self.ledger.keys
        self.run(self.client.delete(keys.budgets, keys.spend, keys.holds, keys.held))
        self.run(self.client.aclose())
        self.loop.close()

    def published_windows(self) -> dict[str, str]:
        return {budget: self.windows[budget] for budget in self.model.published}

    @initialize(budgets=st.dictionaries(st.sampled_from(BUDGETS), LIMITS, min_size=1))
    def start(self, budgets: dict[str, Limits]) -> None:
        self.publish(budgets)

    @rule(budgets=st.dictionaries(st.sampled_from(BUDGETS), LIMITS))
    def publish(self, budgets: dict[str, Limits]) -> None:
        """Publish ``budgets`` in place of all: limits changed, budgets added, removed."""
        definitions = {
            name: {
                key: str(value)
                for key, value in zip(("maxCost", "maxTokens"), limits, strict=True)
                if value is not None
            }
            for name, limits in budgets.items()
        }
        self.run(self.ledger.publish(definitions))
        self.model.published = dict(budgets)

    @rule(budget=st.sampled_from(BUDGETS), window=st.sampled_from(WINDOWS))
    def change_window(self, budget: str, window: str) -> None:
        self.windows[budget] = window

    def amount(self, data: st.DataObject, fit: str, windows: dict[str, str], kind: str) -> int:
        """A worst case to hold: any, or one that fits exactly what the fullest window
        has left of ``kind``, or one more than that (a refusal's edge)."""
        room = self.model.room(windows, kind)
        if fit == "any" or room is None:
            return data.draw(st.integers(0, 150 if kind == "cost" else 15), label=kind)
        return max(0, room) + (fit == "one more")

    def ask(
        self, data: st.DataObject, windows: dict[str, str], cost: int, tokens: int, ttl: float
    ) -> None:
        """Hold under a new id, or again under one of the latest (a retry)."""
        fresh = f"h{len(self.ids)}"
        hold_id = data.draw(st.sampled_from([fresh, *self.ids[-3:]]), label="hold id")
        answer = self.run(self.ledger.hold(hold_id, windows, cost, tokens, now=self.now, ttl=ttl))
        assert answer == self.model.hold(hold_id, windows, cost, tokens, self.now, ttl)
        if hold_id == fresh:
            self.ids.append(fresh)

    @rule(
        data=st.data(),
        fit=st.sampled_from(["any", "exactly", "one more"]),
        ttl=st.sampled_from(TTLS),
    )
    def hold(self, data: st.DataObject, fit: str, ttl: float) -> None:
        windows = self.published_windows()
        cost, tokens = (self.amount(data, fit, windows, kind) for kind in ("cost", "tokens"))
        self.ask(data, windows, cost, tokens, ttl)

    @rule(data=st.data(), budget=st.sampled_from(BUDGETS))
    def hold_with_a_stale_view(self, data: st.DataObject, budget: str) -> None:
        """A runner whose view of the budgets misses one published, or still has one
        removed."""
        windows = self.published_windows()
        if budget in windows:
            del windows[budget]
        else:
            windows[budget] = self.windows[budget]
        self.ask(data, windows, 10, 1, TTLS[0])

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), within=st.booleans())
    def settle(self, data: st.DataObject, within: bool) -> None:
        hold_id = data.draw(st.sampled_from(self.ids), label="hold id")
        hold = self.model.holds.get(hold_id)
        worst = (hold.cost, hold.tokens) if hold else (100, 10)
        if within:  # what a provider counts, within the bound the hold was taken for
            cost, tokens = (data.draw(st.integers(0, bound), label="actual") for bound in worst)
        else:  # a provider counting more than the bound
            cost, tokens = (
                bound + data.draw(st.integers(1, 50), label="excess") for bound in worst
            )
        settled = self.run(self.ledger.settle(hold_id, cost, tokens, now=self.now))
        assert settled == self.model.settle(hold_id, cost, tokens, self.now)

    @rule(seconds=st.sampled_from([0.0, 1.0, *TTLS]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def read_spent(self) -> None:
        spent = self.run(self.ledger.spent(self.windows, now=self.now))
        self.model.charge_expired(self.now)
        assert spent == {
            budget: Spend(*(self.model.count(budget, window, c) for c in COUNTERS))
            for budget, window in self.windows.items()
        }

    @rule()
    def prune(self) -> None:
        keep = {budget: [self.windows[budget]] for budget in self.model.published}
        assert self.run(self.ledger.prune(keep)) == self.model.prune(keep)

    @invariant()
    def redis_holds_what_the_model_does(self) -> None:
        keys = self.ledger.keys
        spend = self.run(self.client.hgetall(keys.spend))
        assert {name: int(value) for name, value in spend.items()} == self.model.spend
        expiries = dict(self.run(self.client.zrange(keys.holds, 0, -1, withscores=True)))
        held = self.run(self.client.hgetall(keys.held))
        assert expiries == {hold_id: h.expires for hold_id, h in self.model.holds.items()}
        assert {hold_id: json.loads(text) for hold_id, text in held.items()} == {
            hold_id: {"cost": str(h.cost), "tokens": str(h.tokens), "windows": h.windows}
            for hold_id, h in self.model.holds.items()
        }

    @invariant()
    def no_window_is_spent_beyond_its_limit_but_by_settles_beyond_their_worst_case(
        self,
    ) -> None:
        spend = self.run(self.client.hgetall(self.ledger.keys.spend))
        for (budget, window), grant in self.model.grants.items():
            for limit, excess, kind in zip(grant.limits, grant.excess, KINDS, strict=True):
                if limit is not None:
                    charged, held = (
                        int(spend.get(f"{budget}|{window}|{counter}", 0))
                        for counter in (kind, f"held_{kind}")
                    )
                    assert charged + held <= limit + excess


def test_the_ledger_keeps_its_model_and_its_limits(redis_server: RedisServer) -> None:
    run_state_machine_as_test(
        lambda: LedgerMachine(redis_server.url),
        settings=settings(max_examples=100, stateful_step_count=30, deadline=None),
    )
