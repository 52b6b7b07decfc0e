"""A namespace's budget ledger: what every runner holds and spends, kept before each call.

A platform sets budgets per namespace ("team-a may spend $200 a month"), and every
stack of the namespace, on every runner, spends from them. So the check cannot be a
runner's own sum, nor a read followed by a write: two runners reading the same room
would both spend it. Each LLM call instead takes a *hold* first, in one Lua script on
the namespace's one slot (:class:`~agentstack_core.keys.NamespaceKeys`):

1. :meth:`NamespaceLedger.hold` — the call's worst case (nano-dollars and tokens, see
   :mod:`agentstack_core.pricing`) is held in the caller's window of every published
   budget, if it fits in each beside what is charged and what other calls hold. A hold
   that does not fit is :class:`Refused`; the call must not be made.
2. The call is made.
3. :meth:`NamespaceLedger.settle` — the hold ends, and what the call actually cost is
   charged (one call more in every window it held against).

Since every call's worst case is held before it starts, concurrent runners never
overspend a budget together; only settles beyond their own worst case (a provider that
counted more than the bound) can take a window past its limit, by their excess. A hold
whose runner died mid-call expires, and is charged at its worst case (``unsettled``
counts those): the provider may have billed the call.

The caller names the window of each budget (``2026-12-07``, ``2026-W49``: the budget's
own calendar, :mod:`agentstack_core.namespacebudget`); the ledger keeps one set of
counters per budget and window and never computes a calendar, so a new window starts
at zero without anything being reset, and :meth:`NamespaceLedger.prune` drops the old.
The caller must name a window for exactly the published budgets: a budget it does not
know of would go unchecked, so any difference is :class:`Stale` and the caller re-reads
the budgets (:meth:`NamespaceLedger.published`) and asks again.

The rules themselves live in the scripts beside this module (``ledger_*.lua``); this
module checks what crosses to them and reads their replies.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentstack_core.keys import NamespaceKeys
from agentstack_core.protocol import RedisClient
from agentstack_core.redis.script import LuaScript

SEPARATOR = "|"
"""Between a budget, a window and a counter in a spend field: in neither a budget's name
nor a window id, so every field splits back into its parts."""
COUNTERS = (
    "cost",
    "tokens",
    "calls",
    "held_cost",
    "held_tokens",
    "unsettled",
    "needed_cost",
    "needed_tokens",
)
"""The counters of one budget's window, in the order the ``ledger_spent`` script
replies them (:class:`Spend`)."""


@dataclass(frozen=True)
class BudgetLimits:
    """What a published budget limits, as the hold script reads it from the definition
    (decimal text; absent: no limit of that kind)."""

    max_cost: str | None = field(default=None, metadata={"key": "maxCost"})
    """Nano-dollars."""
    max_tokens: str | None = field(default=None, metadata={"key": "maxTokens"})


@dataclass(frozen=True)
class HoldRecord:
    """A hold as the ``held`` hash keeps it (JSON): its worst case and its windows."""

    cost: str
    tokens: str
    windows: Mapping[str, str]
    """Budget name → the window id it holds against."""


@dataclass(frozen=True)
class Held:
    """The hold was taken (or had been, by an earlier try with the same id): make the
    call, then settle it."""

    hold_id: str


@dataclass(frozen=True)
class Refused:
    """The worst case does not fit: nothing was held, and the call must not be made."""

    budget: str
    """The first budget (by name) it does not fit in."""
    window: str
    room_cost: int | None
    """Nano-dollars left in that budget's window, with what is charged and held counted
    (0 when past its limit); ``None``: the budget caps no dollars."""
    room_tokens: int | None


@dataclass(frozen=True)
class Stale:
    """The budgets the caller named are not the ones published: nothing was held; read
    them again and retry."""

    published: tuple[str, ...]
    """The names published, sorted."""


@dataclass(frozen=True)
class Unbudgeted:
    """No budget is published, and the caller named none: there is nothing to keep,
    nothing was held, and there is nothing to settle (a settle would answer ``False``)."""


@dataclass(frozen=True)
class Spend:
    """The counters of one budget's window (nano-dollars and tokens)."""

    cost: int
    tokens: int
    calls: int
    held_cost: int
    held_tokens: int
    unsettled: int
    """Calls charged at their worst case: their hold expired before a settle came."""
    needed_cost: int = 0
    """The largest worst case of a smallest call refused in the window (a hold asked
    with ``needed``): while less than this is left, no call fits."""
    needed_tokens: int = 0


