"""Tool calls that wait for a person, as the API lists them and records decisions.

A call to a tool marked ``requireApproval`` waits as an approval record
(:mod:`agentstack_core.approvals`) until a person decides. ``GET …/approvals`` lists the
stack's records; ``POST …/approvals/{id}`` records a decision, once — the route has
already checked the caller's right to ``update agentstacks/approvals``
(:meth:`~.access.StackAccess.steerable`). The decision is written by one Redis script
(:func:`~agentstack_core.redis.approvals.decide_approval`) with the caller's name, then a wake-up
asks the leading operator for a tick at once (the asking agent reads the decision) and
carries the Event that announces who decided (:mod:`agentstack_operator.waking`); if
that hint were lost, the next scheduled tick would read the decision all the same.

A call decided before, or expired, is a 409 that says by whom or how it ended; an
unknown id a 404.
"""

from __future__ import annotations

import logging
from typing import Any

from agentstack_api import models
from agentstack_api.auth import User
from agentstack_api.errors import ApiError
from agentstack_api.views import stack_ref
from agentstack_core import protocol
from agentstack_core.approvals import MISSING, ApprovalState
from agentstack_core.kube.manifests import ObjectMeta
from agentstack_core.protocol import RedisClient, Wakeup
from agentstack_core.reasons import EventReason
from agentstack_core.redis.approvals import decide_approval, read_approvals

logger = logging.getLogger(__name__)


class Approvals:
    """The stack's tool calls that wait, or waited, for a person, and the decisions on
    them."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis

    async def listing(self, stack: dict[str, Any]) -> models.ApprovalList:
        """The stack's tool calls that wait, or waited, for a person; oldest first."""
        records = await read_approvals(self.redis, stack_ref(stack))
        return models.ApprovalList(
            items=[models.from_record(models.ApprovalEntry, record) for record in records]
        )

    async def decide(
        self, stack: dict[str, Any], caller: User, approval: str, request: models.DecisionRequest
    ) -> models.DecisionResult:
        """Record the caller's decision (once: a decided or expired call is a 409), then
        wake the stack so the asking agent reads it at once."""
        ref = stack_ref(stack)
        approved = ApprovalState(request.decision) is ApprovalState.APPROVED
        state, decided = await decide_approval(
            self.redis, ref, approval, approved=approved, by=caller.name, reason=request.reason
        )
        if state == MISSING:
            raise ApiError(404, "NotFound", f"no approval {approval!r} in {ref}")
        if not decided or state != request.decision:  # decided before, or expired
            records = {r.id: r for r in await read_approvals(self.redis, ref)}
            record = records.get(approval)
            by = f" by {record.decided_by}" if record and record.decided_by else ""
            raise ApiError(409, "AlreadyDecided", f"approval {approval} is {state}{by}")
        uid = ObjectMeta.of(stack).uid
        word = "approved" if approved else "denied"
        note = Wakeup(
            stack=ref,
            uid=uid,
            reason=EventReason.TOOL_CALL_APPROVED if approved else EventReason.TOOL_CALL_DENIED,
            message=f"{caller.name} {word} tool call {approval}"
            + (f": {request.reason}" if request.reason else ""),
        )
        try:
            await protocol.wake(self.redis, note)
        except Exception as exc:  # decided: the next scheduled tick reads it
            logger.warning("approval %s of %s: no wake-up sent: %s", approval, ref, exc)
        return models.DecisionResult(id=approval, state=state, decidedBy=caller.name)
