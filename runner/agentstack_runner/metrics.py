"""Prometheus metrics of the runner (prefix ``agentstack_``, base units, bounded labels).

Labels are limited to values the fleet's configuration bounds: outcome and reason
enums, agent roles, provider and model names. No label carries a stack name; per-stack
numbers live in the stack's status and its Redis history instead.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
