"""Kopf handlers: they only register and delegate to :class:`~.coordinator.Operator`.

- every watch event of an AgentStack goes to :meth:`Operator.observe` (the index, and
  the ``agentstack.dev/cleanup`` finalizer, which the operator keeps itself:
  :mod:`.finalizing` says why), or to :meth:`Operator.remove` once it is gone;
- Job events tell which stacks have a tick Job running, and report failed ones
  (:meth:`Operator.job_seen`);
- every watch event of an AgentBudget goes to :meth:`Operator.budget_seen` or
  :meth:`Operator.budget_gone` (:mod:`.budgets`; no finalizer).

Only event handlers are registered, on purpose: with a change or deletion handler Kopf
would run its change detection and write its bookkeeping annotations on every event.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from agentstack_core.keys import StackRef
from agentstack_core.resource import BUDGET_PLURAL, GROUP, PLURAL, VERSION
from agentstack_operator.coordinator import Operator
from agentstack_operator.jobs import STACK_LABEL


def settings() -> kopf.OperatorSettings:
    """Kopf settings: watches that stay alive, and Kopf's own Events only for warnings."""
    config = kopf.OperatorSettings()
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

    @kopf.on.event(GROUP, VERSION, BUDGET_PLURAL, registry=registry)  # type: ignore[arg-type]
    async def budget_event(event: dict[str, Any], body: kopf.Body, **_: Any) -> None:
        if event.get("type") == "DELETED":
            operator.budget_gone(body.metadata.namespace or "", body.metadata.name or "")
        else:
            operator.budget_seen(dict(body))

    @kopf.on.event(  # type: ignore[arg-type]
        "batch", "v1", "jobs", labels={STACK_LABEL: kopf.PRESENT}, registry=registry
    )
    async def job_event(event: dict[str, Any], body: kopf.Body, **_: Any) -> None:
        if event.get("type") in ("ADDED", "MODIFIED", None):
            await operator.job_seen(dict(body))

    return registry
