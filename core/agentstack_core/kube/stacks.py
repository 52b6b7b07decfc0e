"""AgentStacks as the API server holds them: their paths, and a typed view of what is
read of a stack besides its spec (which :func:`~agentstack_core.spec.parse_spec`
reads): its metadata and the summary of its status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentstack_core.kube.manifests import Manifest, ObjectMeta, count, mapping, text
from agentstack_core.kube.paths import resource_path
from agentstack_core.reasons import ConditionType
from agentstack_core.resource import GROUP, PLURAL, VERSION
from agentstack_core.spec import DEFAULTS


def stacks_path(namespace: str | None = None) -> str:
    """The stacks of ``namespace`` (``None``: of every namespace)."""
    return resource_path(GROUP, VERSION, PLURAL, namespace=namespace)


def stack_path(namespace: str, name: str, subresource: str | None = None) -> str:
    return resource_path(
        GROUP, VERSION, PLURAL, namespace=namespace, name=name, subresource=subresource
    )


@dataclass(frozen=True)
class StackStatus:
    """What dashboards list of a stack's status."""

    phase: str | None = None
    conditions: Mapping[str, str] = field(default_factory=dict)
    """Each condition's status by its type."""
    ticks: int = 0
    tokens_used: int = 0
    cost_usd: float | None = None
    """Dollars spent; ``None`` while unknown (a call of an unpriced model) or not
    written yet."""
    last_tick_time: str | None = None
    last_tick_result: str | None = None

    def condition(self, kind: ConditionType) -> str | None:
        return self.conditions.get(kind)

    @classmethod
    def of(cls, status: Mapping[str, Any]) -> StackStatus:
        conditions = status.get("conditions")
        return cls(
            phase=_optional_text(status.get("phase")),
            conditions={
                text(c.get("type")): text(c.get("status"))
                for c in (mapping(item) for item in conditions)
            }
            if isinstance(conditions, list)
            else {},
            ticks=count(status.get("ticks")),
            tokens_used=count(status.get("tokensUsed")),
            cost_usd=None if status.get("unpricedCalls") else _dollars(status.get("costUSD")),
            last_tick_time=_optional_text(status.get("lastTickTime")),
            last_tick_result=_optional_text(status.get("lastTickResult")),
        )


@dataclass(frozen=True)
class StackManifest:
    """A stack as the API server sends it: typed metadata and status summary, its spec
    and status as they came (the API shows status as written)."""

    meta: ObjectMeta
    spec: Mapping[str, Any]
    status: Mapping[str, Any]

    @property
    def execution_state(self) -> str:
        return text(self.spec.get("executionState"), DEFAULTS.execution_state.value)

    @property
    def summary(self) -> StackStatus:
        return StackStatus.of(self.status)

    @classmethod
    def of(cls, manifest: Manifest) -> StackManifest:
        return cls(
            meta=ObjectMeta.of(manifest),
            spec=mapping(manifest.get("spec")),
            status=mapping(manifest.get("status")),
        )


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _dollars(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None
