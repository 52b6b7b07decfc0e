"""A stack's state in Redis: what agents read, and the atomic writes a tick makes.

Reads are pipelined (all of a stack's keys share one hash slot). Writes go through
three Lua scripts, each fenced by the stack's lease token so a runner that lost its
lease (paused, partitioned, presumed dead) can no longer change anything:

- :data:`_COMMIT_STEP` applies one agent step's effects together with the record that
  the step is done. A tick resumed by another runner skips committed steps, so every
  step's effects happen exactly once even though delivery is at least once.
- :data:`_FINISH_TICK` records the tick id as done, appends the tick to the history,
  and adds its token use to the stack's counters — once, whoever gets there first.
- the lease scripts acquire (or re-enter), renew and release the lease.

The operator publishes the spec here (:func:`publish_spec`); the read API reads the
rest through :class:`StackStore` as well.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentstack_core.budget import Usage
from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import RedisClient
from agentstack_core.records import MessageRecord, Record, TickRecord

TRACE_MAXLEN = 5_000
FEED_MAXLEN = 1_000
INBOX_MAXLEN = 1_000
HISTORY_MAXLEN = 1_000
DONE_WINDOW = 256
"""Finished tick ids remembered per stack: enough for any re-dispatch of recent slots."""
STEPS_TTL_MS = 86_400_000
INBOX_BATCH = 20
FEED_CONTEXT = 5

Op = tuple[str, str, Sequence[str]]
"""A Redis command for the commit script: (command, key, arguments)."""

_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return current
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1] lease, KEYS[2] steps hash, KEYS[3..] keys named by the ops.
# ARGV[1] token, ARGV[2] step field, ARGV[3] step record, ARGV[4] ops (JSON), ARGV[5] ttl
_COMMIT_STEP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then
  return 2
end
for _, op in ipairs(cjson.decode(ARGV[4])) do
  redis.call(op[1], KEYS[op[2]], unpack(op[3]))
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
"""

# KEYS: lease, done, history, usage, steps. ARGV: token ('' = unfenced), tick id, now,
# history fields (JSON object), tokens, done window, history maxlen, ran (1: count the
# tick against the budget, 0: a dropped tick).
_FINISH_TICK = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  return 2
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -1 - tonumber(ARGV[6]))
local fields = {}
for key, value in pairs(cjson.decode(ARGV[4])) do
  table.insert(fields, key)
  table.insert(fields, value)
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', unpack(fields))
redis.call('HINCRBY', KEYS[4], 'tokens', ARGV[5])
redis.call('HINCRBY', KEYS[4], 'ticks', ARGV[8])
redis.call('DEL', KEYS[5])
return 1
"""


class LeaseLostError(RuntimeError):
    """The stack's lease expired or was taken over: this runner must stop writing."""


@dataclass(frozen=True)
class InboxMessage:
    id: str
    sender: str
    content: str
    tick_id: str


@dataclass(frozen=True)
class AgentContext:
    """Everything one agent sees at the start of its step."""

    plan: list[dict[str, Any]]
    artifacts: dict[str, dict[str, Any]]
    feed: list[str]
    memory: dict[str, str]
    inbox: list[InboxMessage]


