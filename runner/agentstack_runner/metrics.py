"""Prometheus metrics of the runner (prefix ``agentstack_``, base units, bounded labels).

Labels are limited to values the project bounds: outcome and reason enums, providers,
the built-in agent roles (any other role a stack author names is ``custom``), and model
names — which stack authors also choose, so only the first
``AGENTSTACK_METRICS_MAX_MODELS`` (20) distinct names a runner meets get a series of
their own, later ones share ``other``. The chargeback counters carry the stack's
namespace, bounded by the namespaces of the cluster (created by its administrators, not
by stack authors). No label carries a stack name; per-stack numbers
live in the stack's status and its Redis history instead.
"""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram

from agentstack_core.spec import DEFAULT_MODELS, DEFAULT_TEAM

OTHER = "other"
CUSTOM_ROLE = "custom"


class BoundedLabel:
    """Label values taken from user input, bounded: ``known`` values and the first
    ``limit`` others met keep their name, the rest are reported as ``other``."""

    def __init__(self, limit: int, known: tuple[str, ...] = ()) -> None:
        self.limit = limit
        self._known = frozenset(known)
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._known or value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return value
        return OTHER


model_label = BoundedLabel(20, known=tuple(DEFAULT_MODELS.values()))
"""Its limit is the runner's ``AGENTSTACK_METRICS_MAX_MODELS``, set at start."""


def role_label(role: str) -> str:
    """A built-in role as itself; roles stack authors invent share one series."""
    return role if role in DEFAULT_TEAM else CUSTOM_ROLE


_TICK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_CALL_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

TICKS = Counter(
    "agentstack_runner_ticks_total",
    "Ticks handled by this runner, by outcome and reason.",
    ["outcome", "reason"],
)
TICK_DURATION = Histogram(
    "agentstack_runner_tick_duration_seconds",
    "Wall time of executed ticks, by outcome.",
    ["outcome"],
    buckets=_TICK_BUCKETS,
)
TICKS_IN_FLIGHT = Gauge(
    "agentstack_runner_ticks_in_flight", "Ticks this runner is executing right now."
)
QUEUE_LAG = Histogram(
    "agentstack_runner_queue_lag_seconds",
    "Time from dispatch by the operator to the start of execution.",
    buckets=_LAG_BUCKETS,
)
DUPLICATES = Counter(
    "agentstack_runner_duplicate_ticks_total",
    "Tick deliveries acknowledged without running because the tick already ran or runs.",
)
CLAIMED = Counter(
    "agentstack_runner_claimed_ticks_total",
    "Abandoned tick deliveries taken over from another runner.",
)
STEP_DURATION = Histogram(
    "agentstack_agent_step_duration_seconds",
    "Wall time of one agent step (context, LLM calls, commit), by role and outcome.",
    ["role", "outcome"],
    buckets=_TICK_BUCKETS,
)
LLM_REQUESTS = Counter(
    "agentstack_llm_requests_total",
    "LLM calls, by provider, model and outcome.",
    ["provider", "model", "outcome"],
)
LLM_DURATION = Histogram(
    "agentstack_llm_request_duration_seconds",
    "Latency of LLM calls, by provider, model and outcome.",
    ["provider", "model", "outcome"],
    buckets=_CALL_BUCKETS,
)
LLM_TOKENS = Counter(
    "agentstack_llm_tokens_total",
    "Tokens reported by LLM responses, by provider, model and kind (prompt, completion).",
    ["provider", "model", "kind"],
)
LLM_COST = Counter(
    "agentstack_llm_cost_usd_total",
    "US dollars of LLM calls priced by the runner's price table, by provider and model.",
    ["provider", "model"],
)
LLM_UNPRICED = Counter(
    "agentstack_llm_unpriced_requests_total",
    "Answered LLM calls whose model has no price (their cost is unknown), by provider and model.",
    ["provider", "model"],
)
NAMESPACE_LLM_COST = Counter(
    "agentstack_namespace_llm_cost_usd_total",
    "US dollars of priced LLM calls, by the namespace of the stack that made them "
    "(chargeback; one series per namespace).",
    ["namespace"],
)
NAMESPACE_LLM_TOKENS = Counter(
    "agentstack_namespace_llm_tokens_total",
    "Tokens (prompt and completion) of answered LLM calls, priced or not, by the namespace "
    "of the stack that made them (chargeback; one series per namespace).",
    ["namespace"],
)
LLM_RETRIES = Counter(
    "agentstack_llm_retries_total",
    "LLM calls retried on the same model, by provider and reason.",
    ["provider", "reason"],
)
LLM_FALLBACKS = Counter(
    "agentstack_llm_fallbacks_total",
    "Moves from one model of an agent's chain to the next, by the provider left behind.",
    ["from_provider", "to_provider"],
)
LLM_BREAKER_OPEN = Gauge(
    "agentstack_llm_circuit_open",
    "1 while this runner's circuit breaker for a provider is open.",
    ["provider"],
)

TOOL_CALLS = Counter(
    "agentstack_runner_tool_calls_total",
    "Tool calls of agents, by outcome (ok, error, timeout, unreachable, invalid, refused).",
    ["outcome"],
)
EVAL_SCORES = Histogram(
    "agentstack_runner_eval_scores",
    "Scores (0 to 1) of the evals of stacks' ticks (spec.evals), by the stack's namespace.",
    ["namespace"],
    buckets=(0.1, 0.25, 0.5, 0.75, 0.9, 1),
)
TOOL_DURATION = Histogram(
    "agentstack_runner_tool_call_duration_seconds",
    "Duration of tool calls sent to MCP servers (connecting included).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
