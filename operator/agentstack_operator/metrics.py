"""Prometheus metrics of the operator (prefix ``agentstack_``, base units, bounded labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
