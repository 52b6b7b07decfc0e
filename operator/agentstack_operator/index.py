"""The in-memory index of stacks: one :class:`StackRecord` per AgentStack, fed by the watch.

Data flow::

    watch event (every replica) ──► StackIndex.observe(manifest) ──► Observation
                                        │ record created (adopting the status it
                                        │ carries) or updated by apply_manifest()
                                        ▼
    coordinator (coordinator.py) ── cause ──► publish the spec, check Secrets, reschedule
                          ── events ─► mark for a status write, post Events

The index keeps the records and says what a manifest changed; it never schedules,
writes status, or talks to Redis or the API server. So the rule "what does this watch
event mean" has one home, testable without I/O, and every replica keeps a warm index
(a standby takes over with nothing to rebuild) while only the leader acts on it.

A new record continues from the status the previous operator wrote (a restart, a
failover): counters, the last tick and the conditions are adopted, so transition times
are kept and nothing counts from zero again. A new uid under the same name is a new
stack (deleted and recreated): it starts a fresh record.
"""

from __future__ import annotations

import calendar
import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from agentstack_core.budget import Usage
from agentstack_core.endpoints import EndpointPolicy
from agentstack_core.forking import forked_from
from agentstack_core.keys import StackRef
from agentstack_core.pricing import nanos
from agentstack_core.reasons import ConditionReason, ConditionType
from agentstack_core.spec import ExecutionState, Schedule
from agentstack_operator.scheduling import Cause
from agentstack_operator.stackstate import (
    NO_GATEWAYS,
    Event,
    LastTick,
    StackRecord,
    apply_manifest,
)


def epoch(timestamp: str | None) -> float:
    """Seconds since the epoch of a Kubernetes timestamp (``0.0`` when absent)."""
    if not timestamp:
        return 0.0
    return float(calendar.timegm(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ")))


@dataclass(frozen=True)
class Observation:
    """What one watch event changed in the index."""

    record: StackRecord
    events: tuple[Event, ...] = ()
    """Transitions the manifest caused (Started, Paused, InvalidSpec…)."""
    cause: Cause | None = None
    """How the schedule must react to a new generation; ``None`` when the generation is
    unchanged (a metadata edit, or the echo of our own status write)."""
    deleting: bool = False
    """The stack carries a deletionTimestamp: it must stop ticking (the finalizer
    cleans up)."""


def adopt_status(record: StackRecord, status: dict[str, Any]) -> None:
    """Continue from the status a previous operator wrote (restart, failover)."""
    record.conditions = {c["type"]: c for c in status.get("conditions") or []}
    cost = 0
    with contextlib.suppress(ValueError):
        cost = nanos(float(status.get("costUSD") or 0))
    record.usage = Usage(
        tokens=int(status.get("tokensUsed") or 0),
        ticks=int(status.get("ticks") or 0),
        failures=int(status.get("consecutiveFailures") or 0),
        cost=cost,
        unpriced=int(status.get("unpricedCalls") or 0),
    )
    if status.get("lastTickId"):
        record.last_tick = LastTick(
            tick_id=str(status["lastTickId"]),
            outcome=str(status.get("lastTickResult") or ""),
            reason=str(status.get("lastTickReason") or ""),
            message=str(status.get("lastTickMessage") or ""),
            finished_at=epoch(status.get("lastTickTime")),
            duration=float(status.get("lastTickDurationSeconds") or 0.0),
        )
    record.evals = adopted_evals(status.get("evals"))
    paused = record.conditions.get(ConditionType.PAUSED)
    record.resumed = bool(paused and paused.get("reason") == ConditionReason.RESUMED)


def adopted_evals(raw: Any) -> dict[str, dict[str, float]]:
    """``status.evals`` as a previous operator wrote it (what does not parse is left)."""
    adopted: dict[str, dict[str, float]] = {}
    for name, values in (raw or {}).items() if isinstance(raw, dict) else ():
        with contextlib.suppress(TypeError, ValueError, KeyError):
            adopted[str(name)] = {"mean": float(values["mean"]), "ticks": int(values["ticks"])}
    return adopted


def _cause(
    record: StackRecord, previous: tuple[float, Schedule | None] | None, was_paused: bool
) -> Cause:
    """How a new generation moves the stack's next tick."""
    if was_paused and record.resumed:
        return "resume"
    if previous is None:
        return "start"
    if previous == record.cadence:
        return "keep"  # an edit that leaves the interval or schedule alone keeps the next slot
    return "spec"


class StackIndex(Mapping[str, StackRecord]):
    """Records by ``namespace/name``; a read-only mapping to the other parts."""

    def __init__(self, endpoints: EndpointPolicy = NO_GATEWAYS) -> None:
        self._records: dict[str, StackRecord] = {}
        self.endpoints = endpoints

    def __getitem__(self, key: str) -> StackRecord:
        return self._records[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def observe(self, body: dict[str, Any]) -> Observation:
        """Take a stack's manifest from a watch event; say what it changed."""
        meta = body.get("metadata") or {}
        ref = StackRef(meta["namespace"], meta["name"])
        record = self._records.get(str(ref))
        if record is None or record.uid != meta.get("uid"):
            origin = forked_from(meta.get("annotations"))
            record = StackRecord(
                ref=ref,
                uid=str(meta.get("uid")),
                created_at=epoch(meta.get("creationTimestamp")),
                forked_from="@".join(origin) if origin else "",
            )
            adopt_status(record, body.get("status") or {})
            self._records[record.key] = record
        if meta.get("deletionTimestamp"):
            return Observation(record, deleting=True)
        previous_generation = record.generation
        previous = record.cadence if record.spec else None
        was_paused = record.state is ExecutionState.PAUSED if record.raw_spec else False
        events = tuple(apply_manifest(record, body, self.endpoints))
        if record.generation == previous_generation:
            return Observation(record, events)
        return Observation(record, events, _cause(record, previous, was_paused))

    def remove(self, key: str) -> StackRecord | None:
        """Drop the record (the stack is gone from the API server)."""
        return self._records.pop(key, None)

    def forget(self, ref: StackRef, uid: str) -> bool:
        """Drop the record of incarnation ``uid``; ``False`` when a newer one (same
        name, another uid) holds the name, which must then be left alone."""
        record = self._records.get(str(ref))
        if record is not None and record.uid != uid:
            return False
        self._records.pop(str(ref), None)
        return True
