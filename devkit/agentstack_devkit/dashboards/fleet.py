"""The fleet view (``agentstack-fleet``): the whole fleet at a glance, no per-stack label.

Rows, top to bottom: the overview (leader, stacks running, approvals waiting, queue,
ticks in flight, spend), ticks (stacks by state, throughput, failures, dispatch and
queue lag, durations), LLM and cost (calls, latency, fallbacks, retries, circuit
breakers, tokens and dollars by model, unpriced calls), and the operator's own work
(status writes, Events, duplicate and claimed deliveries).

The ``namespace`` variable is the namespace of the scrape targets (the release's, as a
ServiceMonitor labels them); "All" also matches a Prometheus that sets no such label.
Gauges only the leading operator replica keeps current are read from the leader.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from agentstack_devkit.dashboards.panels import RATE, Board, graph, label_variable, query, single

UID = "agentstack-fleet"
TITLE = "agentstack fleet"
NS = 'namespace=~"$namespace"'
FAILED = 'outcome="Failed"'
NOT_SUCCEEDED = 'outcome!="Succeeded"'
LEADER = f"on (job, instance) (agentstack_operator_leader{{{NS}}} == 1)"
"""Right-hand side of ``and``: keeps the series of the replica holding the lease."""


def _rate(metric: str, matchers: str = "") -> str:
    selector = f"{NS}, {matchers}" if matchers else NS
    return f"rate({metric}{{{selector}}}[{RATE}])"


def _quantile(q: float, histogram: str, by: str = "") -> str:
    group = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) ({_rate(f'{histogram}_bucket')}))"


def _overview(board: Board) -> None:
    board.row("Overview")
    board.panel(
        single(
            "Leader replicas",
            "Operator replicas holding the leader Lease; exactly 1 is healthy.",
            "none",
            f"sum(agentstack_operator_leader{{{NS}}})",
        )
    )
    board.panel(
        single(
            "Stacks running",
            "AgentStacks in phase Running, as the leading operator counts them.",
            "none",
            f'max(agentstack_stacks{{{NS}, phase="Running"}} and {LEADER})',
        )
    )
    board.panel(
        single(
            "Approvals waiting",
            "Tool calls waiting for a person to approve or deny them, across all stacks.",
            "none",
            f"max(agentstack_operator_approvals_waiting{{{NS}}} and {LEADER})",
            warn_above=1,
        )
    )
    board.panel(
        single(
            "Tick queue depth",
            "Tick requests waiting in the lanes, not yet received by a runner.",
            "none",
            f"max(agentstack_tick_queue_depth{{{NS}}})",
        )
    )
    board.panel(
        single(
            "Ticks in flight",
            "Ticks the runners are executing right now.",
            "none",
            f"sum(agentstack_runner_ticks_in_flight{{{NS}}})",
        )
    )
    board.panel(
        single(
            "Spend per hour",
            "USD per hour of priced LLM calls, at the current rate. Calls of models "
            "without a price are not in it (see 'LLM calls without a price').",
            "currencyUSD",
            f"sum({_rate('agentstack_llm_cost_usd_total')}) * 3600",
        )
    )


def _ticks(board: Board) -> None:
    board.row("Ticks")
    board.panel(
        graph(
            "Stacks by state",
            "AgentStacks by phase (Running, Paused, Stopped, Invalid, Waiting, Degraded, "
            "BudgetExceeded), as the leading operator counts them.",
            "none",
            query(f"max by (phase) (agentstack_stacks{{{NS}}} and {LEADER})", "{{phase}}"),
        )
    )
    board.panel(
        graph(
            "Ticks per second by outcome",
            "Ticks handled by the runners: Succeeded, Failed, Dropped.",
            "ops",
            query(f"sum by (outcome) ({_rate('agentstack_runner_ticks_total')})", "{{outcome}}"),
        )
    )
    board.panel(
        graph(
            "Failed share of ticks",
            "Share of the ticks handled by the runners that failed (0 to 1); the "
            "AgentStackTicksFailing alert watches the same ratio over 10 minutes.",
            "percentunit",
            query(
                f"(sum({_rate('agentstack_runner_ticks_total', FAILED)}) "
                f"or vector(0)) / sum({_rate('agentstack_runner_ticks_total')})",
                "failed",
            ),
        )
    )
    board.panel(
        graph(
            "Failed and dropped ticks per second by reason",
            "Why ticks did not succeed: AllStepsFailed, StepFailed, TickTimeout; dropped "
            "as StackBusy, DeadlineExceeded, BudgetExceeded, NotRunning, InvalidSpec, …",
            "ops",
            query(
                "sum by (outcome, reason) "
                f"({_rate('agentstack_runner_ticks_total', NOT_SUCCEEDED)})",
                "{{outcome}} {{reason}}",
            ),
        )
    )
    board.panel(
        graph(
            "Ticks dispatched per second by executor",
            "Ticks the leading operator sent, to the pool of runners or as Jobs.",
            "ops",
            query(
                f"sum by (executor) ({_rate('agentstack_scheduler_ticks_dispatched_total')})",
                "{{executor}}",
            ),
        )
    )
    board.panel(
        graph(
            "Dispatch lag p99",
            "99th percentile of the delay from a tick's due time to its dispatch.",
            "s",
            query(_quantile(0.99, "agentstack_scheduler_dispatch_lag_seconds"), "p99"),
        )
    )
    board.panel(
        graph(
            "Queue depth",
            "Tick requests waiting in the lanes (refreshed every 5 s by the operator).",
            "none",
            query(f"max(agentstack_tick_queue_depth{{{NS}}})", "waiting"),
        )
    )
    board.panel(
        graph(
            "Queue lag p95",
            "95th percentile of the time from dispatch to the start of execution.",
            "s",
            query(_quantile(0.95, "agentstack_runner_queue_lag_seconds"), "p95"),
        )
    )
    board.panel(
        graph(
            "Tick duration p95 by outcome",
            "95th percentile of the wall time of executed ticks.",
            "s",
            query(
                _quantile(0.95, "agentstack_runner_tick_duration_seconds", "outcome"),
                "{{outcome}}",
            ),
        )
    )
    board.panel(
        graph(
            "Agent step p95 by role",
            "95th percentile of one agent step (context, LLM calls, commit).",
            "s",
            query(_quantile(0.95, "agentstack_agent_step_duration_seconds", "role"), "{{role}}"),
        )
    )
    board.panel(
        graph(
            "Tool calls per second by outcome",
            "Tool calls of agents: ok, error, timeout, unreachable, invalid, refused.",
            "ops",
            query(
                f"sum by (outcome) ({_rate('agentstack_runner_tool_calls_total')})",
                "{{outcome}}",
            ),
        )
    )


def _llm(board: Board) -> None:
    board.row("LLM and cost")
    board.panel(
        graph(
            "LLM calls per second by provider and outcome",
            "Succeeded, or the error: RateLimited, ServerError, Timeout, Rejected, "
            "Unavailable, Error.",
            "ops",
            query(
                f"sum by (provider, outcome) ({_rate('agentstack_llm_requests_total')})",
                "{{provider}} {{outcome}}",
            ),
        )
    )
    board.panel(
        graph(
            "LLM latency p95 by provider",
            "95th percentile of LLM call latency.",
            "s",
            query(
                _quantile(0.95, "agentstack_llm_request_duration_seconds", "provider"),
                "{{provider}}",
            ),
        )
    )
    board.panel(
        graph(
            "Fallbacks per second",
            "Moves from one model of an agent's chain to the next, by the provider left "
            "behind and the one moved to.",
            "ops",
            query(
                f"sum by (from_provider, to_provider) ({_rate('agentstack_llm_fallbacks_total')})",
                "{{from_provider}} → {{to_provider}}",
            ),
        )
    )
    board.panel(
        graph(
            "Retries per second by provider and reason",
            "LLM calls retried on the same model: RateLimited, ServerError, Timeout.",
            "ops",
            query(
                f"sum by (provider, reason) ({_rate('agentstack_llm_retries_total')})",
                "{{provider}} {{reason}}",
            ),
        )
    )
    board.panel(
        graph(
            "Circuit open",
            "1 while a provider's circuit breaker is open on at least one runner.",
            "bool_on_off",
            query(f"max by (provider) (agentstack_llm_circuit_open{{{NS}}})", "{{provider}}"),
        )
    )
    board.panel(
        graph(
            "Tokens per second by model",
            "Prompt and completion tokens reported by LLM responses.",
            "short",
            query(
                f"sum by (provider, model) ({_rate('agentstack_llm_tokens_total')})",
                "{{provider}}/{{model}}",
            ),
        )
    )
    board.panel(
        graph(
            "Spend per hour by model",
            "USD per hour of priced LLM calls, by provider and model.",
            "currencyUSD",
            query(
                f"sum by (provider, model) ({_rate('agentstack_llm_cost_usd_total')}) * 3600",
                "{{provider}}/{{model}}",
            ),
        )
    )
    board.panel(
        graph(
            "LLM calls without a price",
            "Calls per second whose model has no price: their cost is unknown, not zero. "
            "Add the model to the price table.",
            "ops",
            query(
                f"sum by (provider, model) ({_rate('agentstack_llm_unpriced_requests_total')})",
                "{{provider}}/{{model}}",
            ),
        )
    )


def _operator(board: Board) -> None:
    board.row("Operator")
    board.panel(
        graph(
            "Status writes per second",
            "Status patches sent to the API server (bounded cadence, never one per tick).",
            "ops",
            query(f"sum({_rate('agentstack_operator_status_writes_total')})", "writes"),
        )
    )
    board.panel(
        graph(
            "Events per second by reason",
            "Kubernetes Events posted on AgentStacks.",
            "ops",
            query(f"sum by (reason) ({_rate('agentstack_operator_events_total')})", "{{reason}}"),
        )
    )
    board.panel(
        graph(
            "Tick results folded per second by outcome",
            "Tick results the leading operator folded into status.",
            "ops",
            query(
                f"sum by (outcome) ({_rate('agentstack_operator_tick_results_total')})",
                "{{outcome}}",
            ),
        )
    )


def build() -> models.Dashboard:
    board = Board(
        UID,
        TITLE,
        "The agentstack fleet: stacks, ticks, LLM calls, cost and the operator's work. "
        "Generated by agentstack_devkit.dashboards; do not edit the JSON.",
        time_from="now-3h",
    )
    board.variable(
        label_variable(
            "namespace",
            "Namespace",
            "agentstack_operator_leader",
            description="Namespace of the operator, runner and API scrape targets.",
            include_all=True,
        )
    )
    _overview(board)
    _ticks(board)
    _llm(board)
    _operator(board)
    return board.build()
