"""The namespaces' budgets (``AgentBudget``): published to their ledgers, read back,
reported, and applied to the namespaces' stacks.

Every replica keeps the budgets it watches (:meth:`BudgetKeeper.seen`,
:meth:`BudgetKeeper.gone`), so a standby that takes over knows them. The leader, every
:data:`CHECK_SECONDS`:

1. publishes each namespace's budgets to its ledger when they changed (the runners
   hold each call against what is published there: :mod:`agentstack_core.redis.ledger`);
2. reads each budget's current window back and weighs it
   (:func:`~agentstack_core.namespacebudget.standing`);
3. writes the budget's status when it moved, and posts an Event when its level did
   (warning, throttled, exceeded, back within budget);
4. gives each stack of the namespace the verdict of its furthest-spent budget
   (:attr:`~.stackstate.StackRecord.namespace_budget`): a throttled namespace's stacks
   wait longer between ticks, an exceeded one's are held (``BudgetExceeded``, naming the
   budget) until the window rolls over or the budget is raised; then they resume.

The runners, not this loop, keep the budget: the loop only reports and stops scheduling,
so a slow or absent leader never lets a namespace overspend.

Budgets carry no finalizer: a deleted one is dropped from the ledger by the next turn,
and nothing is left for ``helm uninstall`` or a namespace's deletion to wait on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentstack_core.namespacebudget import (
    BudgetSpec,
    BudgetSpecError,
    Level,
    NamespaceVerdict,
    Standing,
    Window,
    parse_budget,
    quota_factor,
    standing,
    worst,
)
from agentstack_core.pricing import format_usd
from agentstack_core.protocol import RedisClient
from agentstack_core.reasons import EventReason
from agentstack_core.redis.ledger import NamespaceLedger, Spend
from agentstack_operator import metrics
from agentstack_operator.fairshare import DEFAULT_WEIGHT
from agentstack_operator.stackstate import StackRecord, utc_timestamp

logger = logging.getLogger(__name__)

CHECK_SECONDS = 3.0
"""How often the leader reads every namespace's ledger (a level reached shows within
this; the runners keep the budget meanwhile)."""

LEVEL_EVENTS: dict[Level, tuple[EventReason, bool]] = {
    Level.OK: (EventReason.NAMESPACE_BUDGET_OK, False),
    Level.WARNING: (EventReason.NAMESPACE_BUDGET_WARNING, True),
    Level.THROTTLED: (EventReason.NAMESPACE_BUDGET_THROTTLED, True),
    Level.EXCEEDED: (EventReason.NAMESPACE_BUDGET_EXCEEDED, True),
}
"""The Event a budget reaching each level posts (its reason, and whether a warning)."""


class Ledgers(Protocol):
    """The namespaces' ledgers in Redis (:class:`RedisLedgers`)."""

    async def publish(self, namespace: str, budgets: Mapping[str, Mapping[str, str]]) -> None: ...

    async def spent(
        self, namespace: str, windows: Mapping[str, str], *, now: float
    ) -> dict[str, Spend]: ...

    async def prune(self, namespace: str, keep: Mapping[str, Collection[str]]) -> int: ...


class RedisLedgers:
    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis

    async def publish(self, namespace: str, budgets: Mapping[str, Mapping[str, str]]) -> None:
        await NamespaceLedger(self.redis, namespace).publish(budgets)

    async def spent(
        self, namespace: str, windows: Mapping[str, str], *, now: float
    ) -> dict[str, Spend]:
        return await NamespaceLedger(self.redis, namespace).spent(windows, now=now)

    async def prune(self, namespace: str, keep: Mapping[str, Collection[str]]) -> int:
        return await NamespaceLedger(self.redis, namespace).prune(keep)


class BudgetApi(Protocol):
    """The API server, as the keeper uses it (:class:`~.kube.Kube`)."""

    async def patch_budget_status(self, namespace: str, name: str, body: dict[str, Any]) -> bool:
        """Merge-patch a budget's status; ``False`` if it is gone."""
        ...

    async def post_budget_event(
        self, namespace: str, name: str, uid: str, reason: str, message: str, *, warning: bool
    ) -> None: ...

    async def keep_stack_quota(
        self, namespace: str, name: str, owner: tuple[str, str], max_stacks: int | None
    ) -> None:
        """Keep (or, with ``None``, delete) the ResourceQuota capping the stacks."""
        ...


