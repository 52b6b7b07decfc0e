"""The Job executor: one Kubernetes Job per tick, built by a pure function.

A Job runs ``agentstack runner --once`` for exactly one tick id, so the engine's usual
guarantees hold (a tick runs once, late or stale ticks are dropped). Its name derives
from the tick id, so creating it twice is a harmless 409. It is owned by the stack
(garbage-collected with it), never retried by Kubernetes (``backoffLimit: 0`` — a
failed tick is the operator's to count, not a retry storm), bounded in time
(``activeDeadlineSeconds``), and cleaned up after it finishes
(``ttlSecondsAfterFinished``). API keys reach the pod as environment variables taken
from the stack's Secrets, never through the Job spec itself, and the runner treats
them as the stack's own (``AGENTSTACK_RUNNER_CREDENTIALS=job``): no platform key is
ever in a tick pod. Redis credentials come the same way, from the operator's Secret in
the stack's namespace (:mod:`.tickcredentials`): a Redis ACL user confined to that
namespace's keys, never the platform's password. The pod needs no Kubernetes API: its
service-account token is not mounted.

A failed Job says why: the runner's last log lines become the container's termination
message (``FallbackToLogsOnError``), and :func:`pod_failure` reads it — or the reason a
container never started (an image pull, a missing Secret) — from the Job's pod.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal

from agentstack_core.kube.jobs import Job, Pod
from agentstack_core.messages import TickKind, TickRequest
from agentstack_core.resource import GROUP, KIND, VERSION
from agentstack_core.spec import StackSpec
from agentstack_operator.config import OperatorConfig

STACK_LABEL = "agentstack.dev/stack"
TICK_ANNOTATION = "agentstack.dev/tick-id"
_ENV_KEYS = {"groq": "GROQ_API_KEY", "openai": "OPENAI_API_KEY"}
SECRET_NAME = "agentstack-tick-redis"  # noqa: S105 - a name, not a password
"""The Secret with the tick pods' Redis credentials the operator keeps in each namespace
with ``executor: job`` stacks (:mod:`.tickcredentials`)."""
USERNAME_KEY = "REDIS_USERNAME"
PASSWORD_KEY = "REDIS_PASSWORD"  # noqa: S105 - a key's name, not a password
"""Its keys, named as the runner's environment reads them (:mod:`agentstack_core.connection`)."""


def job_name(request: TickRequest) -> str:
    """``<stack>-<digest of the tick id>``, within the 63 characters a Job name allows."""
    digest = hashlib.sha256(request.tick_id.encode()).hexdigest()[:10]
    return f"{request.stack.name[:40].rstrip('-.')}-tick-{digest}"


def _env(spec: StackSpec, config: OperatorConfig) -> list[dict[str, Any]]:
    """The tick pod's environment: Redis, the runner's settings, and the stack's own
    provider keys from its Secrets (never the platform's)."""
    env: list[dict[str, Any]] = [
        *_redis_env(config),
        {"name": "AGENTSTACK_REDIS_CLUSTER", "value": str(config.redis_cluster).lower()},
        {"name": "AGENTSTACK_RUNNER_METRICS_PORT", "value": "0"},
        {"name": "AGENTSTACK_RUNNER_CREDENTIALS", "value": "job"},
    ]
    if config.prices:
        env.append({"name": "AGENTSTACK_PRICES", "value": config.prices})
    env.extend({"name": name, "value": value} for name, value in config.tracing_env.items())
    for provider, settings in spec.providers.items():
        if settings.secret_ref is not None and provider in _ENV_KEYS:
            ref = settings.secret_ref
            key_ref = {"secretKeyRef": {"name": ref.name, "key": ref.key}}
            env.append({"name": _ENV_KEYS[provider], "valueFrom": key_ref})
    return env


def _command(request: TickRequest, uid: str) -> list[str]:
    """``agentstack runner --once`` for exactly this tick."""
    return [
        "agentstack",
        "runner",
        "--once",
        *("--stack", str(request.stack), "--generation", str(request.generation)),
        *("--slot", str(request.slot), "--tick-id", request.tick_id),
        *("--deadline", repr(request.deadline), "--uid", uid),
        *(("--traceparent", request.traceparent) if request.traceparent else ()),
        *(("--kind", request.kind.value) if request.kind is TickKind.SLEEP else ()),
    ]