HoldAnswer = Held | Refused | Stale | Unbudgeted


@dataclass(frozen=True)
class _Publish:
    budgets: Mapping[str, str]
    """Budget name → definition as JSON."""


@dataclass(frozen=True)
class _Hold:
    hold_id: str
    windows: Mapping[str, str]
    cost: int
    tokens: int
    now: float
    expires: float
    needed: bool


@dataclass(frozen=True)
class _Settle:
    hold_id: str
    cost: int
    tokens: int
    now: float


@dataclass(frozen=True)
class _Spent:
    windows: Mapping[str, str]
    now: float


@dataclass(frozen=True)
class _Prune:
    keep: Mapping[str, str]
    """Budget name → JSON list of the window ids to keep."""


def _charging(
    name: str,
    args: type[Any],
    *,
    budgets: bool = False,
    records: Mapping[str, type[Any]] | None = None,
    durable: bool = False,
) -> LuaScript:
    """A script that charges the expired holds first (``ledger_holds.lua``), and so takes
    the counters, the holds and their records (and the budgets, with ``budgets``)."""
    return LuaScript(
        __file__,
        name,
        keys=(*(("budgets",) if budgets else ()), "spend", "holds", "held"),
        args=args,
        libs=("ledger_holds",),
        records={"hold": HoldRecord, **(records or {})},
        durable=durable,
    )


_PUBLISH = LuaScript(__file__, "ledger_publish", keys=("budgets",), args=_Publish)
_HOLD = _charging(
    "ledger_hold",
    _Hold,
    budgets=True,
    records={"limits": BudgetLimits},
    durable=True,  # a runner makes a paid call on its answer: a lost hold is overspend
)
_SETTLE = _charging("ledger_settle", _Settle)
_SPENT = _charging("ledger_spent", _Spent)
_PRUNE = LuaScript(
    __file__,
    "ledger_prune",
    keys=("spend", "held"),
    args=_Prune,
    records={"hold": HoldRecord},
)


def check_name(kind: str, name: str) -> str:
    """``name`` (a budget's or a window's), if it can be part of a spend field."""
    if not name or SEPARATOR in name:
        raise ValueError(f"a {kind} is non-empty and has no {SEPARATOR!r}: {name!r}")
    return name


def check_amount(kind: str, amount: int) -> int:
    """``amount`` if it is a count the ledger can add (a non-negative integer)."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValueError(f"{kind} is a non-negative integer: {amount!r}")
    return amount


def check_windows(windows: Mapping[str, str]) -> dict[str, str]:
    """``windows`` (budget name → window id), each name fit for a spend field."""
    return {check_name("budget", b): check_name("window", w) for b, w in windows.items()}


def definition_text(name: str, definition: Mapping[str, str]) -> str:
    """A budget's definition as the ledger publishes it (JSON, keys sorted), once its
    limits are decimal text of non-negative integers — the hold script compares them
    with ``tonumber``, which would make anything else ``nil`` and fail every hold."""
    check_name("budget", name)
    for limit in (f.metadata["key"] for f in dataclasses.fields(BudgetLimits)):
        text = definition.get(limit)
        if text is not None and not (isinstance(text, str) and text.isascii() and text.isdigit()):
            raise ValueError(f"budget {name!r}: {limit} is decimal text, got {text!r}")
    return json.dumps(dict(definition), sort_keys=True)


def hold_answer(hold_id: str, reply: list[Any]) -> HoldAnswer:
    """What the hold script's reply means."""
    kind = reply[0]
    if kind == "held":
        return Held(hold_id)
    if kind == "refused":
        _, budget, window, room_cost, room_tokens = reply
        return Refused(
            budget=budget,
            window=window,
            room_cost=None if room_cost is None else int(room_cost),
            room_tokens=None if room_tokens is None else int(room_tokens),
        )
    if kind == "stale":
        return Stale(published=tuple(reply[1:]))
    if kind == "unbudgeted":
        return Unbudgeted()
    raise ValueError(f"unexpected reply of ledger_hold: {reply!r}")


def spend_of(reply: list[Any]) -> dict[str, Spend]:
    """The spent script's reply (budget then its counters, for each budget) by budget."""
    width = 1 + len(COUNTERS)
    spent = {}
    for at in range(0, len(reply), width):
        budget, *counts = reply[at : at + width]
        spent[budget] = Spend(*(int(count or 0) for count in counts))
    return spent


