"""Tool calls that wait for a person: the approval records in Redis and their rules.

A call to a tool marked ``requireApproval`` is not made. The step that asked commits a
*pending* record (who asked, which tool, the arguments, when it expires) in the stack's
approvals hash; the operator mirrors it as a ``ToolApproval`` object, which people
approve or deny with ``kubectl`` (RBAC decides who may, the API server's audit log
says who did). The decision comes back here (:func:`decide`), and the asking agent's
next step reads it:

    Pending ──decide──► Approved ──claim (the step, under the lease)──► Running
       │                    │                                            │ the call
       │                    └─ (expired first) ─► Expired                ▼
       ├──decide──► Denied                                  Executed (result kept)
       └── past expiresAt ──► Expired           Running found by a resumed step:
                                                Interrupted (never called again)

An approved call runs **at most once**: the step claims the record (``Approved`` →
``Running``, fenced by the stack's lease) before it calls, and commits the result with
the step. A step resumed after its runner died during the call finds the record
``Running`` and marks it ``Interrupted`` instead of calling again — whether the call
reached the tool is unknown then, and the agent is told so. A denied or expired call
never runs. Each final state is told to the agent once (``reported``).

Records are JSON; a field is changed only by the scripts of
:mod:`agentstack_core.redis.approvals` (``decide``, ``claim``) or by a step's commit, so every
state moves forward only. This module is pure: the records and their rules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from agentstack_core.records import JsonRecord


class ApprovalState(StrEnum):
    """Where an approval record stands (the diagram above)."""

    PENDING = "Pending"
    APPROVED = "Approved"
    DENIED = "Denied"
    RUNNING = "Running"
    EXECUTED = "Executed"
    EXPIRED = "Expired"
    INTERRUPTED = "Interrupted"

    @property
    def final(self) -> bool:
        """No state follows it."""
        return self in FINAL


FINAL = frozenset(
    {ApprovalState.DENIED, ApprovalState.EXECUTED, ApprovalState.EXPIRED, ApprovalState.INTERRUPTED}
)
CLAIMED, MISSING = "Claimed", "Missing"
"""Replies of the claim and decide scripts besides a state: the claim took the call; no
approval has that id."""
RESULT_CHARS = 2_000
KEPT = 200
"""Decided approvals kept per stack once their agent was told (the newest; older ones
are forgotten, so the stack's approvals stay bounded however many calls it makes)."""


@dataclass(frozen=True)
class Approval(JsonRecord):
    id: str
    agent: str
    tool: str
    """``server/tool``."""
    arguments: str
    """The call's arguments, as JSON text (what the person approves, byte for byte)."""
    tick_id: str
    requested_at: float
    expires_at: float
    state: ApprovalState = ApprovalState.PENDING
    decided_by: str = ""
    decided_at: float = 0.0
    reason: str = ""
    run_tick: str = ""
    """The tick whose step claimed it to run."""
    result: str = ""
    reported: bool = False
    """Whether the asking agent has been told of its final state."""

    def expired(self, now: float) -> bool:
        return self.state is ApprovalState.PENDING and now >= self.expires_at

    def told(self, state: ApprovalState | None = None, **changes: Any) -> Approval:
        """This record in ``state`` (default: its own), reported to the agent."""
        return replace(self, state=state or self.state, reported=True, **changes)


def approval_id(tick_id: str, agent: str, tool: str, arguments: str) -> str:
    """Deterministic per step and call: a resumed step asks again under the same id."""
    digest = hashlib.sha256(f"{tick_id}|{agent}|{tool}|{arguments}".encode()).hexdigest()
    return digest[:12]


def forgotten(records: list[Approval], keep: int = KEPT) -> list[str]:
    """Ids of the final, reported records beyond the newest ``keep`` (oldest first):
    what the next commit may forget. Waiting or running records are never among them."""
    done = sorted(
        (r for r in records if r.state in FINAL and r.reported),
        key=lambda r: (r.requested_at, r.id),
    )
    return [record.id for record in done[: max(0, len(done) - keep)]]