@dataclass
class Kept:
    """One ``AgentBudget`` as the keeper knows it."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: BudgetSpec | None
    problem: str = ""
    """Why the spec cannot be kept (empty: it can)."""
    level: Level | None = None
    """The level last reported (``None``: none yet)."""
    written: dict[str, Any] = field(default_factory=dict)
    """The status last written (rewritten only when it differs)."""
    quota_written: tuple[int | None] | None = None
    """The ``maxStacks`` its ResourceQuota was last written with (``None``: not yet)."""


@dataclass(frozen=True)
class Reading:
    """A capping budget's current window as its ledger counts it."""

    standing: Standing
    spend: Spend
    window: Window


def budget_status(kept: Kept, stacks: int, reading: Reading | None) -> dict[str, Any]:
    """The ``/status`` body of a budget covering ``stacks`` stacks: its spend and level
    when it caps spending (``reading``), else that it is kept (a quota alone) or why it
    cannot be."""
    if kept.spec is None:
        return {
            "observedGeneration": kept.generation,
            "conditions": [_condition("Ready", "False", "InvalidSpec", kept.problem)],
        }
    if reading is None:
        spec = kept.spec
        quota = (spec.max_stacks, spec.max_ticks_per_second, spec.max_concurrent_ticks)
        kinds = [
            kind
            for kind, present in (
                ("a quota", any(limit is not None for limit in quota)),
                ("a fair share", spec.weight is not None),
            )
            if present
        ]
        message = f"{' and '.join(kinds)}, with no spending cap"
        return {
            "observedGeneration": kept.generation,
            "stacks": stacks,
            "conditions": [_condition("Ready", "True", "Kept", message)],
        }
    level, spend, window = reading.standing.level, reading.spend, reading.window
    return {
        "observedGeneration": kept.generation,
        "stacks": stacks,
        "level": level.value,
        "window": window.id,
        "windowStart": utc_timestamp(window.start),
        "windowEnd": utc_timestamp(window.end),
        "spentUSD": format_usd(spend.cost),
        "tokens": spend.tokens,
        "calls": spend.calls,
        "unsettled": spend.unsettled,
        "percent": reading.standing.percent,
        "conditions": [
            _condition("Ready", "True", "Kept", "published to the runners' ledger"),
            *(
                _condition(
                    kind.value,
                    "True" if _reached(level, kind) else "False",
                    kind.value if _reached(level, kind) else "Below",
                    reading.standing.message if _reached(level, kind) else "",
                )
                for kind in (Level.WARNING, Level.THROTTLED, Level.EXCEEDED)
            ),
        ],
    }


def _reached(level: Level, threshold: Level) -> bool:
    order = list(Level)
    return order.index(level) >= order.index(threshold)


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    # The transition time is filled in by :meth:`BudgetKeeper._write` from what was
    # written before (it moves only when the status flips).
    return {"type": kind, "status": status, "reason": reason, "message": message[:2000]}


