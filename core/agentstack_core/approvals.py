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

Records are JSON; a field is changed only by these scripts or by a step's commit, so
every state moves forward only.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import RedisClient
from agentstack_core.scripting import Script

PENDING, APPROVED, DENIED = "Pending", "Approved", "Denied"
RUNNING, EXECUTED, EXPIRED, INTERRUPTED = "Running", "Executed", "Expired", "Interrupted"
FINAL = (DENIED, EXECUTED, EXPIRED, INTERRUPTED)
RESULT_CHARS = 2_000


@dataclass(frozen=True)
class Approval:
    id: str
    agent: str
    tool: str
    """``server/tool``."""
    arguments: str
    """The call's arguments, as JSON text (what the person approves, byte for byte)."""
    tick_id: str
    requested_at: float
    expires_at: float
    state: str = PENDING
    decided_by: str = ""
    decided_at: float = 0.0
    reason: str = ""
    run_tick: str = ""
    """The tick whose step claimed it to run."""
    result: str = ""
    reported: bool = False
    """Whether the asking agent has been told of its final state."""

    def encode(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def decode(cls, raw: str) -> Approval:
        fields = orjson.loads(raw)
        return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})

    def expired(self, now: float) -> bool:
        return self.state == PENDING and now >= self.expires_at

    def told(self, state: str | None = None, **changes: Any) -> Approval:
        """This record in ``state`` (default: its own), reported to the agent."""
        return replace(self, state=state or self.state, reported=True, **changes)


def approval_id(tick_id: str, agent: str, tool: str, arguments: str) -> str:
    """Deterministic per step and call: a resumed step asks again under the same id."""
    digest = hashlib.sha256(f"{tick_id}|{agent}|{tool}|{arguments}".encode()).hexdigest()
    return digest[:12]


# KEYS: approvals. ARGV: id, decision, by, reason, now. Replies {state after}.
_DECIDE = Script(
    """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return {'Missing'}
end
local r = cjson.decode(raw)
if r.state ~= 'Pending' then
  return {r.state}
end
if tonumber(ARGV[5]) >= tonumber(r.expires_at) then
  r.state = 'Expired'
else
  r.state = ARGV[2]
  r.decided_by = ARGV[3]
  r.reason = ARGV[4]
  r.decided_at = tonumber(ARGV[5])
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(r))
return {r.state}
"""
)

# KEYS: lease, approvals. ARGV: token, id, tick id. Replies {'Claimed'} or {state, run tick}.
_CLAIM = Script(
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {'LeaseLost'}
end
local raw = redis.call('HGET', KEYS[2], ARGV[2])
if not raw then
  return {'Missing'}
end
local r = cjson.decode(raw)
if r.state ~= 'Approved' then
  return {r.state, r.run_tick or ''}
end
r.state = 'Running'
r.run_tick = ARGV[3]
redis.call('HSET', KEYS[2], ARGV[2], cjson.encode(r))
return {'Claimed'}
"""
)


async def decide(
    client: RedisClient,
    stack: StackRef,
    approval: str,
    *,
    approved: bool,
    by: str,
    reason: str = "",
    now: float | None = None,
) -> str:
    """Record a person's decision on a pending approval; returns the state after it
    (``Approved``/``Denied``; ``Expired`` if it came too late; the state it had if it
    was decided already; ``Missing`` if there is no such approval)."""
    moment = time.time() if now is None else now
    reply = await _DECIDE(
        client,
        [StackKeys(stack).approvals],
        [approval, APPROVED if approved else DENIED, by, reason, repr(moment)],
    )
    return str(reply[0])


async def claim(
    client: RedisClient, stack: StackRef, approval: str, *, token: str, tick: str
) -> str:
    """Take an approved call to run it now (``Claimed``), under the stack's lease;
    else the record's state (``Running`` with another claim: an interrupted attempt)."""
    keys = StackKeys(stack)
    reply = await _CLAIM(client, [keys.lease, keys.approvals], [token, approval, tick])
    return str(reply[0])


async def approvals(client: RedisClient, stack: StackRef) -> list[Approval]:
    """Every approval record of the stack, oldest request first."""
    redis: Any = client  # see RedisClient: redis-py's annotations don't fit
    raw = await redis.hvals(StackKeys(stack).approvals)
    return sorted((Approval.decode(r) for r in raw), key=lambda a: (a.requested_at, a.id))