def build_job(
    request: TickRequest, *, uid: str, spec: StackSpec, config: OperatorConfig
) -> dict[str, Any]:
    labels = {
        STACK_LABEL: request.stack.name,
        "app.kubernetes.io/name": "agentstack-runner",
        "app.kubernetes.io/component": "tick",
        "app.kubernetes.io/managed-by": "agentstack-operator",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # What the "restricted" Pod Security Standard asks of every pod.
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "runner",
                "image": config.runner_image,
                "command": _command(request, uid),
                "env": _env(spec, config),
                "resources": config.job_resources,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    }
    pod_spec["automountServiceAccountToken"] = False
    if config.runner_service_account:
        pod_spec["serviceAccountName"] = config.runner_service_account
    if config.job_image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in config.job_image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(request),
            "labels": labels,
            "annotations": {TICK_ANNOTATION: request.tick_id},
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": KIND,
                    "name": request.stack.name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(spec.tick_timeout_seconds) + config.job_grace_seconds,
            "ttlSecondsAfterFinished": config.job_ttl_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _redis_env(config: OperatorConfig) -> list[dict[str, Any]]:
    """How a tick pod reaches Redis: the URL (never with credentials in it), and its
    namespace's ACL user and password from the operator's Secret there; the Sentinels
    and the confirmed commits as the operator has them (never the Sentinels' password:
    it is the platform's, and a tick pod's namespace has no copy of it)."""
    topology = {
        "REDIS_SENTINELS": ",".join(config.redis_sentinels),
        "REDIS_SENTINEL_MASTER": config.redis_sentinel_master if config.redis_sentinels else "",
        "REDIS_WAIT_REPLICAS": str(config.redis_wait_replicas or ""),
        "REDIS_WAIT_TIMEOUT_SECONDS": (
            repr(config.redis_wait_timeout_seconds) if config.redis_wait_replicas else ""
        ),
    }
    return [
        {"name": "REDIS_URL", "value": config.job_redis_url},
        *(
            {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": name}}}
            for name in (USERNAME_KEY, PASSWORD_KEY)
        ),
        *({"name": name, "value": value} for name, value in topology.items() if value),
    ]


JobState = Literal["Active", "Complete", "Failed"]


def job_state(job: Job) -> JobState:
    """Whether the Job still runs, or how it finished (its terminal condition)."""
    for condition in job.conditions:
        if condition.true and condition.type in ("Complete", "Failed"):
            return "Complete" if condition.type == "Complete" else "Failed"
    return "Active"


def job_tick(job: Job) -> tuple[str, str] | None:
    """``(stack key, tick id)`` of a tick Job, or ``None`` for a Job that is not one."""
    meta = job.meta
    tick = meta.annotations.get(TICK_ANNOTATION)
    stack = meta.labels.get(STACK_LABEL)
    if not tick or not stack or not meta.namespace:
        return None
    return f"{meta.namespace}/{stack}", tick


def job_failure(job: Job) -> str | None:
    """The failure message of a finished Job, or ``None`` if it did not fail (yet)."""
    failed = job.holds("Failed")
    if failed is None:
        return None
    return f"{failed.reason or 'Failed'}: {failed.message}".strip()


FAILURE_MESSAGE_CHARS = 300
"""How much of a pod's termination message a failed tick keeps (its last line)."""


def pod_failure(pods: Sequence[Pod]) -> str:
    """Why a Job's runner failed, from its newest pod: a container that ended (its
    reason, exit code and termination message — with ``FallbackToLogsOnError``, the
    runner's last log lines) or one that never started (its waiting reason: an image
    that cannot be pulled, a Secret or key that is missing). Empty if the pods say
    nothing (they were deleted already)."""
    for pod in reversed(pods):
        for status in pod.containers:
            ended = status.terminated or status.last_terminated
            if ended:
                lines = [line for line in ended.message.splitlines() if line]
                said = lines[-1][-FAILURE_MESSAGE_CHARS:] if lines else ""
                reason = f"{ended.reason or 'Terminated'} (exit code {ended.exit_code})"
                return f"{reason}: {said}" if said else reason
            waiting = status.waiting
            if waiting and waiting.reason not in ("", "ContainerCreating"):
                message = waiting.message[:FAILURE_MESSAGE_CHARS]
                return f"{waiting.reason}: {message}" if message else waiting.reason
    return ""
