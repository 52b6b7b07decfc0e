"""A namespace's budget (the ``AgentBudget`` resource): its windows, its limits as the
ledger keeps them, and the level its spending has reached.

A platform team thinks per tenant: "team-a may spend $200 a month". An ``AgentBudget``
in the tenant's namespace says so, once, for every stack there. The runners keep it
before each call, through the namespace's ledger in Redis
(:mod:`agentstack_core.redis.ledger`): a call may start only if its worst case fits in
what the window has left, counting what calls in flight on every runner hold. The
operator reads the same ledger to report the level reached (:class:`Level`) on the
budget and on each stack, to stretch the stacks' intervals once it throttles, and to
hold every stack of the namespace once it is exceeded — until the window rolls over.

Windows are calendar periods in the budget's time zone (a day from local midnight, an
ISO week from Monday, a month from the 1st), or fixed spans of ``seconds`` counted from
the epoch (for short windows). A window's id names it (``2026-12-07``, ``2026-W49``,
``2026-12``, ``s600-2945000``): the ledger keeps one set of counters per budget and
window id, so a new window starts at zero without anything being reset.

Everything here is pure: the clock is an argument.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agentstack_core.pricing import format_usd, nanos

MIN_WINDOW_SECONDS = 30
"""The shortest fixed window: shorter ones would roll over between two status reads."""
DEFAULT_WARN_PERCENT = 80
DEFAULT_THROTTLE_PERCENT = 90
DEFAULT_THROTTLE_FACTOR = 2.0
"""How much longer a throttled namespace's stacks wait between ticks."""
MAX_WEIGHT = 1000
"""The largest fair-share weight (``spec.fairShare.weight``; a namespace without one
has weight 1)."""


class Period(StrEnum):
    """A calendar window (``spec.window.calendar``)."""

    DAY = "Day"
    WEEK = "Week"
    MONTH = "Month"


class Level(StrEnum):
    """How far a budget's window has been spent, in the order it gets there."""

    OK = "Ok"
    WARNING = "Warning"
    THROTTLED = "Throttled"
    EXCEEDED = "Exceeded"


class BudgetSpecError(ValueError):
    """An ``AgentBudget`` the schema let through but the operator cannot keep."""


@dataclass(frozen=True)
class Window:
    """One window of a budget: its id and its span (unix seconds, ``end`` excluded)."""

    id: str
    start: float
    end: float


