"""A fork's manifest: a copy of a stack's spec, shadowed, with a person's overrides.

A fork is a new AgentStack that starts from a checkpoint of its source
(:mod:`agentstack_core.redis.checkpoints`) to try a change — another model, a prompt —
without touching the original. What it may do to the world is held back until a person
says otherwise, so that trying a change never acts twice on the world:

- every tool server's calls wait for a person's approval (``requireApproval: true`` on
  each of ``spec.tools.servers``);
- webhooks and triggers are not copied (a second stack woken by the same delivery or
  Pod event would double what the source does); its inputs come from people, or from
  the source when it mirrors it (:data:`MIRROR_OF`);
- its budget counters start at zero: it spends its own.

Where it came from is written on it (:data:`FORKED_FROM`; the operator shows it as
``status.forkedFrom``). Overrides are ``path=value`` pairs on the spec, ``value`` as
JSON when it parses (``3``, ``true``, ``{"provider": "groq", …}``) and as text
otherwise: ``spec.agents[1].systemPrompt=Be terse.``. This module is pure: the API
checks the caller's rights, creates the object with the caller's token and seeds it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from typing import Any

from agentstack_core.resource import GROUP, KIND, VERSION

FORKED_FROM = f"{GROUP}/forked-from"
"""Annotation on a fork: ``namespace/name@tick`` of the source and the checkpoint."""
MIRROR_OF = f"{GROUP}/mirror-of"
"""Annotation on a fork that mirrors its source: ``namespace/name``. Every input the
source accepts is sent to the fork too (once: the API sends it with a delivery id)."""
NOT_COPIED = ("webhooks", "triggers")
"""Spec fields a fork leaves out: what wakes the source from outside."""

_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")


class ForkError(ValueError):
    """An override that does not name a place in the spec (a 400 for the caller)."""


def forked_from(annotations: dict[str, str] | None) -> tuple[str, str] | None:
    """(source ``namespace/name``, tick id) from a fork's annotations, else ``None``."""
    value = (annotations or {}).get(FORKED_FROM, "")
    source, sep, tick = value.partition("@")
    return (source, tick) if sep and source and tick else None


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``spec.a.b[1].c=value`` as (the path below ``spec``, the value)."""
    path, sep, raw = text.partition("=")
    if not sep:
        raise ForkError(f"{text!r}: an override is PATH=VALUE")
    steps = path.split(".")
    if steps[0] != "spec" or len(steps) < 2:
        raise ForkError(f"{path!r}: an override's path starts with spec. (spec.goal=…)")
    found: list[str | int] = []
    for step in steps[1:]:
        match = _STEP.fullmatch(step)
        if match is None:
            raise ForkError(f"{path!r}: {step!r} is not a field name with optional [index]")
        found.append(match.group(1))
        found.extend(int(index) for index in re.findall(r"\[(\d+)\]", match.group(2)))
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return found, value


def _set(spec: dict[str, Any], path: Sequence[str | int], value: Any, text: str) -> None:
    here: Any = spec
    for position, step in enumerate(path):
        last = position == len(path) - 1
        if isinstance(step, int):
            if not isinstance(here, list) or step >= len(here):
                raise ForkError(f"{text!r}: no item {step} there")
            if last:
                here[step] = value
            else:
                here = here[step]
            continue
        if not isinstance(here, dict):
            raise ForkError(f"{text!r}: {step!r} is not below an object")
        if last:
            here[step] = value
        else:
            here = here.setdefault(step, [] if isinstance(path[position + 1], int) else {})


def fork_manifest(
    source: dict[str, Any],
    *,
    namespace: str,
    name: str,
    tick: str,
    overrides: Sequence[str] = (),
    mirror: bool = False,
) -> dict[str, Any]:
    """The new AgentStack (see the module docstring). ``source``: the source object as
    the API server serves it; ``tick``: the checkpoint it starts from."""
    meta = source.get("metadata") or {}
    spec = copy.deepcopy(source.get("spec") or {})
    for field in NOT_COPIED:
        spec.pop(field, None)
    for server in (spec.get("tools") or {}).get("servers") or []:
        server["requireApproval"] = True
        server.pop("requireApprovalFor", None)
    for text in overrides:
        path, value = parse_override(text)
        _set(spec, path, value, text)
    spec["executionState"] = "Paused"  # seeded first; the API resumes it
    ref = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    annotations = {FORKED_FROM: f"{ref}@{tick}"}
    if mirror:
        annotations[MIRROR_OF] = ref
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": spec,
    }
