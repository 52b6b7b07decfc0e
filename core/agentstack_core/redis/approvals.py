"""Tool calls that wait for a person, in Redis: decide, claim (or give back), read.

The records and their rules are pure (:mod:`agentstack_core.approvals`); a record moves
forward only, through these scripts or a step's commit
(:class:`~agentstack_core.operations.SaveApproval`) — but for a claim the replicas did not
confirm, given back before its call was made (:func:`claim_approval`).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from agentstack_core.approvals import Approval, ApprovalState
from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import RedisClient
from agentstack_core.redis.errors import NotDurableError
from agentstack_core.redis.script import LuaScript
from redis.exceptions import RedisError


@dataclass(frozen=True)
class _Decide:
    id: str
    decision: str
    by: str
    reason: str
    now: float


@dataclass(frozen=True)
class _Claim:
    token: str
    id: str
    tick_id: str


_DECIDE = LuaScript(
    __file__,
    "decide_approval",
    keys=("approvals",),
    args=_Decide,
    records={"approval": Approval},
    durable=True,
)
_CLAIM = LuaScript(
    __file__,
    "claim_approval",
    keys=("lease", "approvals"),
    args=_Claim,
    records={"approval": Approval},
    durable=True,
)
_UNCLAIM = LuaScript(
    __file__,
    "unclaim_approval",
    keys=("lease", "approvals"),
    args=_Claim,
    records={"approval": Approval},
)


async def decide_approval(
    client: RedisClient,
    stack: StackRef,
    approval: str,
    *,
    approved: bool,
    by: str,
    reason: str = "",
    now: float | None = None,
) -> tuple[str, bool]:
    """Record a person's decision on a pending approval; returns the state after it
    (``Approved``/``Denied``; ``Expired`` if it came too late; the state it had if it
    was decided already; ``Missing`` if there is no such approval), and whether this
    call decided it (a decision is made once)."""
    reply = await _DECIDE(
        client,
        _Decide(
            id=approval,
            decision=ApprovalState.APPROVED if approved else ApprovalState.DENIED,
            by=by,
            reason=reason,
            now=time.time() if now is None else now,
        ),
        keys=StackKeys(stack),
    )
    return str(reply[0]), bool(int(reply[1]))


async def claim_approval(
    client: RedisClient, stack: StackRef, approval: str, *, token: str, tick: str
) -> str:
    """Take an approved call to run it now (``Claimed``), under the stack's lease;
    else the record's state (``Running`` with another claim: an interrupted attempt).

    A claim the replicas did not confirm (:class:`~.errors.NotDurableError`, raised on)
    is given back first, as far as Redis lets: the call is not made, and whether the
    claim or its return survives a failover, the record says no more than that it may
    have been (``Running``: told ``Interrupted``) or that it is still to be made."""
    claim = _Claim(token=token, id=approval, tick_id=tick)
    try:
        reply = await _CLAIM(client, claim, keys=StackKeys(stack))
    except NotDurableError:
        with contextlib.suppress(RedisError):
            await _UNCLAIM(client, claim, keys=StackKeys(stack))
        raise
    return str(reply[0])


async def read_approvals(client: RedisClient, stack: StackRef) -> list[Approval]:
    """Every approval record of the stack, oldest request first."""
    redis: Any = client  # see RedisClient: redis-py's annotations don't fit
    raw = await redis.hvals(StackKeys(stack).approvals)
    return sorted((Approval.from_json(r) for r in raw), key=lambda a: (a.requested_at, a.id))
