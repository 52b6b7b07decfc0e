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
from agentstack_core.records import ArtifactRecord, InputOutcome, LongTermRecord, TaskRecord

STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


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

    async def longterm(self) -> LongTermRecord:
        return LongTermRecord.from_fields(await self.client.hgetall(self.keys.longterm))

    async def usage(self) -> dict[str, int]:
        raw = await self.client.hgetall(self.keys.usage)
        return {key: int(value) for key, value in raw.items()}