@dataclass(frozen=True)
class BudgetSpec:
    """An ``AgentBudget``'s spec, checked."""

    name: str
    max_cost: int | None = None
    """Nano-dollars a window may spend (``None``: no dollar cap)."""
    max_tokens: int | None = None
    period: Period | None = Period.MONTH
    """The calendar window (``None``: fixed windows of :attr:`seconds`)."""
    seconds: int | None = None
    time_zone: str = "UTC"
    warn_percent: int = DEFAULT_WARN_PERCENT
    throttle_percent: int = DEFAULT_THROTTLE_PERCENT
    throttle_factor: float = DEFAULT_THROTTLE_FACTOR
    max_stacks: int | None = None
    """AgentStacks the namespace may hold (kept by a ResourceQuota)."""
    max_ticks_per_second: float | None = None
    """Ticks per second the namespace's interval stacks may ask for together."""
    max_concurrent_ticks: int | None = None
    """Ticks of the namespace's stacks that may run at once (the operator holds more)."""
    weight: int | None = None
    """The namespace's share of the runners while they are behind (``None``: the
    default share; the operator's fair queue keeps it)."""

    @property
    def caps(self) -> bool:
        """Whether it caps spending (a quota-only budget has nothing for the ledger)."""
        return self.max_cost is not None or self.max_tokens is not None

    def window(self, now: float) -> Window:
        """The window ``now`` falls in."""
        if self.period is None:
            span = self.seconds or MIN_WINDOW_SECONDS
            index = int(now // span)
            return Window(f"s{span}-{index}", index * span, (index + 1) * span)
        return calendar_window(self.period, ZoneInfo(self.time_zone), now)

    def ledger_limits(self) -> dict[str, str]:
        """The budget as the ledger's scripts read it (decimal text), with what a runner
        needs to name the current window itself."""
        limits = {"timeZone": self.time_zone}
        if self.max_cost is not None:
            limits["maxCost"] = str(self.max_cost)
        if self.max_tokens is not None:
            limits["maxTokens"] = str(self.max_tokens)
        if self.period is not None:
            limits["period"] = self.period.value
        if self.seconds is not None:
            limits["seconds"] = str(self.seconds)
        return limits


def calendar_window(period: Period, zone: ZoneInfo, now: float) -> Window:
    """The calendar ``period`` holding ``now`` in ``zone``: it starts at local midnight
    (of the day, of the week's Monday, of the month's 1st), so a daylight-saving change
    makes a day 23 or 25 hours long, as people count it."""
    local = dt.datetime.fromtimestamp(now, zone)
    day = local.date()
    if period is Period.DAY:
        first, after = day, day + dt.timedelta(days=1)
        name = day.isoformat()
    elif period is Period.WEEK:
        first = day - dt.timedelta(days=day.weekday())
        after = first + dt.timedelta(days=7)
        year, week, _ = first.isocalendar()
        name = f"{year}-W{week:02d}"
    else:
        first = day.replace(day=1)
        after = (first + dt.timedelta(days=32)).replace(day=1)
        name = f"{first.year}-{first.month:02d}"
    return Window(name, _midnight(first, zone), _midnight(after, zone))


def _midnight(day: dt.date, zone: ZoneInfo) -> float:
    return dt.datetime.combine(day, dt.time(), zone).timestamp()


def parse_budget(name: str, spec: Mapping[str, Any]) -> BudgetSpec:
    """An ``AgentBudget``'s ``spec`` (as the schema admitted it), checked for what the
    schema cannot say; :class:`BudgetSpecError` names the problem."""
    cost = spec.get("maxCostUSD")
    tokens = spec.get("maxTokens")
    quota = spec.get("quota") or {}
    share = spec.get("fairShare") or {}
    if cost is None and tokens is None and not quota and not share:
        raise BudgetSpecError(
            "spec.maxCostUSD, spec.maxTokens, spec.quota or spec.fairShare must be set"
        )
    weight = share.get("weight")
    if weight is not None and not 1 <= int(weight) <= MAX_WEIGHT:
        raise BudgetSpecError(f"spec.fairShare.weight must be 1 to {MAX_WEIGHT}")
    rate = quota.get("maxTicksPerSecond")
    if rate is not None and float(rate) <= 0:
        raise BudgetSpecError("spec.quota.maxTicksPerSecond must be above 0")
    window = spec.get("window") or {}
    seconds = window.get("seconds")
    period = None if seconds is not None else Period(window.get("calendar", Period.MONTH))
    zone = str(window.get("timeZone") or "UTC")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BudgetSpecError(f"spec.window.timeZone: unknown time zone {zone!r}") from exc
    if seconds is not None and int(seconds) < MIN_WINDOW_SECONDS:
        raise BudgetSpecError(f"spec.window.seconds must be at least {MIN_WINDOW_SECONDS}")
    thresholds = spec.get("thresholds") or {}
    warn = int(thresholds.get("warnPercent", DEFAULT_WARN_PERCENT))
    throttle = int(thresholds.get("throttlePercent", DEFAULT_THROTTLE_PERCENT))
    if not 0 < warn <= throttle <= 100:
        raise BudgetSpecError(
            "spec.thresholds: 0 < warnPercent <= throttlePercent <= 100 must hold "
            f"(got {warn} and {throttle})"
        )
    return BudgetSpec(
        name=name,
        max_cost=None if cost is None else nanos(float(cost)),
        max_tokens=None if tokens is None else int(tokens),
        period=period,
        seconds=None if seconds is None else int(seconds),
        time_zone=zone,
        warn_percent=warn,
        throttle_percent=throttle,
        throttle_factor=float(thresholds.get("throttleFactor", DEFAULT_THROTTLE_FACTOR)),
        max_stacks=None if quota.get("maxStacks") is None else int(quota["maxStacks"]),
        max_ticks_per_second=None if rate is None else float(rate),
        max_concurrent_ticks=(
            None if quota.get("maxConcurrentTicks") is None else int(quota["maxConcurrentTicks"])
        ),
        weight=None if weight is None else int(weight),
    )


def limits_window(limits: Mapping[str, str], now: float) -> str:
    """The id of the window ``now`` falls in, for a budget as the ledger publishes it
    (:meth:`BudgetSpec.ledger_limits`): how a runner names the window it holds against."""
    seconds = limits.get("seconds")
    spec = BudgetSpec(
        name="",
        period=None if seconds else Period(limits.get("period", Period.MONTH)),
        seconds=int(seconds) if seconds else None,
        time_zone=limits.get("timeZone", "UTC"),
    )
    return spec.window(now).id


@dataclass(frozen=True)
class Standing:
    """Where one budget's window stands: the level reached and what people read."""

    level: Level
    percent: float
    """The larger of the dollars and the tokens spent, as a percentage of the cap."""
    message: str


def standing(
    budget: BudgetSpec,
    window: Window,
    cost: int,
    tokens: int,
    needed_cost: int = 0,
    needed_tokens: int = 0,
) -> Standing:
    """The level ``cost`` nano-dollars and ``tokens`` reach in ``budget``'s ``window``.

    Exceeded is reached at 100 %, or once the smallest call a step could make was
    refused because less was left than it needed (``needed_cost`` nano-dollars,
    ``needed_tokens``: the ledger's record of such refusals) while that is still so:
    otherwise every tick would start only to have its calls refused."""
    shares = []
    spent = []
    if budget.max_cost is not None:
        shares.append(100.0 * cost / budget.max_cost if budget.max_cost else 100.0)
        spent.append(f"${format_usd(cost)} of ${format_usd(budget.max_cost)}")
    if budget.max_tokens is not None:
        shares.append(100.0 * tokens / budget.max_tokens if budget.max_tokens else 100.0)
        spent.append(f"{tokens} of {budget.max_tokens} tokens")
    percent = max(shares, default=0.0)
    starved = (
        budget.max_cost is not None and needed_cost > 0 and budget.max_cost - cost < needed_cost
    ) or (
        budget.max_tokens is not None
        and needed_tokens > 0
        and budget.max_tokens - tokens < needed_tokens
    )
    if percent >= 100 or starved:
        level = Level.EXCEEDED
    elif percent >= budget.throttle_percent:
        level = Level.THROTTLED
    elif percent >= budget.warn_percent:
        level = Level.WARNING
    else:
        level = Level.OK
    message = (
        f"AgentBudget {budget.name}: {' and '.join(spent)} spent in window {window.id} "
        f"({percent:.0f}%)"
    )
    return Standing(level, round(percent, 2), message)


def worst(standings: Mapping[str, Standing]) -> tuple[str, Standing] | None:
    """The budget of a namespace furthest along (its name and standing), ``None`` if the
    namespace has none: the one that decides what its stacks may do."""
    order = list(Level)
    ranked = sorted(
        standings.items(), key=lambda item: (order.index(item[1].level), item[1].percent)
    )
    return ranked[-1] if ranked else None


@dataclass(frozen=True)
class NamespaceVerdict:
    """What a namespace's budgets mean for each of its stacks: the level of the one
    furthest spent, its message, and how many times longer throttled stacks wait."""

    budget: str
    level: Level
    message: str
    factor: float = 1.0

    @property
    def holds(self) -> bool:
        """Whether the namespace's stacks may not tick (a budget is exceeded)."""
        return self.level is Level.EXCEEDED


def quota_factor(budget: BudgetSpec, rates: Sequence[float]) -> float:
    """How many times longer every interval stack of the namespace must wait for their
    ``rates`` (ticks per second each asks for) to fit in ``budget``'s quota together
    (1: they fit). One factor for all: no stack is starved to make room for another."""
    limit = budget.max_ticks_per_second
    asked = sum(rates)
    if limit is None or asked <= limit:
        return 1.0
    return asked / limit
