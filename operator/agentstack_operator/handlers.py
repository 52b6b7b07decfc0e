"""Kopf handlers: they only register and delegate to :class:`~.runtime.Operator`.

- every watch event of an AgentStack goes to :meth:`Operator.observe` (the index);
- deletion runs :meth:`Operator.forget` behind the ``agentstack.dev/cleanup`` finalizer
  (Redis keys, Jobs), with a time limit so a namespace deletion never hangs on it;
- Job events tell which stacks have a tick Job running, and report failed ones
  (:meth:`Operator.job_seen`).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from agentstack_core.keys import StackRef
from agentstack_core.resource import GROUP, PLURAL, VERSION
from agentstack_operator.jobs import STACK_LABEL
from agentstack_operator.runtime import Operator

FINALIZER = "agentstack.dev/cleanup"
CLEANUP_TIMEOUT_SECONDS = 120


def settings() -> kopf.OperatorSettings:
    """Kopf settings for a strict CRD: bookkeeping in annotations, watches that stay alive."""
    config = kopf.OperatorSettings()
    config.persistence.finalizer = FINALIZER
    config.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="agentstack.dev")
    config.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="agentstack.dev", key="last-handled-configuration"
    )
    config.watching.server_timeout = 300
    config.watching.client_timeout = 310
    config.watching.connect_timeout = 30
    config.posting.level = logging.WARNING
    return config


def build_registry(operator: Operator) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)  # type: ignore[arg-type]
    async def stack_event(event: dict[str, Any], body: kopf.Body, **_: Any) -> None:
        if event.get("type") == "DELETED":
            operator.remove(StackRef(body.metadata.namespace or "", body.metadata.name or ""))
        else:
            await operator.observe(dict(body))

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, timeout=CLEANUP_TIMEOUT_SECONDS)
    async def stack_deleted(body: kopf.Body, **_: Any) -> None:
        await operator.forget(
            StackRef(body.metadata.namespace or "", body.metadata.name or ""),
            body.metadata.uid or "",
        )

    @kopf.on.event(  # type: ignore[arg-type]
        "batch", "v1", "jobs", labels={STACK_LABEL: kopf.PRESENT}, registry=registry
    )
    async def job_event(event: dict[str, Any], body: kopf.Body, **_: Any) -> None:
        if event.get("type") in ("ADDED", "MODIFIED", None):
            await operator.job_seen(dict(body))

    return registry
