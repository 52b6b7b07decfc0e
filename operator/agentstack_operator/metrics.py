"""Prometheus metrics of the operator (prefix ``agentstack_``, base units, bounded labels)."""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client import Counter, Gauge, Histogram

from agentstack_core.namespacebudget import Level, Standing
from agentstack_core.pricing import usd
from agentstack_core.redis.ledger import Spend

_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

STACKS = Gauge(
    "agentstack_stacks",
    "AgentStacks known to the operator, by phase (Running, Paused, Stopped, Invalid…).",
    ["phase"],
)
DISPATCH_LAG = Histogram(
    "agentstack_scheduler_dispatch_lag_seconds",
    "Delay between a tick's due time and its dispatch.",
    buckets=_LAG_BUCKETS,
)
DISPATCHED = Counter(
    "agentstack_scheduler_ticks_dispatched_total",
    "Ticks dispatched, by executor (pool, job).",
    ["executor"],
)
SKIPPED = Counter(
    "agentstack_scheduler_ticks_skipped_total",
    "Due ticks not dispatched, by reason (e.g. JobStillRunning).",
    ["reason"],
)
SCHEDULED = Gauge("agentstack_scheduler_scheduled_stacks", "Stacks with a next tick scheduled.")
QUEUE_DEPTH = Gauge(
    "agentstack_tick_queue_depth", "Tick requests waiting in the lanes, not yet received."
)
HELD = Gauge(
    "agentstack_dispatch_held_ticks",
    "Due ticks the leader holds while the lanes are full, waiting for their namespace's "
    "fair share of the runners.",
)
RESULTS = Counter(
    "agentstack_operator_tick_results_total",
    "Tick results folded into status, by outcome.",
    ["outcome"],
)
WAKEUPS = Counter(
    "agentstack_operator_wakeups_total",
    "Wake-ups read (a stack received an input and asked for a tick at once).",
)
STATUS_WRITES = Counter(
    "agentstack_operator_status_writes_total", "Status patches sent to the API server."
)
EVENTS = Counter(
    "agentstack_operator_events_total", "Kubernetes Events posted, by reason.", ["reason"]
)
STATUS_AGE = Gauge(
    "agentstack_operator_status_age_seconds",
    "Age of the oldest status replaced by the last batch of routine status writes: how "
    "stale a stack's status gets before it is rewritten.",
)
LEADER = Gauge("agentstack_operator_leader", "1 while this replica holds the leader lease.")
STALLED = Gauge(
    "agentstack_stacks_stalled",
    "Stacks whose last stalledAfterIdleTicks ticks in a row changed nothing (the Stalled "
    "condition).",
)
APPROVALS_WAITING = Gauge(
    "agentstack_operator_approvals_waiting",
    "Tool calls waiting for a person's approval, across the stacks this leader runs.",
)

TRIGGER_WATCHES = Gauge(
    "agentstack_operator_trigger_watches",
    "Watches the leader holds open for stacks' Kubernetes triggers (one per kind, or "
    "per kind and namespace when the operator watches a list of namespaces).",
)
TRIGGER_INPUTS = Counter(
    "agentstack_operator_trigger_inputs_total",
    "What became of the inputs Kubernetes triggers fired, by outcome (Sent, Duplicate, "
    "RateLimited, Refused, Failed).",
    ["outcome"],
)
_BUDGET_LABELS = ["namespace", "budget"]
"""Bounded by the platform's ``AgentBudget`` objects (a few per tenant namespace)."""
NAMESPACE_SPENT = Gauge(
    "agentstack_namespace_budget_spent_usd",
    "Dollars a namespace's stacks spent in the current window of one of its AgentBudgets.",
    _BUDGET_LABELS,
)
NAMESPACE_TOKENS = Gauge(
    "agentstack_namespace_budget_tokens",
    "Tokens a namespace's stacks used in the current window of one of its AgentBudgets.",
    _BUDGET_LABELS,
)
NAMESPACE_PERCENT = Gauge(
    "agentstack_namespace_budget_percent",
    "How much of an AgentBudget's cap its current window has spent (the larger of dollars "
    "and tokens, in percent).",
    _BUDGET_LABELS,
)
NAMESPACE_LEVEL = Gauge(
    "agentstack_namespace_budget_level",
    "An AgentBudget's level: 0 Ok, 1 Warning, 2 Throttled, 3 Exceeded.",
    _BUDGET_LABELS,
)
_NAMESPACE_SERIES = (NAMESPACE_SPENT, NAMESPACE_TOKENS, NAMESPACE_PERCENT, NAMESPACE_LEVEL)


