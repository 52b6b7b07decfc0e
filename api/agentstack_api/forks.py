"""Forks: a new stack started from a checkpoint of another, shadowed, to try a change.

``POST …/stacks/{name}/fork`` (the route has checked that the caller may ``get`` the
source, :meth:`~.access.StackAccess.readable`):

1. the checkpoint (``at``, else the newest) must be kept (404 before anything changes);
2. the fork's manifest is the source's spec, shadowed, with the caller's overrides
   (:func:`~agentstack_core.forking.fork_manifest`; a bad override is a 400), created
   *paused* with the caller's own token — so RBAC's ``create agentstacks`` in the target
   namespace and the CRD's schema decide, and the audit log names the caller;
3. once the operator has published it, one Redis script seeds it with the checkpoint
   (:func:`~agentstack_core.redis.checkpoints.seed`: all or nothing, and never over a
   state of its own), within :data:`~.rollbacks.QUIET_WAIT_SECONDS` — else a 409: the fork exists,
   paused and empty, and asking for the same fork again finishes it;
4. unless asked to stay paused, it is resumed (again with the caller's token), and a
   wake-up carries the ``Forked`` Event naming who forked it from where.

A process killed between 2 and 3 leaves a paused fork with no state (never half of
one); the same request again seeds it.
"""

from __future__ import annotations

import logging
from typing import Any

from agentstack_api import models
from agentstack_api.auth import User
from agentstack_api.errors import ApiError
from agentstack_api.executionstate import StackCreator, StateWriter
from agentstack_api.rollbacks import once_quiet
from agentstack_api.views import stack_ref
from agentstack_core import protocol
from agentstack_core.forking import ForkError, fork_manifest, forked_from
from agentstack_core.keys import StackRef
from agentstack_core.kube.manifests import ObjectMeta
from agentstack_core.protocol import RedisClient, Wakeup
from agentstack_core.reasons import EventReason
from agentstack_core.redis.checkpoints import Checkpoints, CheckpointState, Refusal, seed
from agentstack_core.spec import ExecutionState

logger = logging.getLogger(__name__)


class Forks:
    """Forks of stacks, created as their caller and seeded from a checkpoint."""

    def __init__(
        self, redis: RedisClient, writer: StateWriter, creator: StackCreator | None
    ) -> None:
        self.redis = redis
        self.writer = writer
        self.creator = creator

    async def fork(
        self,
        stack: dict[str, Any],
        caller: User,
        request: models.ForkRequest,
        token: str | None,
    ) -> models.ForkResult:
        """Create, seed and (unless asked not to) resume the fork (see the module)."""
        if self.creator is None:
            raise ApiError(503, "Unavailable", "this API cannot create stacks")
        source = stack_ref(stack)
        checkpoints = Checkpoints(self.redis, source)
        tick = await self._tick(checkpoints, source, request.at)
        raw = await checkpoints.raw(tick)
        if raw is None:
            raise ApiError(404, "NotFound", f"no checkpoint of tick {tick} is kept for {source}")
        fork = StackRef(request.namespace or source.namespace, request.name)
        try:
            body = fork_manifest(
                stack,
                namespace=fork.namespace,
                name=fork.name,
                tick=tick,
                overrides=request.set,
                mirror=request.mirror,
            )
        except ForkError as exc:
            raise ApiError(400, "BadOverride", str(exc)) from exc
        uid = await self._create(fork, body, token)
        kept = CheckpointState.from_json(raw)
        refusal = await once_quiet(
            lambda: seed(self.redis, fork, uid, kept, raw, caller.name, source),
            (Refusal.GONE, Refusal.RUNNING, Refusal.BUSY),  # not published yet, a tick
        )
        if refusal is Refusal.USED:
            raise ApiError(
                409, "AlreadyExists", f"{fork} exists and was seeded already: resume it if paused"
            )
        if refusal is not None:
            raise ApiError(
                409,
                "NotSeededYet",
                f"{fork} was created, paused, but the operator has not taken it on yet: "
                "ask for the same fork again to seed it",
                headers={"Retry-After": "5"},
            )
        state = ExecutionState.PAUSED if request.paused else ExecutionState.RUNNING
        if state is ExecutionState.RUNNING:
            await self.writer.set_state(fork.namespace, fork.name, state, token)
        await self._announce(fork, uid, f"{caller.name} forked it from {source} at {tick}")
        return models.ForkResult(
            namespace=fork.namespace,
            name=fork.name,
            uid=uid,
            forkedFrom=f"{source}@{tick}",
            mirror=request.mirror,
            executionState=state.value,
        )

    async def _tick(self, checkpoints: Checkpoints, source: StackRef, at: str | None) -> str:
        if at:
            return checkpoints.tick_of(at)
        newest = await checkpoints.newest()
        if newest is None:
            raise ApiError(404, "NotFound", f"{source} has no checkpoint yet: it never ticked")
        return newest

    async def _create(self, fork: StackRef, body: dict[str, Any], token: str | None) -> str:
        """The fork's uid: created now, or — the same fork asked for again after a seed
        that did not happen — the one created before."""
        assert self.creator is not None
        try:
            created = await self.creator.create(fork.namespace, body, token)
        except ApiError as exc:
            if exc.code != "AlreadyExists":
                raise
            existing = await self.creator.get(fork.namespace, fork.name, token)
            wanted = forked_from(body["metadata"]["annotations"])
            if forked_from(dict(ObjectMeta.of(existing).annotations)) != wanted:
                raise
            created = existing
        return ObjectMeta.of(created).uid

    async def _announce(self, fork: StackRef, uid: str, message: str) -> None:
        note = Wakeup(stack=fork, uid=uid, reason=EventReason.FORKED, message=message)
        try:
            await protocol.wake(self.redis, note)
        except Exception as exc:  # seeded: only the Event is missing
            logger.warning("fork %s: no Event sent: %s", fork, exc)