class NamespaceLedger:
    """The budget ledger of one namespace, shared by every runner and the operator."""

    def __init__(self, client: RedisClient, namespace: str) -> None:
        self.client = client
        self.keys = NamespaceKeys(namespace)

    async def publish(self, budgets: Mapping[str, Mapping[str, str]]) -> None:
        """Make ``budgets`` (name → definition: ``maxCost`` in nano-dollars and
        ``maxTokens``, decimal text, each optional; other fields kept as they are) the
        namespace's budgets, replacing all of them at once: a budget left out is no
        longer checked. Holds outstanding stay as they were taken."""
        texts = {name: definition_text(name, d) for name, d in budgets.items()}
        await _PUBLISH(self.client, _Publish(budgets=texts), keys=self.keys)

    async def published(self) -> dict[str, dict[str, str]]:
        """The budgets published: name → definition."""
        redis: Any = self.client  # see RedisClient: redis-py's annotations don't fit
        raw: dict[str, str] = await redis.hgetall(self.keys.budgets)
        return {name: json.loads(text) for name, text in raw.items()}

    async def hold(
        self,
        hold_id: str,
        windows: Mapping[str, str],
        cost: int,
        tokens: int,
        *,
        now: float,
        ttl: float,
        needed: bool = False,
    ) -> HoldAnswer:
        """Hold a call's worst case (``cost`` nano-dollars, ``tokens``) in ``windows``
        (budget name → window id, one per published budget) until it is settled or
        ``ttl`` seconds after ``now``; holds that expired before ``now`` are charged
        first (``ledger_hold.lua`` has the rules).

        ``hold_id`` is the caller's, unique per call: asked again with the same id, a
        hold outstanding is :class:`Held` once. One asked again after it was settled or
        expired is a new hold (its call would be charged twice): retry only a hold
        whose answer was lost, well within its ``ttl``.

        ``needed``: the call is the smallest the caller could make, so a refusal records
        its worst case as what the window needs (:attr:`Spend.needed_cost`).

        With confirmed commits (:mod:`.durability`) a hold the replicas did not confirm
        raises :class:`~.errors.NotDurableError`: the call must not be made. If the hold
        outlived the failover it expires and is charged at its worst case — more than
        was spent, never less."""
        if not hold_id:
            raise ValueError("a hold id is non-empty")
        if ttl <= 0:
            raise ValueError(f"a hold's ttl is positive: {ttl!r}")
        args = _Hold(
            hold_id=hold_id,
            windows=check_windows(windows),
            cost=check_amount("cost", cost),
            tokens=check_amount("tokens", tokens),
            now=now,
            expires=now + ttl,
            needed=needed,
        )
        reply = await _HOLD(self.client, args, keys=self.keys)
        return hold_answer(hold_id, reply)

    async def settle(self, hold_id: str, cost: int, tokens: int, *, now: float) -> bool:
        """Charge what the held call actually cost (``cost`` nano-dollars, ``tokens``),
        ending its hold. ``False``: there is no such hold — settled already, or expired
        before ``now`` and charged at its worst case — and nothing was charged."""
        args = _Settle(
            hold_id=hold_id,
            cost=check_amount("cost", cost),
            tokens=check_amount("tokens", tokens),
            now=now,
        )
        return bool(await _SETTLE(self.client, args, keys=self.keys) == 1)

    async def spent(self, windows: Mapping[str, str], *, now: float) -> dict[str, Spend]:
        """The counters of each budget's window in ``windows`` (budget name → window
        id; any budgets, published or not), once holds expired before ``now`` are
        charged. A window nothing was charged in reads all zeros."""
        args = _Spent(windows=check_windows(windows), now=now)
        return spend_of(await _SPENT(self.client, args, keys=self.keys))

    async def prune(self, keep: Mapping[str, Collection[str]]) -> int:
        """Remove the counters of every window not in ``keep`` (budget name → the window
        ids to keep; a budget not named loses all of its windows), except windows an
        outstanding hold names. Returns the number of hash fields removed."""
        kept = {}
        for budget, windows in keep.items():
            if isinstance(windows, str):  # a str is a collection too: of one-letter windows
                raise TypeError(f"budget {budget!r}: the windows to keep are a collection")
            names = sorted(check_name("window", window) for window in windows)
            kept[check_name("budget", budget)] = json.dumps(names)
        args = _Prune(keep=kept)
        return int(await _PRUNE(self.client, args, keys=self.keys))