_budget_series: set[tuple[str, str]] = set()
"""The (namespace, budget) label pairs exported, so that gone budgets' series go too."""


def observe_namespace_budget(namespace: str, budget: str, spend: Spend, standing: Standing) -> None:
    """Export where one budget's window stands."""
    labels = (namespace, budget)
    NAMESPACE_SPENT.labels(*labels).set(usd(spend.cost))
    NAMESPACE_TOKENS.labels(*labels).set(spend.tokens)
    NAMESPACE_PERCENT.labels(*labels).set(standing.percent)
    NAMESPACE_LEVEL.labels(*labels).set(list(Level).index(standing.level))
    _budget_series.add(labels)


def keep_namespace_budgets(namespace: str, budgets: Collection[str]) -> None:
    """Drop the series of ``namespace``'s budgets not in ``budgets`` (gone, or invalid
    now): the labels stay bounded by the budgets that exist."""
    for labels in [s for s in _budget_series if s[0] == namespace and s[1] not in budgets]:
        for series in _NAMESPACE_SERIES:
            series.remove(*labels)
        _budget_series.discard(labels)


_PER_STACK_LABELS = ["namespace", "stack"]
STACK_TICKS = Counter(
    "agentstack_stack_ticks_total",
    "Tick results folded, by stack and outcome (opt-in: AGENTSTACK_METRICS_PER_STACK).",
    [*_PER_STACK_LABELS, "outcome"],
)
STACK_TOKENS = Counter(
    "agentstack_stack_tokens_total",
    "LLM tokens of folded ticks, by stack (opt-in: AGENTSTACK_METRICS_PER_STACK).",
    _PER_STACK_LABELS,
)
STACK_COST = Counter(
    "agentstack_stack_cost_usd_total",
    "US dollars of the priced LLM calls of folded ticks, by stack (opt-in).",
    _PER_STACK_LABELS,
)
STACK_LAST_DURATION = Gauge(
    "agentstack_stack_last_tick_duration_seconds",
    "Wall time of the stack's last folded tick (opt-in: AGENTSTACK_METRICS_PER_STACK).",
    _PER_STACK_LABELS,
)


class PerStackSeries:
    """The opt-in series labelled by stack: off by default, since their number grows
    with the fleet (ten thousand stacks are forty thousand series); a platform that
    wants the per-stack dashboard turns them on with ``AGENTSTACK_METRICS_PER_STACK``.

    Only the leader folds results, so only the leader's series move; a stack's series
    are removed when it is forgotten, so deleted stacks leave none behind.
    """

    def __init__(self) -> None:
        self.enabled = False
        self._outcomes: dict[tuple[str, str], set[str]] = {}

    def observe(
        self, namespace: str, stack: str, outcome: str, tokens: int, dollars: float, seconds: float
    ) -> None:
        if not self.enabled:
            return
        self._outcomes.setdefault((namespace, stack), set()).add(outcome)
        STACK_TICKS.labels(namespace, stack, outcome).inc()
        STACK_TOKENS.labels(namespace, stack).inc(tokens)
        STACK_COST.labels(namespace, stack).inc(dollars)
        STACK_LAST_DURATION.labels(namespace, stack).set(seconds)

    def clear(self) -> None:
        """A replica that stops leading folds no more results: its series would be
        frozen figures beside the new leader's live ones."""
        self._outcomes.clear()
        for series in (STACK_TICKS, STACK_TOKENS, STACK_COST, STACK_LAST_DURATION):
            series.clear()

    def forget(self, namespace: str, stack: str) -> None:
        outcomes = self._outcomes.pop((namespace, stack), None)
        if outcomes is None:
            return
        for outcome in outcomes:
            STACK_TICKS.remove(namespace, stack, outcome)
        for series in (STACK_TOKENS, STACK_COST, STACK_LAST_DURATION):
            series.remove(namespace, stack)


PER_STACK = PerStackSeries()
