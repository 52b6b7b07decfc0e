"""The runner's settings (:class:`RunnerConfig`), from its environment.

Every variable is declared once, with its meaning and default, as a field below or in
the shared parts of :mod:`agentstack_core.settings`; the README's table is generated
from them.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Annotated, Literal

from pydantic import BeforeValidator

from agentstack_core import protocol
from agentstack_core.settings import CommonSettings, ModelSettings, lowercase, variable
from agentstack_runner.engine import DEFAULT_LEASE_TTL
from agentstack_runner.llm.resilience import RetryPolicy


def default_runner_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class RunnerConfig(CommonSettings, ModelSettings):
    """The runner's settings (a pool runner's, or a tick Job's with ``--once``)."""

    runner_id: str = variable(
        "AGENTSTACK_RUNNER_ID",
        "consumer name in the tick stream",
        default_factory=default_runner_id,
        shown="host-pid-random",
    )
    concurrency: int = variable(
        "AGENTSTACK_RUNNER_CONCURRENCY", "ticks in flight (the Redis pool is sized to it)", 64
    )
    visibility_timeout: float = variable(
        "AGENTSTACK_RUNNER_VISIBILITY_TIMEOUT",
        "seconds before another runner claims an unacknowledged tick",
        protocol.DEFAULT_VISIBILITY_TIMEOUT,
    )
    lease_ttl: float = variable(
        "AGENTSTACK_RUNNER_LEASE_TTL",
        "per-stack lease TTL (renewed while a tick runs)",
        DEFAULT_LEASE_TTL,
    )
    claim_interval: float = variable(
        "AGENTSTACK_RUNNER_CLAIM_INTERVAL", "how often to look for abandoned ticks", 5.0
    )
    block_ms: int = 1000
    """How long one read of the tick stream waits for new requests."""
    drain_timeout: float = variable(
        "AGENTSTACK_RUNNER_DRAIN_TIMEOUT",
        "on SIGTERM, seconds to finish in-flight ticks before handing them back",
        30.0,
    )
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from outside the pod
    metrics_port: int = variable(
        "AGENTSTACK_RUNNER_METRICS_PORT", "metrics/health port (0 = off)", 9102
    )
    metrics_max_models: int = variable(
        "AGENTSTACK_METRICS_MAX_MODELS",
        "distinct model names with their own metric series; later ones are `other`",
        20,
    )
    llm_concurrency_groq: int = variable(
        "AGENTSTACK_LLM_CONCURRENCY_GROQ", "fleet-wide concurrent calls to Groq", 64
    )
    llm_concurrency_openai: int = variable(
        "AGENTSTACK_LLM_CONCURRENCY_OPENAI", "fleet-wide concurrent calls to OpenAI", 64
    )
    llm_max_attempts: int = variable(
        "AGENTSTACK_LLM_MAX_ATTEMPTS", "attempts per model before the next in its chain", 3
    )
    llm_base_delay: float = variable(
        "AGENTSTACK_LLM_BASE_DELAY", "back-off base seconds between attempts", 0.5
    )
    credentials: Annotated[Literal["env", "kubernetes", "job"], BeforeValidator(lowercase)] = (
        variable(
            "AGENTSTACK_RUNNER_CREDENTIALS",
            "`env`: the platform's keys from the environment, for every stack; "
            "`kubernetes`: a stack's `secretRef` is read from its namespace through the API "
            "(the pool; needs `get secrets`), never falling back to the pool's keys; `job`: "
            "set by the operator on Job-executor pods, whose environment holds the stack's "
            "own keys (filled from its Secrets)",
            "env",
            shown="`env`",
        )
    )
    secret_cache_seconds: float = variable(
        "AGENTSTACK_RUNNER_SECRET_CACHE_SECONDS", "how long a read Secret is reused", 60.0
    )

    @property
    def llm_concurrency(self) -> dict[str, int]:
        """Fleet-wide call slots per provider."""
        return {"groq": self.llm_concurrency_groq, "openai": self.llm_concurrency_openai}

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.llm_max_attempts, base_delay=self.llm_base_delay)
