"""Operator settings, from documented environment variables (defaults in parentheses).

``REDIS_URL`` (required) and ``AGENTSTACK_REDIS_CLUSTER`` (false) — the Redis the runners
use. ``AGENTSTACK_WATCH_NAMESPACES`` (empty: all namespaces) — comma-separated
namespaces to watch. ``AGENTSTACK_OPERATOR_NAMESPACE`` (``default``) and
``AGENTSTACK_OPERATOR_ID`` (host-pid) — where the leader-election Lease lives and who
holds it; ``AGENTSTACK_LEASE_NAME`` (``agentstack-operator``) — its name (one per
installation). ``AGENTSTACK_LEASE_SECONDS`` (15) — how long a silent leader keeps the lease.
``AGENTSTACK_STATUS_MIN_INTERVAL`` (10 s) — per-stack minimum time between routine status
writes (condition changes go out at once). ``AGENTSTACK_STATUS_WRITES_PER_SECOND``
(20) — fleet-wide cap on status writes; past it, stacks take turns (longest-waiting first), so a
big fleet's routine status is rewritten every ticking stacks ÷ cap seconds.
``AGENTSTACK_DISPATCH_BATCH`` (500) — ticks per pipelined dispatch.
``AGENTSTACK_METRICS_PORT`` (9101; 0 = off). For the Job executor:
``AGENTSTACK_RUNNER_IMAGE`` (``agentstack-operator:latest``),
``AGENTSTACK_RUNNER_SERVICE_ACCOUNT`` (empty: the namespace default),
``AGENTSTACK_JOB_REDIS_URL`` (``REDIS_URL`` without its credentials) — how tick pods
reach Redis; their credentials are a Redis ACL user of their namespace that the
operator makes and keeps in a Secret there (:mod:`.tickcredentials`);
``AGENTSTACK_JOB_CREDENTIAL_ROTATION_SECONDS`` (86400; 0 = never) — how often that
password is replaced (longer than any tick Job may run: the previous one is accepted
until the next rotation);
``AGENTSTACK_JOB_IMAGE_PULL_SECRETS`` (empty; comma-separated names, which must exist in
the stacks' namespaces); ``AGENTSTACK_JOB_RESOURCES`` (JSON of a container's
``resources``; default requests 50m CPU and 128Mi, limit 512Mi);
``AGENTSTACK_JOB_TTL_SECONDS`` (300), ``AGENTSTACK_JOB_GRACE_SECONDS`` (60: a Job may run
this long beyond the stack's tickTimeoutSeconds before Kubernetes stops it).
``AGENTSTACK_ALLOWED_BASE_URLS`` (empty) — endpoints besides the providers' public ones
that the platform's LLM keys may be sent to (see ``agentstack_core.endpoints``).
``AGENTSTACK_GC_THAW_SECONDS`` (3600; 0 = off) — what survives a full garbage collection
is frozen, and given back to the collector this often; ``AGENTSTACK_GC_GEN0_THRESHOLD``
(20000; 0 = CPython's 700) — allocations between young collections (see ``gctuning``).
"""

from __future__ import annotations

import json
import os
import socket
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from agentstack_core.endpoints import EndpointPolicy
from agentstack_core.environment import env_bool, env_float, env_int, env_list
from agentstack_operator.gctuning import DEFAULT_GEN0_THRESHOLD, DEFAULT_THAW_SECONDS


