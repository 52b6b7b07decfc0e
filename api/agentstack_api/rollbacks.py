"""Checkpoints as the API lists them, and rollbacks to them.

``GET …/checkpoints`` lists what the stack's finishes kept
(:mod:`agentstack_core.redis.checkpoints`). ``POST …/rollback`` restores one, once the
route has checked the caller's right to ``create agentstacks/rollback``
(:meth:`~.access.StackAccess.steerable`; the chart's edit role grants it):

1. the checkpoint must exist (404 before anything changes);
2. the stack is paused — with the caller's own token, like ``POST …/state``, so RBAC's
   ``patch agentstacks`` decides and the audit log names the caller;
3. the restore runs as soon as the operator has published the pause and no tick holds
   the stack's lease (a tick in flight finishes first), within
   :data:`ROLLBACK_WAIT_SECONDS`; after that a 409 with ``Retry-After`` (the stack stays
   paused; asking again rolls back);
4. a wake-up carries the ``RolledBack`` Event, naming who rolled back to which tick (a
   paused stack does not tick for it); the stack stays paused until resumed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from agentstack_api import models
from agentstack_api.auth import User
from agentstack_api.errors import ApiError
from agentstack_api.executionstate import StateWriter
from agentstack_api.views import stack_ref
from agentstack_core import protocol
from agentstack_core.kube.manifests import ObjectMeta
from agentstack_core.protocol import RedisClient, Wakeup
from agentstack_core.reasons import EventReason
from agentstack_core.redis.checkpoints import Checkpoints, RollbackRefusal
from agentstack_core.redis.errors import StackGoneError
from agentstack_core.retention import CHECKPOINT_EVERY, CHECKPOINT_MAX_BYTES, CHECKPOINT_RECENT
from agentstack_core.spec import ExecutionState

logger = logging.getLogger(__name__)

ROLLBACK_WAIT_SECONDS = 10.0
"""How long a rollback waits for the pause to reach Redis and a tick in flight to end
(under the plugin's HTTP timeout)."""
ROLLBACK_POLL_SECONDS = 0.2


class Rollbacks:
    """The stacks' checkpoints, and rollbacks to them."""

    def __init__(self, redis: RedisClient, writer: StateWriter) -> None:
        self.redis = redis
        self.writer = writer

    async def listing(self, stack: dict[str, Any]) -> models.CheckpointList:
        kept = await Checkpoints(self.redis, stack_ref(stack)).listing()
        return models.CheckpointList(
            items=[
                models.CheckpointEntry(tickId=c.tick_id, seq=c.seq, bytes=c.bytes) for c in kept
            ],
            recent=CHECKPOINT_RECENT,
            every=CHECKPOINT_EVERY,
            maxBytes=CHECKPOINT_MAX_BYTES,
        )

    async def rollback(
        self,
        stack: dict[str, Any],
        caller: User,
        request: models.RollbackRequest,
        token: str | None,
    ) -> models.RollbackResult:
        """Pause the stack, restore the checkpoint, announce it (see the module)."""
        ref = stack_ref(stack)
        tick = request.to if "/" in request.to else f"{ref}/{request.to}"
        meta = ObjectMeta.of(stack)
        checkpoints = Checkpoints(self.redis, ref, meta.uid)
        if await checkpoints.state(tick) is None:
            raise ApiError(404, "NotFound", f"no checkpoint of tick {tick} is kept for {ref}")
        await self.writer.set_state(ref.namespace, ref.name, ExecutionState.PAUSED, token)
        deadline = time.monotonic() + ROLLBACK_WAIT_SECONDS
        while True:
            try:
                outcome = await checkpoints.rollback(tick, caller.name)
            except StackGoneError:
                raise ApiError(404, "NotFound", f"{ref} is being deleted") from None
            if outcome is RollbackRefusal.MISSING:  # dropped since: past the bounds
                raise ApiError(404, "NotFound", f"no checkpoint of tick {tick} is kept for {ref}")
            if not isinstance(outcome, RollbackRefusal):
                break
            if time.monotonic() >= deadline:
                waits = (
                    "the operator has not published the pause yet"
                    if outcome is RollbackRefusal.RUNNING
                    else "a tick is still running"
                )
                raise ApiError(
                    409,
                    "NotPausedYet",
                    f"{ref} is paused, but {waits}: ask again to roll back",
                    headers={"Retry-After": "5"},
                )
            await asyncio.sleep(ROLLBACK_POLL_SECONDS)
        note = Wakeup(
            stack=ref,
            uid=meta.uid,
            reason=EventReason.ROLLED_BACK,
            message=f"{caller.name} rolled the stack back to tick {tick} (checkpoint "
            f"{outcome.seq}; {outcome.inputs_kept} later input(s) kept unread); it stays "
            "paused until resumed",
        )
        try:
            await protocol.wake(self.redis, note)
        except Exception as exc:  # rolled back: only the Event is missing
            logger.warning("rollback of %s: no Event sent: %s", ref, exc)
        return models.RollbackResult(
            tickId=tick,
            seq=outcome.seq,
            inputsKept=outcome.inputs_kept,
            executionState=ExecutionState.PAUSED.value,
        )