class BudgetKeeper:
    """Every namespace's ``AgentBudget`` objects, and the leader's turn over them."""

    def __init__(
        self,
        kube: BudgetApi,
        ledgers: Ledgers,
        stacks: Callable[[], Iterable[StackRecord]],
        changed: Callable[[StackRecord, bool], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``stacks``: every stack the operator knows; ``changed(record, resumed)``:
        called when a stack's verdict changed (``resumed``: it may tick again)."""
        self.kube, self.ledgers, self.stacks, self.changed = kube, ledgers, stacks, changed
        self.clock = clock
        self.budgets: dict[str, dict[str, Kept]] = {}
        """Namespace → budget name → what is known of it."""
        self.published: dict[str, dict[str, dict[str, str]]] = {}
        """Namespace → what its ledger was last given."""

    # -- watch side (every replica) -------------------------------------------------------

    def seen(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        try:
            spec: BudgetSpec | None = parse_budget(name, body.get("spec") or {})
            problem = ""
        except (BudgetSpecError, ValueError, TypeError) as exc:
            spec, problem = None, str(exc)
        known = self.budgets.setdefault(namespace, {}).get(name)
        kept = Kept(
            namespace,
            name,
            str(meta.get("uid") or ""),
            int(meta.get("generation") or 0),
            spec,
            problem,
        )
        if known is not None and known.uid == kept.uid:
            kept.level, kept.written = known.level, known.written
            kept.quota_written = known.quota_written
        self.budgets[namespace][name] = kept

    def gone(self, namespace: str, name: str) -> None:
        self.budgets.get(namespace, {}).pop(name, None)

    def weight(self, namespace: str) -> int:
        """The namespace's fair share of the runners: the largest weight its valid
        budgets give (:data:`~.fairshare.DEFAULT_WEIGHT` without one)."""
        weights = [
            kept.spec.weight
            for kept in self.budgets.get(namespace, {}).values()
            if kept.spec is not None and kept.spec.weight is not None
        ]
        return max(weights, default=DEFAULT_WEIGHT)

    def concurrency(self, namespace: str) -> int | None:
        """How many of the namespace's ticks may run at once: the smallest
        ``quota.maxConcurrentTicks`` of its valid budgets (``None``: no limit)."""
        quotas = [
            kept.spec.max_concurrent_ticks
            for kept in self.budgets.get(namespace, {}).values()
            if kept.spec is not None and kept.spec.max_concurrent_ticks is not None
        ]
        return min(quotas, default=None)

    # -- the leader's turn ----------------------------------------------------------------

    async def step(self) -> None:
        """One turn over every namespace with budgets (or whose budgets just went)."""
        now = self.clock()
        members: dict[str, list[StackRecord]] = {}
        for record in self.stacks():  # once per turn: a namespace's stacks are a lookup
            members.setdefault(record.ref.namespace, []).append(record)
        verdicts: dict[str, NamespaceVerdict] = {}
        for namespace in sorted({*self.budgets, *self.published}):
            verdict = await self._keep(namespace, members.get(namespace, []), now)
            if verdict is not None:
                verdicts[namespace] = verdict
        self._apply(verdicts)

    async def _keep(
        self, namespace: str, stacks: Sequence[StackRecord], now: float
    ) -> NamespaceVerdict | None:
        """Publish, read back and report the namespace's budgets, keep their quotas;
        the verdict for its stacks (``None``: nothing holds or stretches them)."""
        budgets = self.budgets.get(namespace, {})
        kept = {n: k for n, k in budgets.items() if k.spec is not None}
        capped = {n: k for n, k in kept.items() if k.spec is not None and k.spec.caps}
        limits = {n: k.spec.ledger_limits() for n, k in capped.items() if k.spec is not None}
        if self.published.get(namespace, {}) != limits:
            await self.ledgers.publish(namespace, limits)
            self.published[namespace] = limits
        covered = len(stacks)
        for budget in budgets.values():
            if budget.spec is None or not budget.spec.caps:
                await self._write(budget, budget_status(budget, covered, None))
        for budget in kept.values():
            await self._keep_quota(budget)
        if not limits:
            self.published.pop(namespace, None)
        if not budgets:
            self.budgets.pop(namespace, None)
        standings = await self._standings(namespace, capped, covered, now)
        metrics.keep_namespace_budgets(namespace, capped)
        stretch, why = _quota_stretch(stacks, kept)
        furthest = worst(standings)
        if furthest is None or furthest[1].level is Level.OK:
            # Within its caps: only a quota of ticks may stretch the stacks.
            return NamespaceVerdict(why[0], Level.OK, why[1], stretch) if stretch > 1 else None
        name, chosen = furthest
        spec = kept[name].spec
        assert spec is not None
        factor = spec.throttle_factor if chosen.level is Level.THROTTLED else 1.0
        message = chosen.message + (f"; {why[1]}" if stretch > 1 else "")
        return NamespaceVerdict(name, chosen.level, message, max(factor, stretch))

    async def _standings(
        self, namespace: str, capped: Mapping[str, Kept], covered: int, now: float
    ) -> dict[str, Standing]:
        """Each capping budget's current window as its ledger counts it (reported)."""
        if not capped:
            return {}
        windows = {n: k.spec.window(now) for n, k in capped.items() if k.spec is not None}
        spent = await self.ledgers.spent(namespace, {n: w.id for n, w in windows.items()}, now=now)
        standings: dict[str, Standing] = {}
        for name, budget in capped.items():
            assert budget.spec is not None
            window = windows[name]
            spend = spent.get(name) or Spend(0, 0, 0, 0, 0, 0)
            standings[name] = now_standing = standing(
                budget.spec,
                window,
                spend.cost,
                spend.tokens,
                spend.needed_cost,
                spend.needed_tokens,
            )
            metrics.observe_namespace_budget(namespace, name, spend, now_standing)
            await self._report(budget, covered, Reading(now_standing, spend, window))
        await self.ledgers.prune(namespace, _windows_to_keep(capped, now))
        return standings

    async def _keep_quota(self, kept: Kept) -> None:
        """The budget's ResourceQuota of stacks, written when its ``maxStacks`` changed
        (and once by each new leader)."""
        assert kept.spec is not None
        wanted = kept.spec.max_stacks
        if kept.quota_written == (wanted,):
            return
        await self.kube.keep_stack_quota(
            kept.namespace, quota_name(kept.name), (kept.name, kept.uid), wanted
        )
        kept.quota_written = (wanted,)

    async def _report(self, kept: Kept, covered: int, reading: Reading) -> None:
        """Write the budget's status; post an Event when its level moved."""
        await self._write(kept, budget_status(kept, covered, reading))
        level = reading.standing.level
        if kept.level is level:
            return
        first = kept.level is None
        kept.level = level
        if first and level is Level.OK:
            return  # a new budget within its caps: nothing to tell
        reason, warning = LEVEL_EVENTS[level]
        await self.kube.post_budget_event(
            kept.namespace, kept.name, kept.uid, reason, reading.standing.message, warning=warning
        )

    async def _write(self, kept: Kept, body: dict[str, Any]) -> None:
        """Write ``body`` as the budget's status if it differs from the last one
        written, keeping each condition's transition time unless its status flipped."""
        before = {c["type"]: c for c in kept.written.get("conditions", [])}
        stamp = utc_timestamp(self.clock())
        for condition in body.get("conditions", []):
            previous = before.get(condition["type"])
            if previous is not None and previous["status"] == condition["status"]:
                condition["lastTransitionTime"] = previous["lastTransitionTime"]
            else:
                condition["lastTransitionTime"] = stamp
            condition["observedGeneration"] = kept.generation
        if body == kept.written:
            return
        if await self.kube.patch_budget_status(kept.namespace, kept.name, body):
            kept.written = body

    def _apply(self, verdicts: dict[str, NamespaceVerdict]) -> None:
        """Give every stack its namespace's verdict; tell who changed."""
        for record in self.stacks():
            verdict = verdicts.get(record.ref.namespace)
            before = record.namespace_budget
            if verdict == before:
                continue
            record.namespace_budget = verdict
            resumed = before is not None and before.holds and not (verdict and verdict.holds)
            self.changed(record, resumed)


def _quota_stretch(
    stacks: Sequence[StackRecord], kept: Mapping[str, Kept]
) -> tuple[float, tuple[str, str]]:
    """How much longer the namespace's stacks must wait for their ticks to fit every
    budget's ``maxTicksPerSecond`` together, and (budget, message) saying why."""
    rates = [
        1.0 / record.requested_interval
        for record in stacks
        if record.should_tick and record.calendar is None and record.requested_interval > 0
    ]
    stretch, why = 1.0, ("", "")
    for name, budget in sorted(kept.items()):
        assert budget.spec is not None
        factor = quota_factor(budget.spec, rates)
        if factor > stretch:
            stretch = factor
            why = (
                name,
                f"AgentBudget {name}: the namespace's stacks ask for {sum(rates):.3g} "
                f"ticks/s, its quota allows {budget.spec.max_ticks_per_second:g}: "
                f"every interval stretched {factor:.3g}x",
            )
    return stretch, why


def quota_name(budget: str) -> str:
    """The ResourceQuota that keeps a budget's ``maxStacks``."""
    return f"agentbudget-{budget}"


def _windows_to_keep(kept: Mapping[str, Kept], now: float) -> dict[str, list[str]]:
    """Per budget, the windows whose counters stay: the current one and the one before
    (read by a runner whose clock is a little behind, and shown until it is gone)."""
    keep: dict[str, list[str]] = {}
    for name, budget in kept.items():
        if budget.spec is None:
            continue
        current = budget.spec.window(now)
        before = budget.spec.window(current.start - 1)
        keep[name] = [current.id, before.id]
    return keep
