"""The operator's settings (:class:`OperatorConfig`), from its environment.

Every variable is declared once, with its meaning and default, as a field below or in
the shared parts of :mod:`agentstack_core.settings`; the README's table is generated
from them.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from typing import Self

from pydantic import Field, field_validator, model_validator

from agentstack_core.settings import (
    CommaList,
    CommonSettings,
    JsonObject,
    ModelSettings,
    NotNegative,
    WatchSettings,
    variable,
)
from agentstack_operator.gctuning import DEFAULT_GEN0_THRESHOLD, DEFAULT_THAW_SECONDS

REMOVED = {
    "AGENTSTACK_JOB_REDIS_SECRET": (
        "AGENTSTACK_JOB_REDIS_SECRET (operator.jobExecutor.redisSecretName) was removed: "
        "it handed the platform's Redis password to every tenant; tick pods now get a "
        "Redis user of their own namespace from the operator"
    ),
}
"""Variables that no longer do anything, and why: set, they stop the operator at start
rather than being silently ignored."""


class OperatorConfig(CommonSettings, WatchSettings, ModelSettings):
    """The operator's settings."""

    operator_namespace: str = variable(
        "AGENTSTACK_OPERATOR_NAMESPACE", "where the leader Lease lives", "default"
    )
    lease_name: str = variable(
        "AGENTSTACK_LEASE_NAME",
        "the Lease's name (one per installation)",
        "agentstack-operator",
    )
    operator_id: str = variable(
        "AGENTSTACK_OPERATOR_ID",
        "this replica's identity in the Lease",
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        shown="host-pid",
    )
    lease_seconds: float = variable(
        "AGENTSTACK_LEASE_SECONDS", "how long a silent leader keeps the Lease", 15.0
    )
    status_min_interval: float = variable(
        "AGENTSTACK_STATUS_MIN_INTERVAL",
        "per-stack minimum seconds between routine status writes (condition changes go "
        "out at once)",
        10.0,
    )
    status_writes_per_second: float = variable(
        "AGENTSTACK_STATUS_WRITES_PER_SECOND",
        "fleet-wide cap on status writes (past it, stacks take turns, longest-waiting "
        "first: a stack's routine status is rewritten every ticking stacks ÷ cap seconds)",
        20.0,
    )
    dispatch_batch: int = variable("AGENTSTACK_DISPATCH_BATCH", "ticks per pipelined dispatch", 500)
    dispatch_backlog: int = variable(
        "AGENTSTACK_DISPATCH_BACKLOG",
        "most tick requests the lanes may hold that no runner has received yet (they "
        "hold what the runners take in a few hundredths of a second); past that, due "
        "ticks wait in the operator and go out by namespace, in fair shares (0: no "
        "limit, first come, first served)",
        1000,
    )
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from outside the pod
    metrics_port: int = variable("AGENTSTACK_METRICS_PORT", "metrics/health port (0 = off)", 9101)
    per_stack_metrics: bool = variable(
        "AGENTSTACK_METRICS_PER_STACK",
        "also export the `agentstack_stack_*` series labelled by stack (the per-stack "
        "dashboard needs them; four series per stack)",
        False,
    )
    runner_image: str = variable(
        "AGENTSTACK_RUNNER_IMAGE",
        "the image of the Job executor's tick pods",
        "agentstack-operator:latest",
    )
    runner_service_account: str = variable(
        "AGENTSTACK_RUNNER_SERVICE_ACCOUNT",
        "the tick pods' service account (must exist in each stack's namespace)",
        "",
        shown="the namespace's default",
    )
    job_redis_url: str = variable(
        "AGENTSTACK_JOB_REDIS_URL",
        "how tick pods reach Redis (never with credentials: each namespace's tick pods "
        "log in as a Redis user of their own, which the operator makes)",
        "",
        shown="`REDIS_URL` without its credentials",
    )
    job_credential_rotation_seconds: NotNegative = variable(
        "AGENTSTACK_JOB_CREDENTIAL_ROTATION_SECONDS",
        "how often each namespace's tick-pod Redis password is replaced; the previous one "
        "is accepted until the next rotation, so longer than any tick Job runs (0: never)",
        86400.0,
    )
    job_image_pull_secrets: CommaList = variable(
        "AGENTSTACK_JOB_IMAGE_PULL_SECRETS",
        "comma-separated names of the tick pods' image pull Secrets (they must exist in "
        "the stacks' namespaces)",
        default_factory=list,
        shown="none",
    )
    job_resources: JsonObject = variable(
        "AGENTSTACK_JOB_RESOURCES",
        "JSON of the tick pods' container `resources`",
        default_factory=lambda: {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        shown="requests 50m CPU, 128Mi; limit 512Mi",
    )
    job_ttl_seconds: int = variable(
        "AGENTSTACK_JOB_TTL_SECONDS", "how long a finished tick Job is kept", 300
    )
    job_grace_seconds: int = variable(
        "AGENTSTACK_JOB_GRACE_SECONDS",
        "how long a tick Job may run beyond its stack's `tickTimeoutSeconds` before "
        "Kubernetes stops it",
        60,
    )
    gc_thaw_seconds: NotNegative = variable(
        "AGENTSTACK_GC_THAW_SECONDS",
        "what survives a full garbage collection is frozen (later ones walk only newer "
        "objects: short pauses at 10,000 stacks) and given back to the collector this "
        "often (0 = off)",
        DEFAULT_THAW_SECONDS,
    )
    gc_gen0_threshold: int = variable(
        "AGENTSTACK_GC_GEN0_THRESHOLD",
        "allocations between young garbage collections (0 = CPython's 700); with the "
        "freezing, dispatch lag p99 under 100 ms at 10,000 stacks (`bench/RESULTS.md`)",
        DEFAULT_GEN0_THRESHOLD,
    )
    tracing_env: dict[str, str] = Field(default_factory=dict)
    """The ``OTEL_*`` and ``AGENTSTACK_TRACE_CONTENT`` variables the operator runs with:
    tick Jobs get them too, so their spans reach the same receiver — except the
    exporter's headers, which may hold a credential and would be written in plain text
    into every Job's spec. Not a setting of its own: copied from the environment."""

    @field_validator("gc_gen0_threshold")
    @classmethod
    def _gen0_not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be 0 (CPython's own setting) or more")
        return value

    @model_validator(mode="after")
    def _job_redis_without_credentials(self) -> Self:
        # What is written into every tick Job's spec: never a password.
        self.job_redis_url = without_credentials(self.job_redis_url or self.redis_url)
        return self

    @classmethod
    def from_env(cls) -> Self:
        for name, why in REMOVED.items():
            if os.environ.get(name):
                raise ValueError(why)
        config = super().from_env()
        config.tracing_env = {
            name: value
            for name, value in sorted(os.environ.items())
            if (name.startswith("OTEL_") and not name.endswith("_HEADERS"))
            or name == "AGENTSTACK_TRACE_CONTENT"
        }
        return config


def without_credentials(url: str) -> str:
    """``url`` without a user or password: what may be written into a Job's spec."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))
