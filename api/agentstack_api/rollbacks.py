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
   :data:`QUIET_WAIT_SECONDS` (:func:`once_quiet`, which a fork's seed shares); after
   that a 409 with ``Retry-After`` (the stack stays paused; asking again rolls back);
4. a wake-up carries the ``RolledBack`` Event, naming who rolled back to which tick (a
   paused stack does not tick for it); the stack stays paused until resumed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from agentstack_api import models
from agentstack_api.auth import User
from agentstack_api.errors import ApiError
from agentstack_api.executionstate import StateWriter
from agentstack_api.views import stack_ref
from agentstack_core import protocol
from agentstack_core.kube.manifests import ObjectMeta
from agentstack_core.protocol import RedisClient, Wakeup
from agentstack_core.reasons import EventReason
from agentstack_core.redis.checkpoints import Checkpoints, Refusal
from agentstack_core.redis.errors import StackGoneError
from agentstack_core.retention import CHECKPOINT_EVERY, CHECKPOINT_MAX_BYTES, CHECKPOINT_RECENT
from agentstack_core.spec import ExecutionState

logger = logging.getLogger(__name__)

QUIET_WAIT_SECONDS = 10.0
"""How long a rollback, or a fork's seed, waits for its stack to be quiet — the pause
(or the fork itself) published by the operator, a tick in flight ended — under the
plugin's HTTP timeout."""
QUIET_POLL_SECONDS = 0.2

T = TypeVar("T")


async def once_quiet(attempt: Callable[[], Awaitable[T]], waiting: Collection[Refusal]) -> T:
    """``attempt()``, again while it answers one of ``waiting`` (its stack not quiet
    yet), for :data:`QUIET_WAIT_SECONDS` at most; its last answer."""
    deadline = time.monotonic() + QUIET_WAIT_SECONDS
    while True:
        outcome = await attempt()
        if outcome not in waiting or time.monotonic() >= deadline:
            return outcome
        await asyncio.sleep(QUIET_POLL_SECONDS)


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
        meta = ObjectMeta.of(stack)
        checkpoints = Checkpoints(self.redis, ref, meta.uid)
        tick = checkpoints.tick_of(request.to)
        state = await checkpoints.state(tick)
        if state is None:
            raise ApiError(404, "NotFound", f"no checkpoint of tick {tick} is kept for {ref}")
        await self.writer.set_state(ref.namespace, ref.name, ExecutionState.PAUSED, token)
        try:
            outcome = await once_quiet(
                lambda: checkpoints.rollback(tick, caller.name, state),
                (Refusal.RUNNING, Refusal.BUSY),
            )
        except StackGoneError:
            raise ApiError(404, "NotFound", f"{ref} is being deleted") from None
        if outcome is Refusal.MISSING:  # dropped since: past the bounds
            raise ApiError(404, "NotFound", f"no checkpoint of tick {tick} is kept for {ref}")
        if isinstance(outcome, Refusal):
            waits = (
                "the operator has not published the pause yet"
                if outcome is Refusal.RUNNING
                else "a tick is still running"
            )
            raise ApiError(
                409,
                "NotPausedYet",
                f"{ref} is paused, but {waits}: ask again to roll back",
                headers={"Retry-After": "5"},
            )
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
