"""Inputs that wake a stack: an extra tick at once, inside the one-tick-at-a-time rule.

Data flow::

    the API ── send_input (inbox) ──► XADD {agentstack}:wakeups
                                            │ leader: WakeupReader (XREAD, blocking)
                                            ▼
    apply_wakeup() ── may tick, wake on ─► Dispatcher.wake(): due now, own slot (tick id)
    carried()   ◄── the dispatcher sends any tick of a stack with a wake pending
    answered()  ◄── its result is folded: done, or (StackBusy) wait for the busy
                    tick's result, then wake again

The extra tick is an ordinary tick with its own slot (the wake-up's time, in
milliseconds), so everything else holds unchanged: its id is deterministic and runs
once, the stack's lease keeps it from running beside another tick (it is then dropped
as ``StackBusy`` — and the wake-up waits for the busy tick to end, so an input that
arrived during a tick is read by the next one), the runner's admission checks the
budget and the stack's state, and after it the stack's grid goes on as before.

A wake-up is only a hint: if one is lost (Redis failed between the inbox write and the
wake-up, a failover outlasted the replay window) the input waits in the inbox for the
stack's next scheduled tick. Nothing here is persisted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from agentstack_core import protocol
from agentstack_core.messages import TickResult, Wakeup
from agentstack_core.protocol import RedisClient
from agentstack_core.reasons import DropReason, Outcome
from agentstack_operator import metrics
from agentstack_operator.stackstate import Event, EventPoster, StackRecord

logger = logging.getLogger(__name__)

WAKEUP_BLOCK_MS = 1_000
WAKEUP_BATCH = 500


def apply_wakeup(record: StackRecord, wakeup: Wakeup) -> bool:
    """Take ``wakeup`` into ``record``; whether a tick should be sent at once.

    Not for another incarnation of the stack, one that may not tick now (paused,
    blocked, out of budget: the input waits), or one whose inputs do not wake it. Not
    either while a wake tick is on its way: it may still read the input, and if it
    cannot, its result brings the wake-up back (:func:`answered`).
    """
    if wakeup.uid and wakeup.uid != record.uid:
        return False
    if record.spec is None or not record.should_tick or not record.spec.inputs.wake:
        return False
    record.wake_pending = True
    return record.wake_tick is None


def carried(record: StackRecord, tick_id: str) -> None:
    """A tick of the stack is being sent: it carries any pending wake-up (it reads the
    inbox after the input arrived)."""
    if record.wake_pending:
        record.wake_pending = False
        record.wake_tick = tick_id


def answered(record: StackRecord, result: TickResult) -> bool:
    """Fold ``result`` into the wake-up state; whether to wake the stack again now.

    A wake tick dropped because another tick held the stack did not read the input:
    the wake-up is pending again, and the busy tick's own result (any other result of
    the stack) sends the next tick at once.
    """
    busy = result.outcome is Outcome.DROPPED and result.reason == DropReason.STACK_BUSY
    if result.tick_id == record.wake_tick:
        record.wake_tick = None
        if busy:
            record.wake_pending = True
            return False
    return record.wake_pending and record.wake_tick is None and not busy


class WakeupSource(Protocol):
    """The wake-up stream (:class:`RedisWakeups`)."""

    async def read(self, after: str, *, count: int, block_ms: int) -> tuple[str, list[Wakeup]]:
        """Wake-ups after the stream id ``after``, and the id to read after next."""
        ...


class RedisWakeups:
    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis

    async def read(self, after: str, *, count: int, block_ms: int) -> tuple[str, list[Wakeup]]:
        return await protocol.read_wakeups(self.redis, after, count=count, block_ms=block_ms)


class WakeupReader:
    """The leader's loop over the wake-up stream; each wake-up goes to ``wake``, and the
    Event one carries (a decision on a tool call: who decided) to ``events``."""

    def __init__(
        self,
        source: WakeupSource,
        records: Mapping[str, StackRecord],
        wake: Callable[[StackRecord], None],
        events: EventPoster,
        *,
        clock: Callable[[], float] = time.time,
        block_ms: int = WAKEUP_BLOCK_MS,
    ) -> None:
        self.source = source
        self.records = records
        self.wake = wake
        self.events = events
        self.clock = clock
        self.block_ms = block_ms
        self.after: str | None = None
        """The stream id read last (``None``: start the replay window back)."""

    def restart(self) -> None:
        """Leadership changed hands: read from the replay window again."""
        self.after = None

    async def step(self) -> None:
        after = self.after
        if after is None:
            after = f"{int((self.clock() - protocol.WAKEUP_REPLAY_SECONDS) * 1000)}-0"
        self.after, wakeups = await self.source.read(
            after, count=WAKEUP_BATCH, block_ms=self.block_ms
        )
        for wakeup in wakeups:
            record = self.records.get(str(wakeup.stack))
            if record is None:
                continue
            metrics.WAKEUPS.inc()
            if wakeup.reason:
                await self.events.post(record, [Event(wakeup.reason, wakeup.message)])
            if apply_wakeup(record, wakeup):
                self.wake(record)