class StackStore:
    """Reads and fenced writes of one stack's keys."""

    def __init__(self, client: RedisClient, stack: StackRef) -> None:
        self.client: Any = client  # see RedisClient: redis-py's annotations don't fit
        self.stack = stack
        self.keys = StackKeys(stack)

    # -- spec, lease, bookkeeping ------------------------------------------------------

    async def spec(self) -> tuple[int, dict[str, Any]] | None:
        """The published spec: (generation, spec dict), or ``None`` if not published."""
        raw = await self.client.hgetall(self.keys.spec)
        if not raw or "spec" not in raw:
            return None
        return int(raw["generation"]), json.loads(raw["spec"])

    async def acquire_lease(self, token: str, ttl_seconds: float) -> str | None:
        """Take the lease; ``None`` on success, else the current holder's token."""
        result = await self.client.eval(
            _ACQUIRE, 1, self.keys.lease, token, str(int(ttl_seconds * 1000))
        )
        return None if result == 1 else str(result)

    async def renew_lease(self, token: str, ttl_seconds: float) -> bool:
        result = await self.client.eval(
            _RENEW, 1, self.keys.lease, token, str(int(ttl_seconds * 1000))
        )
        return bool(result)

    async def release_lease(self, token: str) -> None:
        await self.client.eval(_RELEASE, 1, self.keys.lease, token)

    async def is_done(self, tick_id: str) -> bool:
        return await self.client.zscore(self.keys.done, tick_id) is not None

    async def committed_steps(self, tick_id: str) -> dict[str, dict[str, Any]]:
        raw = await self.client.hgetall(self.keys.steps(tick_id))
        return {name: json.loads(record) for name, record in raw.items()}

    async def usage(self) -> Usage:
        """What the stack has used so far (what budgets are checked against)."""
        return Usage.from_hash(await self.client.hgetall(self.keys.usage))

    # -- what agents read ----------------------------------------------------------------

    async def context(self, agent: str) -> AgentContext:
        keys = self.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.get(keys.plan)
        pipe.hgetall(keys.artifacts)
        pipe.xrevrange(keys.feed, count=FEED_CONTEXT)
        pipe.hgetall(keys.memory(agent))
        pipe.hget(keys.cursors, agent)
        plan, artifacts, feed, memory, cursor = await pipe.execute()
        start = f"({cursor}" if cursor else "-"
        entries = await self.client.xrange(keys.inbox(agent), min=start, count=INBOX_BATCH)
        return AgentContext(
            plan=json.loads(plan) if plan else [],
            artifacts={name: json.loads(record) for name, record in artifacts.items()},
            feed=[fields.get("content", "") for _id, fields in reversed(feed)],
            memory=dict(memory),
            inbox=[_inbox_message(str(entry_id), fields) for entry_id, fields in entries],
        )

    # -- fenced writes -------------------------------------------------------------------

    async def commit_step(
        self,
        *,
        token: str,
        tick_id: str,
        agent: str,
        record: dict[str, Any],
        ops: Sequence[Op],
    ) -> bool:
        """Apply ``ops`` and mark ``agent``'s step of ``tick_id`` done, atomically.

        Returns ``False`` if the step had already been committed (a resumed tick).
        Raises :class:`LeaseLostError` if this runner no longer holds the lease.
        """
        keys = [self.keys.lease, self.keys.steps(tick_id)]
        encoded = []
        for command, key, args in ops:
            if key not in keys:
                keys.append(key)
            encoded.append([command, keys.index(key) + 1, [str(arg) for arg in args]])
        result = await self.client.eval(
            _COMMIT_STEP,
            len(keys),
            *keys,
            token,
            agent,
            json.dumps(record),
            json.dumps(encoded),
            str(STEPS_TTL_MS),
        )
        if result == 0:
            raise LeaseLostError(f"lease of {self.stack} lost during tick {tick_id}")
        return bool(result == 1)

    async def finish_tick(
        self, *, token: str, tick_id: str, entry: TickRecord, tokens: int, ran: bool = True
    ) -> bool:
        """Record the tick as done (once). ``token=''`` finishes without the lease.

        ``ran=False`` (a dropped tick) records it without counting it as a tick run.

        Returns ``False`` if the tick had already been recorded as done.
        """
        keys = self.keys
        result = await self.client.eval(
            _FINISH_TICK,
            5,
            keys.lease,
            keys.done,
            keys.history,
            keys.usage,
            keys.steps(tick_id),
            token,
            tick_id,
            repr(time.time()),
            json.dumps(entry.to_fields()),
            str(tokens),
            str(DONE_WINDOW),
            str(HISTORY_MAXLEN),
            "1" if ran else "0",
        )
        if result == 0:
            raise LeaseLostError(f"lease of {self.stack} lost finishing tick {tick_id}")
        return bool(result == 1)


