"""The spec model's defaults are the CRD's defaults: one rule, checked in both homes.

The CRD's ``default:`` values are what the API server fills in at admission; the
dataclass defaults in ``agentstack_core.spec`` are what every process assumes when a
field is absent (a spec published before a default existed, a test's hand-written
manifest). If the two disagree, a stack behaves differently depending on who read it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentstack_core.spec import (
    DEFAULTS,
    Completion,
    IdleBackoff,
    Schedule,
    SecretKeyRef,
    ToolServer,
    Trigger,
    Webhook,
    parse_spec,
)

CRD = Path(__file__).resolve().parents[2] / "crds" / "agentstack.dev_agentstacks.yaml"

_IDLE = IdleBackoff(max_interval_seconds=60)
_SCHEDULE = Schedule(cron="* * * * *")
_WEBHOOK = Webhook(name="", secret_ref=SecretKeyRef("", ""))
_TRIGGER = Trigger(name="", service_account_name="")
MODEL_DEFAULTS: dict[str, Any] = {
    "executionState": DEFAULTS.execution_state,
    "schedule.timeZone": _SCHEDULE.time_zone,
    "schedule.jitterSeconds": _SCHEDULE.jitter_seconds,
    "tickTimeoutSeconds": DEFAULTS.tick_timeout_seconds,
    "priority": DEFAULTS.priority,
    "executor": DEFAULTS.executor,
    "missedTickPolicy": DEFAULTS.missed_tick_policy,
    "idleBackoff.afterIdleTicks": _IDLE.after_idle_ticks,
    "idleBackoff.factor": _IDLE.factor,
    "llm.temperature": DEFAULTS.temperature,
    "llm.maxOutputTokens": DEFAULTS.max_output_tokens,
    "llm.requestTimeoutSeconds": DEFAULTS.request_timeout_seconds,
    "llm.onStepFailure": DEFAULTS.step_failure_policy,
    "inputs.maxPerMinute": DEFAULTS.inputs.max_per_minute,
    "inputs.maxBytes": DEFAULTS.inputs.max_bytes,
    "inputs.wake": DEFAULTS.inputs.wake,
    "tools.servers.timeoutSeconds": ToolServer("", "", ()).timeout_seconds,
    "tools.servers.requireApproval": ToolServer("", "", ()).require_approval,
    "tools.servers.protocol": ToolServer("", "", ()).protocol,
    "tools.approvalTimeoutSeconds": DEFAULTS.approval_timeout_seconds,
    "tools.whilePending": DEFAULTS.while_pending,
    "memory.contextTokens": DEFAULTS.memory.context_tokens,
    "memory.longTermTokens": DEFAULTS.memory.long_term_tokens,
    "memory.consolidateEveryTicks": DEFAULTS.memory.consolidate_every_ticks,
    "stalledAfterIdleTicks": DEFAULTS.stalled_after_idle_ticks,
    "completion.confirmBy": Completion().confirm_by,
    "webhooks.format": _WEBHOOK.format,
    "webhooks.maxBodyBytes": _WEBHOOK.max_body_bytes,
    "webhooks.toleranceSeconds": _WEBHOOK.tolerance_seconds,
    "triggers.windowSeconds": _TRIGGER.window_seconds,
}


def _defaults(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, Any]]:
    for name, prop in (schema.get("properties") or {}).items():
        here = f"{path}.{name}" if path else name
        if "default" in prop:
            yield here, prop["default"]
        yield from _defaults(prop, here)
        yield from _defaults(prop.get("items") or {}, here)
        additional = prop.get("additionalProperties")
        if isinstance(additional, dict):
            yield from _defaults(additional, here)


def _crd_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


CRD_DEFAULTS = dict(_defaults(_crd_spec_schema()))


def test_every_crd_default_has_a_home_in_the_model() -> None:
    assert sorted(CRD_DEFAULTS) == sorted(MODEL_DEFAULTS)


@pytest.mark.parametrize("path", sorted(CRD_DEFAULTS))
def test_crd_default_equals_the_model_default(path: str) -> None:
    assert CRD_DEFAULTS[path] == MODEL_DEFAULTS[path]


def test_a_manifest_without_optional_fields_parses_to_the_defaults() -> None:
    spec = parse_spec({"goal": "g"})
    assert spec.executor is DEFAULTS.executor
    assert spec.missed_tick_policy is DEFAULTS.missed_tick_policy
    assert spec.idle_backoff is None
    assert spec.tick_interval_seconds == DEFAULTS.tick_interval_seconds


def test_idle_backoff_takes_its_defaults_from_the_model() -> None:
    spec = parse_spec({"goal": "g", "idleBackoff": {"maxIntervalSeconds": 300}})
    assert spec.idle_backoff == IdleBackoff(
        max_interval_seconds=300, after_idle_ticks=_IDLE.after_idle_ticks, factor=_IDLE.factor
    )


def test_the_crd_has_no_key_twice() -> None:
    """YAML keeps the last of two equal keys silently; a second copy of a field would
    hide an edit made to the first."""

    class Strict(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        keys = [loader.construct_object(key) for key, _value in node.value]
        twice = sorted({str(key) for key in keys if keys.count(key) > 1})
        assert not twice, f"line {node.start_mark.line + 1}: {twice} twice"
        return loader.construct_mapping(node)

    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    assert yaml.load(CRD.read_text(), Loader=Strict)  # noqa: S506 - a safe loader


def test_the_interval_the_crd_assumes_when_none_is_set_is_the_models() -> None:
    """``tickIntervalSeconds`` has no CRD default (a scheduled stack must not carry
    one), so the rules that compare with it name the model's default themselves."""
    rules = [r["rule"] for r in _crd_spec_schema()["x-kubernetes-validations"]]
    assuming = [r for r in rules if "has(self.tickIntervalSeconds) ?" in r]
    assert assuming
    for rule in assuming:
        assert f"self.tickIntervalSeconds : {DEFAULTS.tick_interval_seconds})" in rule
