"""Read-only views of a stack's Redis state, for the API and dashboards.

Every stored thing comes back as its typed record (:mod:`agentstack_core.records`);
stream pages come back as raw entries, which the API renders with the same record
codecs for pages and for live streams alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import RedisClient
from agentstack_core.records import (
    ArtifactRecord,
    InputOutcome,
    InputRecord,
    LongTermRecord,
    TaskRecord,
    TickRecord,
)
from agentstack_core.redis.tick import TickStore
from agentstack_core.retention import HISTORY_MAXLEN, INPUTS_MAXLEN

STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
LARGEST_ID_PART = 2**64 - 1
"""Redis stream ids are two unsigned 64-bit numbers; a larger part is an error there."""


def clamp_stream_id(stream_id: str) -> str:
    """``stream_id`` (matching :data:`STREAM_ID`) with each part at most Redis's largest:
    a cursor or ``Last-Event-ID`` beyond every id means the same as the largest id (all
    entries are older), where Redis would refuse it (twenty digits pass the pattern)."""
    return "-".join(str(min(int(part), LARGEST_ID_PART)) for part in stream_id.split("-"))


CLOCK_SKEW_SECONDS = 60.0
"""How far a runner's clock (an input outcome's ``at``) may be ahead of Redis's (the
history stream's ids) when a finished tick is looked up from the time it read an input."""


@dataclass(frozen=True)
class Page:
    """Newest-first entries of a stream, and the cursor of the next (older) page."""

    entries: list[tuple[str, dict[str, str]]]
    next_cursor: str | None


class StackReader:
    """Read-only views of one stack's Redis state."""

    def __init__(self, client: RedisClient, stack: StackRef) -> None:
        self.client: Any = client  # see RedisClient: redis-py's annotations don't fit
        self.keys = StackKeys(stack)

    async def page(self, key: str, *, cursor: str | None, limit: int) -> Page:
        """Entries strictly older than ``cursor`` (a stream id), newest first."""
        if cursor is not None and not STREAM_ID.match(cursor):
            raise ValueError(f"invalid cursor {cursor!r}: expected a stream id like 1700-0")
        if cursor is not None and not any(int(part) for part in cursor.split("-")):
            return Page([], None)  # nothing is older than 0-0 (Redis refuses "(0-0")
        cursor = clamp_stream_id(cursor) if cursor is not None else None
        newest = f"({cursor}" if cursor else "+"
        entries = await self.client.xrevrange(key, max=newest, min="-", count=limit + 1)
        more = len(entries) > limit
        entries = [(str(entry_id), dict(fields)) for entry_id, fields in entries[:limit]]
        return Page(entries, entries[-1][0] if more and entries else None)

    async def plan(self) -> list[TaskRecord]:
        raw = await self.client.get(self.keys.plan)
        return [TaskRecord.from_dict(task) for task in orjson.loads(raw)] if raw else []

    async def artifacts(self) -> dict[str, ArtifactRecord]:
        raw = await self.client.hgetall(self.keys.artifacts)
        return {name: ArtifactRecord.from_json(record) for name, record in raw.items()}

    async def memories(self, agents: Sequence[str]) -> dict[str, dict[str, str]]:
        pipe = self.client.pipeline(transaction=False)
        for agent in agents:
            pipe.hgetall(self.keys.memory(agent))
        return dict(zip(agents, [dict(m) for m in await pipe.execute()], strict=True))

    async def inbox_sizes(self, agents: Sequence[str]) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        for agent in agents:
            pipe.xlen(self.keys.inbox(agent))
        return dict(zip(agents, [int(n) for n in await pipe.execute()], strict=True))

    async def input_outcomes(self, numbers: Sequence[int]) -> dict[int, InputOutcome]:
        """What became of the inputs ``numbers`` (absent: not read by an agent yet)."""
        if not numbers:
            return {}
        raw = await self.client.hmget(self.keys.input_outcomes, [str(n) for n in numbers])
        return {n: InputOutcome.from_json(r) for n, r in zip(numbers, raw, strict=True) if r}

    async def inputs_sent(self) -> int:
        """The number of the newest input (0: none yet); inputs are numbered 1, 2, …"""
        return int(await self.client.hget(self.keys.input_counters, "seq") or 0)

    async def input_of_delivery(self, delivery: str) -> InputRecord | None:
        """The input sent under ``delivery`` (a retrying sender's id of it), if the inputs
        log still holds it: newest first, since a retry comes soon after."""
        entries = await self.client.xrevrange(self.keys.inputs, count=INPUTS_MAXLEN)
        for _id, fields in entries:
            record = InputRecord.from_fields(dict(fields))
            if record.delivery == delivery:
                return record
        return None

    async def finished_tick(self, tick_id: str, *, since: float) -> TickRecord | None:
        """The history entry of ``tick_id`` if it finished (``None``: not yet, or no longer
        kept), looked up among the ticks finished after ``since`` (Unix time; when it was
        known to run): the newest results first, then the capped history stream."""
        recorded = await TickStore(self.client, self.keys.stack).outcome(tick_id)
        if recorded is not None:
            return recorded.history_entry()
        oldest = max(0, int((since - CLOCK_SKEW_SECONDS) * 1000))
        entries = await self.client.xrevrange(
            self.keys.history, max="+", min=str(oldest), count=HISTORY_MAXLEN
        )
        for _id, fields in entries:
            if fields.get("tick_id") == tick_id:
                return TickRecord.from_fields(dict(fields))
        return None

    async def longterm(self) -> LongTermRecord:
        return LongTermRecord.from_fields(await self.client.hgetall(self.keys.longterm))

    async def usage(self) -> dict[str, int]:
        raw = await self.client.hgetall(self.keys.usage)
        return {key: int(value) for key, value in raw.items()}