def xadd_op(key: str, record: Record, maxlen: int) -> Op:
    """The op that appends ``record`` to the stream ``key``, capped near ``maxlen``."""
    flat = [item for pair in record.to_fields().items() for item in pair]
    return ("XADD", key, ["MAXLEN", "~", str(maxlen), "*", *flat])


def _inbox_message(entry_id: str, fields: dict[str, str]) -> InboxMessage:
    record = MessageRecord.from_fields(fields)
    return InboxMessage(
        id=entry_id, sender=record.sender, content=record.content, tick_id=record.tick_id
    )


async def publish_spec(
    client: RedisClient, stack: StackRef, generation: int, spec: dict[str, Any]
) -> None:
    """Make ``spec`` at ``generation`` the one runners execute (the operator calls this)."""
    await client.hset(
        StackKeys(stack).spec,
        mapping={
            "generation": str(generation),
            "spec": json.dumps(spec, sort_keys=True),
            "state": str(spec.get("executionState", "Running")),
        },
    )


async def delete_stack(client: RedisClient, stack: StackRef, batch: int = 500) -> int:
    """Remove every key of ``stack`` (its hash tag); returns how many were deleted."""
    deleted = 0
    pattern = f"{StackKeys(stack).prefix}*"
    pending: list[str] = []
    async for key in client.scan_iter(match=pattern, count=batch):
        pending.append(key)
        if len(pending) >= batch:
            deleted += await _unlink(client, pending)
            pending = []
    if pending:
        deleted += await _unlink(client, pending)
    return deleted


async def _unlink(client: RedisClient, keys: list[str]) -> int:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    return sum(int(count) for count in await pipe.execute())


STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


@dataclass(frozen=True)
class Page:
    """Newest-first entries of a stream, and the cursor of the next (older) page."""

    entries: list[tuple[str, dict[str, str]]]
    next_cursor: str | None


class StackReader:
    """Read-only views of a stack's Redis state, for the read API and dashboards."""

    def __init__(self, client: RedisClient, stack: StackRef) -> None:
        self.client: Any = client  # see RedisClient: redis-py's annotations don't fit
        self.keys = StackKeys(stack)

    async def page(self, key: str, *, cursor: str | None, limit: int) -> Page:
        """Entries strictly older than ``cursor`` (a stream id), newest first."""
        if cursor is not None and not STREAM_ID.match(cursor):
            raise ValueError(f"invalid cursor {cursor!r}: expected a stream id like 1700-0")
        newest = f"({cursor}" if cursor else "+"
        entries = await self.client.xrevrange(key, max=newest, min="-", count=limit + 1)
        more = len(entries) > limit
        entries = [(str(entry_id), dict(fields)) for entry_id, fields in entries[:limit]]
        return Page(entries, entries[-1][0] if more and entries else None)

    async def after(
        self, key: str, last_id: str, *, block_ms: int, count: int = 100
    ) -> list[tuple[str, dict[str, str]]]:
        """Entries newer than ``last_id`` (``$``: only new ones), waiting up to ``block_ms``."""
        reply = await self.client.xread({key: last_id}, count=count, block=block_ms)
        return [
            (str(entry_id), dict(fields))
            for _stream, entries in reply or []
            for entry_id, fields in entries
        ]

    async def last_id(self, key: str) -> str:
        """The id of the newest entry, or ``0-0`` for an empty stream."""
        newest = await self.client.xrevrange(key, count=1)
        return str(newest[0][0]) if newest else "0-0"

    async def plan(self) -> list[dict[str, Any]]:
        raw = await self.client.get(self.keys.plan)
        plan: list[dict[str, Any]] = json.loads(raw) if raw else []
        return plan

    async def artifacts(self) -> dict[str, dict[str, Any]]:
        raw = await self.client.hgetall(self.keys.artifacts)
        return {name: json.loads(record) for name, record in raw.items()}

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

    async def usage(self) -> dict[str, int]:
        raw = await self.client.hgetall(self.keys.usage)
        return {key: int(value) for key, value in raw.items()}