@dataclass
class OperatorConfig:
    redis_url: str = ""
    redis_cluster: bool = False
    namespaces: list[str] = field(default_factory=list)
    operator_namespace: str = "default"
    operator_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    lease_name: str = "agentstack-operator"
    lease_seconds: float = 15.0
    status_min_interval: float = 10.0
    status_writes_per_second: float = 20.0
    dispatch_batch: int = 500
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from outside the pod
    metrics_port: int = 9101
    runner_image: str = "agentstack-operator:latest"
    runner_service_account: str = ""
    job_redis_url: str = ""
    job_credential_rotation_seconds: float = 86400.0
    job_image_pull_secrets: list[str] = field(default_factory=list)
    job_resources: dict[str, Any] = field(
        default_factory=lambda: {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        }
    )
    job_ttl_seconds: int = 300
    job_grace_seconds: int = 60
    endpoints: EndpointPolicy = field(default_factory=EndpointPolicy)
    gc_thaw_seconds: float = DEFAULT_THAW_SECONDS
    gc_gen0_threshold: int = DEFAULT_GEN0_THRESHOLD
    per_stack_metrics: bool = False
    """Series labelled by stack (``agentstack_stack_*``): off, their number grows with
    the fleet."""
    prices: str = ""
    tracing_env: dict[str, str] = field(default_factory=dict)
    """The ``OTEL_*`` and ``AGENTSTACK_TRACE_CONTENT`` variables the operator runs with:
    tick Jobs get them too, so their spans reach the same receiver — except the
    exporter's headers, which may hold a credential and would be written in plain text
    into every Job's spec."""
    """``AGENTSTACK_PRICES`` as the operator got it: passed on to tick Jobs, whose runner
    prices calls like the pool's."""

    @classmethod
    def from_env(cls) -> OperatorConfig:
        if os.environ.get("AGENTSTACK_JOB_REDIS_SECRET"):
            raise ValueError(
                "AGENTSTACK_JOB_REDIS_SECRET (operator.jobExecutor.redisSecretName) was "
                "removed: it handed the platform's Redis password to every tenant; tick "
                "pods now get a Redis user of their own namespace from the operator"
            )
        defaults = cls()
        redis_url = os.environ.get("REDIS_URL", "")
        return cls(
            redis_url=redis_url,
            redis_cluster=env_bool("AGENTSTACK_REDIS_CLUSTER"),
            namespaces=env_list("AGENTSTACK_WATCH_NAMESPACES"),
            operator_namespace=os.environ.get(
                "AGENTSTACK_OPERATOR_NAMESPACE", defaults.operator_namespace
            ),
            operator_id=os.environ.get("AGENTSTACK_OPERATOR_ID") or defaults.operator_id,
            lease_name=os.environ.get("AGENTSTACK_LEASE_NAME") or defaults.lease_name,
            lease_seconds=env_float("AGENTSTACK_LEASE_SECONDS", defaults.lease_seconds),
            status_min_interval=env_float(
                "AGENTSTACK_STATUS_MIN_INTERVAL", defaults.status_min_interval
            ),
            status_writes_per_second=env_float(
                "AGENTSTACK_STATUS_WRITES_PER_SECOND", defaults.status_writes_per_second
            ),
            dispatch_batch=env_int("AGENTSTACK_DISPATCH_BATCH", defaults.dispatch_batch),
            metrics_port=env_int("AGENTSTACK_METRICS_PORT", defaults.metrics_port),
            runner_image=os.environ.get("AGENTSTACK_RUNNER_IMAGE", defaults.runner_image),
            runner_service_account=os.environ.get("AGENTSTACK_RUNNER_SERVICE_ACCOUNT", ""),
            job_redis_url=without_credentials(
                os.environ.get("AGENTSTACK_JOB_REDIS_URL") or redis_url
            ),
            job_credential_rotation_seconds=_not_negative(
                "AGENTSTACK_JOB_CREDENTIAL_ROTATION_SECONDS",
                env_float(
                    "AGENTSTACK_JOB_CREDENTIAL_ROTATION_SECONDS",
                    defaults.job_credential_rotation_seconds,
                ),
            ),
            job_image_pull_secrets=env_list("AGENTSTACK_JOB_IMAGE_PULL_SECRETS"),
            job_resources=_json_object("AGENTSTACK_JOB_RESOURCES", defaults.job_resources),
            job_ttl_seconds=env_int("AGENTSTACK_JOB_TTL_SECONDS", defaults.job_ttl_seconds),
            job_grace_seconds=env_int("AGENTSTACK_JOB_GRACE_SECONDS", defaults.job_grace_seconds),
            endpoints=EndpointPolicy.from_env(),
            per_stack_metrics=env_bool("AGENTSTACK_METRICS_PER_STACK"),
            prices=os.environ.get("AGENTSTACK_PRICES", "").strip(),
            tracing_env={
                name: value
                for name, value in sorted(os.environ.items())
                if (name.startswith("OTEL_") and not name.endswith("_HEADERS"))
                or name == "AGENTSTACK_TRACE_CONTENT"
            },
            gc_thaw_seconds=_not_negative(
                "AGENTSTACK_GC_THAW_SECONDS",
                env_float("AGENTSTACK_GC_THAW_SECONDS", defaults.gc_thaw_seconds),
            ),
            gc_gen0_threshold=int(
                _not_negative(
                    "AGENTSTACK_GC_GEN0_THRESHOLD",
                    env_int("AGENTSTACK_GC_GEN0_THRESHOLD", defaults.gc_gen0_threshold),
                )
            ),
        )


def _not_negative(name: str, value: float) -> float:
    if value < 0:
        raise ValueError(f"{name}={value:g}: must be 0 (CPython's own setting) or more")
    return value


def _json_object(name: str, default: dict[str, Any]) -> dict[str, Any]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object")
    return value


def without_credentials(url: str) -> str:
    """``url`` without a user or password: what may be written into a Job's spec."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))
