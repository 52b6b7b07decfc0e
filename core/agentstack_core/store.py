"""A stack's state in Redis: what agents read, and the atomic writes a tick makes.

Reads are pipelined (all of a stack's keys share one hash slot). Every write is a Lua
script, so it happens whole or not at all, and each is fenced twice:

- by the stack's life: the spec hash (with the stack's uid) is present from the
  operator's first publish until the stack is deleted. A script finds it gone (or
  belonging to a newer incarnation of the same name) and writes nothing — a tick in
  flight when its stack is deleted cannot recreate a single key
  (:class:`StackGoneError`);
- by the lease: only the holder of the stack's lease token may commit a step or
  finish a tick (:class:`LeaseLostError`), so a runner that lost its lease (paused,
  partitioned, presumed dead) can no longer change anything.

The scripts (sent by SHA, :class:`~agentstack_core.scripting.Script`, so Redis neither
receives nor hashes their text on every call):

- :data:`_BEGIN` starts a tick in one round trip: whether its id is done already (and
  its recorded outcome), else the lease, and with it everything admission and
  resumption need (the published spec, the counters, the steps committed by an
  earlier attempt). Each was its own round trip, five per tick before any agent ran.
- :data:`_CONTEXT` reads what one agent sees (plan, artifacts, recent feed, memory and
  its unread inbox, which starts after its cursor) in one round trip instead of two.
- :data:`_COMMIT_STEP` applies one agent step's effects together with the record that
  the step is done. A tick resumed by another runner skips committed steps, so every
  step's effects happen exactly once even though delivery is at least once. In the
  same call it reads the context of the agent whose step comes next.
- :data:`_FINISH_TICK` records the tick id as done together with its outcome (and
  releases the lease it ran under), appends
  the tick to the history and moves the stack's counters (tokens, ticks, consecutive
  failures and idle ticks) — once, whoever gets there first. The outcome is kept for
  the ids of the done window: a redelivered tick that finds its id done republishes
  that outcome, so a result is never lost between recording and publishing it.
  A tick that did not run (dropped) is recorded without the lease, but never while
  the lease is held for that very tick id (it is running elsewhere).
- the lease scripts acquire (or re-enter), renew and release the lease.
- :data:`_PUBLISH` (the operator) makes a spec the one runners execute, never
  replacing a newer generation of the same stack with an older one.

Every key a script creates is added to the stack's index set, so :func:`delete_stack`
removes exactly the stack's keys without scanning the keyspace.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from agentstack_core.approvals import APPROVED, DENIED, Approval
from agentstack_core.budget import Usage
from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import RedisClient, TickResult
from agentstack_core.records import InputRecord, MessageRecord, Record
from agentstack_core.scripting import Script
from agentstack_core.spec import DEFAULT_TEAM
from agentstack_core.state import (
    DONE_WINDOW,
    FEED_CONTEXT,
    HISTORY_MAXLEN,
    INBOX_BATCH,
    INBOX_MAXLEN,
    INPUTS_MAXLEN,
    OUTCOMES_WINDOW,
    STEPS_TTL_MS,
    AgentContext,
    InboxMessage,
    Op,
    history_entry,
)

_GONE = -1

# Whether the stack still lives in Redis: its spec hash exists and, when the caller
# knows the stack's uid, belongs to that incarnation (a stack deleted and re-created
# under the same name has a new uid). Specs published without a uid match any.
_ALIVE = """
local function alive(spec, uid)
  if redis.call('EXISTS', spec) == 0 then
    return false
  end
  if uid == '' then
    return true
  end
  local current = redis.call('HGET', spec, 'uid')
  return (not current) or current == '' or current == uid
end
"""

_RENEW = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
)

_RELEASE = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)

# KEYS: spec, lease, index, done, outcomes, usage, steps. ARGV: token, ttl ms, uid, tick id.
_BEGIN = Script(
    _ALIVE
    + """
local outcome = redis.call('HGET', KEYS[5], ARGV[4])
if outcome or redis.call('ZSCORE', KEYS[4], ARGV[4]) then
  return {'done', outcome or ''}
end
if not alive(KEYS[1], ARGV[3]) then
  return {'gone'}
end
local current = redis.call('GET', KEYS[2])
if current and current ~= ARGV[1] then
  return {'held', current}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[3], KEYS[2])
return {'leased', redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[6]),
  redis.call('HGETALL', KEYS[7])}
"""
)

# What one agent sees: plan, artifacts, recent feed, its memory and its unread inbox
# (after its cursor). ``first`` is the index of the first of six consecutive KEYS: plan,
# artifacts, feed, memory, cursors, inbox.
_READ_CONTEXT = """
local function context(first, agent, feed_count, inbox_count)
  local cursor = redis.call('HGET', KEYS[first + 4], agent)
  local start = '-'
  if cursor then
    start = '(' .. cursor
  end
  return {redis.call('GET', KEYS[first]) or '', redis.call('HGETALL', KEYS[first + 1]),
    redis.call('XREVRANGE', KEYS[first + 2], '+', '-', 'COUNT', feed_count),
    redis.call('HGETALL', KEYS[first + 3]),
    redis.call('XRANGE', KEYS[first + 5], start, '+', 'COUNT', inbox_count)}
end
"""

# KEYS: the six context keys. ARGV: agent, feed count, inbox count.
_CONTEXT = Script(_READ_CONTEXT + "return context(1, ARGV[1], ARGV[2], ARGV[3])\n")

# KEYS[1] spec, KEYS[2] lease, KEYS[3] index, KEYS[4] steps hash, then the next agent's
# six context keys if ARGV[7] names one, then the other keys the ops name (an op refers
# to its key by index). ARGV: token, step field, step record, ops (JSON), steps ttl,
# uid, next agent (or ''), feed count, inbox count. Replies {status} or, with a next
# agent, {status, context}: the next step's read comes with this step's write.
_COMMIT_STEP = Script(
    _ALIVE
    + _READ_CONTEXT
    + """
if not alive(KEYS[1], ARGV[6]) then
  return {-1}
end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return {0}
end
local status = 2
if redis.call('HEXISTS', KEYS[4], ARGV[2]) == 0 then
  for _, op in ipairs(cjson.decode(ARGV[4])) do
    redis.call(op[1], KEYS[op[2]], unpack(op[3]))
    redis.call('SADD', KEYS[3], KEYS[op[2]])
  end
  redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[4], ARGV[5])
  redis.call('SADD', KEYS[3], KEYS[4])
  status = 1
end
if ARGV[7] == '' then
  return {status}
end
return {status, context(5, ARGV[7], ARGV[8], ARGV[9])}
"""
)

# KEYS: spec, lease, index, done, history, usage, steps, outcomes.
# ARGV: fence mode ('owner': the lease must be held by the token, and is released;
# 'idle': the lease must not be held for this tick id), token or tick-id prefix, tick
# id, now, history fields (JSON object), tokens, done window, history maxlen, ran (1:
# counts as a tick run), result fields (JSON object), verdict (S succeeded, F failed, D
# dropped), progressed (1/0), uid, outcomes window (results kept for the newest this
# many ticks), cost (nano-dollars), unpriced calls, cost needed (0: no call was refused
# by the dollar budget; else what the refused call needed at the least).
_FINISH_TICK = Script(
    _ALIVE
    + """
if not alive(KEYS[1], ARGV[13]) then
  return -1
end
local lease = redis.call('GET', KEYS[2])
if ARGV[1] == 'owner' then
  if lease ~= ARGV[2] then
    return 0
  end
  redis.call('DEL', KEYS[2])
elseif lease and string.sub(lease, 1, #ARGV[2]) == ARGV[2] then
  return 0
end
if redis.call('ZSCORE', KEYS[4], ARGV[3]) then
  return 2
end
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
redis.call('HSET', KEYS[8], ARGV[3], ARGV[10])
local aged = redis.call('ZRANGE', KEYS[4], -1 - tonumber(ARGV[14]), -1 - tonumber(ARGV[14]))
if #aged > 0 then
  redis.call('HDEL', KEYS[8], unpack(aged))
end
local expired = redis.call('ZRANGE', KEYS[4], 0, -1 - tonumber(ARGV[7]))
if #expired > 0 then
  redis.call('ZREM', KEYS[4], unpack(expired))
  redis.call('HDEL', KEYS[8], unpack(expired))
end
local fields = {}
for key, value in pairs(cjson.decode(ARGV[5])) do
  table.insert(fields, key)
  table.insert(fields, value)
end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[8], '*', unpack(fields))
redis.call('HINCRBY', KEYS[6], 'tokens', ARGV[6])
redis.call('HINCRBY', KEYS[6], 'ticks', ARGV[9])
redis.call('HINCRBY', KEYS[6], 'cost', ARGV[15])
redis.call('HINCRBY', KEYS[6], 'unpriced', ARGV[16])
if ARGV[17] ~= '0' then
  redis.call('HSET', KEYS[6], 'needed', ARGV[17])
end
if ARGV[11] == 'F' then
  redis.call('HINCRBY', KEYS[6], 'failures', 1)
elseif ARGV[11] == 'S' then
  redis.call('HSET', KEYS[6], 'failures', 0)
  if ARGV[12] == '1' then
    redis.call('HSET', KEYS[6], 'idle', 0)
  else
    redis.call('HINCRBY', KEYS[6], 'idle', 1)
  end
end
redis.call('DEL', KEYS[7])
redis.call('SREM', KEYS[3], KEYS[7])
redis.call('SADD', KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[8])
return 1
"""
)

# KEYS: spec, index. ARGV: generation, spec JSON, state, uid.
_PUBLISH = Script(
    """
local current = redis.call('HMGET', KEYS[1], 'uid', 'generation')
if current[1] == ARGV[4] and current[2] and tonumber(current[2]) > tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'generation', ARGV[1], 'spec', ARGV[2], 'state', ARGV[3],
  'uid', ARGV[4])
redis.call('SADD', KEYS[2], KEYS[1])
return 1
"""
)


# KEYS: spec, index, input counters, the agent's inbox, inputs log, input outcomes.
# ARGV: uid, inputs per minute, now (ms), message fields (JSON object), input fields
# (JSON object), inbox maxlen, inputs maxlen. Replies {-1} (no such stack), {0, ms
# until the window ends} (over the rate), or {number, inbox message id}.
_SEND_INPUT = Script(
    _ALIVE
    + """
if not alive(KEYS[1], ARGV[1]) then
  return {-1}
end
local now = tonumber(ARGV[3])
local window = math.floor(now / 60000)
local counted = redis.call('HMGET', KEYS[3], 'window', 'count')
local count = 0
if tonumber(counted[1]) == window then
  count = tonumber(counted[2]) or 0
end
if count >= tonumber(ARGV[2]) then
  return {0, (window + 1) * 60000 - now}
end
local number = redis.call('HINCRBY', KEYS[3], 'seq', 1)
redis.call('HSET', KEYS[3], 'window', window, 'count', count + 1)
local function flat(json, extra)
  local fields = {}
  for key, value in pairs(cjson.decode(json)) do
    table.insert(fields, key)
    table.insert(fields, value)
  end
  for key, value in pairs(extra) do
    table.insert(fields, key)
    table.insert(fields, value)
  end
  return fields
end
local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*',
  unpack(flat(ARGV[4], {input = tostring(number)})))
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*',
  unpack(flat(ARGV[5], {number = tostring(number), message = id})))
if number > tonumber(ARGV[7]) then
  redis.call('HDEL', KEYS[6], tostring(number - tonumber(ARGV[7])))
end
redis.call('SADD', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return {number, id}
"""
)


class LeaseLostError(RuntimeError):
    """The stack's lease expired or was taken over: this runner must stop writing."""


class StackGoneError(RuntimeError):
    """The stack was deleted (or re-created under its name): nothing may be written."""


class Finished(Enum):
    """What :meth:`StackStore.finish_tick` did."""

    RECORDED = "recorded"
    ALREADY_DONE = "already done"
    """The tick id had been recorded before (its outcome stands)."""
    RUNNING = "running"
    """Not recorded: the tick is running right now (its lease holder will finish it)."""


class StackStore:
    """Reads and fenced writes of one stack's keys.

    ``uid`` is the incarnation of the stack the caller works for (empty: whichever
    exists); writes for another incarnation raise :class:`StackGoneError`.
    """

    def __init__(self, client: RedisClient, stack: StackRef, uid: str = "") -> None:
        self.client: Any = client  # see RedisClient: redis-py's annotations don't fit
        self.stack = stack
        self.uid = uid
        self.keys = StackKeys(stack)

    def _gone(self) -> StackGoneError:
        return StackGoneError(f"{self.stack} no longer exists")

    # -- spec, lease, bookkeeping ------------------------------------------------------

    async def spec(self) -> tuple[int, dict[str, Any], str] | None:
        """The published spec: (generation, spec dict, uid), or ``None`` if there is none."""
        return _published(await self.client.hgetall(self.keys.spec))

    async def begin(self, tick_id: str, token: str, ttl_seconds: float) -> TickStart:
        """Start ``tick_id`` under ``token`` in one round trip (see :class:`TickStart`).

        Raises :class:`StackGoneError` if the stack no longer exists.
        """
        keys = self.keys
        answer = await _BEGIN(
            self.client,
            [
                *(keys.spec, keys.lease, keys.index, keys.done, keys.outcomes, keys.usage),
                keys.steps(tick_id),
            ],
            [token, str(int(ttl_seconds * 1000)), self.uid, tick_id],
        )
        state = answer[0]
        if state == "done":
            raw = answer[1]
            recorded = TickResult.from_fields(orjson.loads(raw)) if raw else None
            return TickStart(done=True, recorded=recorded)
        if state == "gone":
            raise self._gone()
        if state == "held":
            return TickStart(holder=str(answer[1]))
        spec, usage, steps = (_pairs(flat) for flat in answer[1:4])
        return TickStart(
            published=_published(spec),
            usage=Usage.from_hash(usage),
            committed={name: orjson.loads(record) for name, record in steps.items()},
        )

    async def renew_lease(self, token: str, ttl_seconds: float) -> bool:
        result = await _RENEW(self.client, [self.keys.lease], [token, str(int(ttl_seconds * 1000))])
        return bool(result)

    async def release_lease(self, token: str) -> None:
        await _RELEASE(self.client, [self.keys.lease], [token])

    # -- what agents read ----------------------------------------------------------------

    async def context(self, agent: str) -> AgentContext:
        return _agent_context(
            await _CONTEXT(
                self.client, self.keys.context(agent), [agent, str(FEED_CONTEXT), str(INBOX_BATCH)]
            )
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
        then: str | None = None,
    ) -> AgentContext | None:
        """Apply ``ops`` and mark ``agent``'s step of ``tick_id`` done, atomically.

        ``then``: the agent whose step comes next; its context (as after this commit)
        is returned, read in the same round trip. Nothing is applied if the step had
        been committed already (a resumed tick). Raises :class:`LeaseLostError` if this
        runner no longer holds the lease, and :class:`StackGoneError` if the stack was
        deleted.
        """
        keys = [self.keys.spec, self.keys.lease, self.keys.index, self.keys.steps(tick_id)]
        if then is not None:
            keys.extend(self.keys.context(then))
        encoded = []
        for command, key, args in ops:
            if key not in keys:
                keys.append(key)
            encoded.append([command, keys.index(key) + 1, [str(arg) for arg in args]])
        reply = await _COMMIT_STEP(
            self.client,
            keys,
            [
                token,
                agent,
                orjson.dumps(record).decode(),
                orjson.dumps(encoded).decode(),
                str(STEPS_TTL_MS),
                self.uid,
                then or "",
                str(FEED_CONTEXT),
                str(INBOX_BATCH),
            ],
        )
        if reply[0] == _GONE:
            raise self._gone()
        if reply[0] == 0:
            raise LeaseLostError(f"lease of {self.stack} lost during tick {tick_id}")
        return _agent_context(reply[1]) if then is not None else None

    async def finish_tick(
        self,
        *,
        result: TickResult,
        token: str | None,
        ran: bool = True,
    ) -> Finished:
        """Record ``result`` as the tick's outcome (once), and in the history stream.

        ``token``: the lease token the tick ran under (only its holder may finish it;
        :class:`LeaseLostError` otherwise), or ``None`` for a tick that did not run
        (dropped, or failed outside any runner) — recorded unless the tick is running
        right now. ``ran=False`` records it without counting it as a tick run.
        """
        keys = self.keys
        mode, fence = ("owner", token) if token is not None else ("idle", f"{result.tick_id}|")
        verdict = {"Succeeded": "S", "Failed": "F"}.get(result.outcome.value, "D")
        answer = await _FINISH_TICK(
            self.client,
            [
                *(keys.spec, keys.lease, keys.index, keys.done, keys.history, keys.usage),
                *(keys.steps(result.tick_id), keys.outcomes),
            ],
            [
                mode,
                fence,
                result.tick_id,
                repr(time.time()),
                orjson.dumps(history_entry(result).to_fields()).decode(),
                str(result.tokens),
                str(DONE_WINDOW),
                str(HISTORY_MAXLEN),
                "1" if ran else "0",
                orjson.dumps(result.to_fields()).decode(),
                verdict,
                "1" if result.progressed else "0",
                self.uid,
                str(OUTCOMES_WINDOW),
                str(result.cost),
                str(result.unpriced),
                str(result.cost_needed),
            ],
        )
        if answer == _GONE:
            raise self._gone()
        if answer == 0:
            if token is not None:
                raise LeaseLostError(f"lease of {self.stack} lost finishing {result.tick_id}")
            return Finished.RUNNING
        return Finished.RECORDED if answer == 1 else Finished.ALREADY_DONE


@dataclass(frozen=True)
class TickStart:
    """What :meth:`StackStore.begin` found, in the order the engine checks it."""

    done: bool = False
    """The tick id is recorded as done: nothing may run."""
    recorded: TickResult | None = None
    """Its recorded result, if it is among the newest kept (published again)."""
    holder: str | None = None
    """Another token holds the lease (the begin took nothing)."""
    published: tuple[int, dict[str, Any], str] | None = None
    """Under the lease: the published (generation, spec, uid), ``None`` if none."""
    usage: Usage = field(default_factory=Usage)
    """Under the lease: the stack's counters."""
    committed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Under the lease: the step records an earlier attempt of this tick committed."""


class InputRateError(RuntimeError):
    """The stack has accepted as many inputs as its policy allows this minute."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many inputs; try again in {retry_after:.0f}s")
        self.retry_after = retry_after


async def send_input(
    client: RedisClient,
    stack: StackRef,
    *,
    agent: str,
    sender: str,
    content: str,
    per_minute: int,
    uid: str = "",
    now: float | None = None,
) -> tuple[int, str]:
    """Put an input in ``agent``'s inbox and the stack's inputs log, numbered, at once.

    Returns (its number, its inbox message id). Raises :class:`StackGoneError` if the
    stack is not (or no longer) published, :class:`InputRateError` past ``per_minute``
    inputs in the current minute. Size and agent are the caller's to check (they come
    from the spec); the count, the number and both entries are one script, so a
    refused input leaves nothing and an accepted one is never half written.
    """
    keys = StackKeys(stack)
    moment = time.time() if now is None else now
    message = MessageRecord(sender=sender, content=content, at=moment)
    logged = InputRecord(agent=agent, sender=sender, content=content, at=moment)
    numbered = {"number", "message", "input"}  # the script fills these in
    reply = await _SEND_INPUT(
        client,
        [
            *(keys.spec, keys.index, keys.input_counters),
            *(keys.inbox(agent), keys.inputs, keys.input_outcomes),
        ],
        [
            uid,
            str(per_minute),
            str(int(moment * 1000)),
            _fields_json(message, numbered),
            _fields_json(logged, numbered),
            str(INBOX_MAXLEN),
            str(INPUTS_MAXLEN),
        ],
    )
    if reply[0] == _GONE:
        raise StackGoneError(f"{stack} is not published")
    if reply[0] == 0:
        raise InputRateError(int(reply[1]) / 1000)
    return int(reply[0]), str(reply[1])


def _fields_json(record: Record, leave_out: set[str]) -> str:
    return orjson.dumps(
        {k: v for k, v in record.to_fields().items() if k not in leave_out}
    ).decode()


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    """A Lua script's flat ``[field, value, …]`` reply (``HGETALL``, stream fields)."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _agent_context(reply: Sequence[Any]) -> AgentContext:
    """The reply of the Lua ``context`` function (:data:`_READ_CONTEXT`)."""
    plan, artifacts, feed, memory, inbox = reply
    return AgentContext(
        plan=orjson.loads(plan) if plan else [],
        artifacts={name: orjson.loads(record) for name, record in _pairs(artifacts).items()},
        feed=[_pairs(fields).get("content", "") for _id, fields in reversed(feed)],
        memory=_pairs(memory),
        inbox=[_inbox_message(str(entry_id), _pairs(fields)) for entry_id, fields in inbox],
    )


def _published(raw: dict[str, str]) -> tuple[int, dict[str, Any], str] | None:
    if not raw or "spec" not in raw:
        return None
    return int(raw["generation"]), orjson.loads(raw["spec"]), raw.get("uid", "")


def _inbox_message(entry_id: str, fields: dict[str, str]) -> InboxMessage:
    record = MessageRecord.from_fields(fields)
    return InboxMessage(
        id=entry_id,
        sender=record.sender,
        content=record.content,
        tick_id=record.tick_id,
        input=record.input,
    )


async def publish_spec(
    client: RedisClient, stack: StackRef, generation: int, spec: dict[str, Any], uid: str = ""
) -> bool:
    """Make ``spec`` at ``generation`` the one runners execute (the operator calls this).

    Returns ``False`` when a newer generation of the same incarnation is published
    already (a replica with a stale view must not roll a stack back).
    """
    keys = StackKeys(stack)
    result = await _PUBLISH(
        client,
        [keys.spec, keys.index],
        [
            str(generation),
            json.dumps(spec, sort_keys=True),
            str(spec.get("executionState", "Running")),
            uid,
        ],
    )
    return bool(result == 1)


async def delete_stack(client: RedisClient, stack: StackRef) -> int:
    """Remove every key of ``stack``; returns how many were deleted.

    The spec goes first: from then on every write script finds the stack gone, so no
    tick in flight can add a key behind the clean-up. Then the keys the index names
    (plus the fixed ones and the agents' keys, for data written before the index).
    """
    keys = StackKeys(stack)
    published = await StackStore(client, stack).spec()
    deleted = int(await client.unlink(keys.spec))
    named = {str(key) for key in await client.smembers(keys.index)}
    declared = (published[1].get("agents") or []) if published else []
    agents = [a.get("name") for a in declared if isinstance(a, dict)] or list(DEFAULT_TEAM)
    named.update(
        [
            keys.lease,
            keys.done,
            keys.history,
            keys.usage,
            keys.outcomes,
            keys.plan,
            keys.artifacts,
            keys.feed,
            keys.trace,
            keys.cursors,
            *(keys.memory(str(name)) for name in agents if name),
            *(keys.inbox(str(name)) for name in agents if name),
        ]
    )
    names = sorted(named)
    for start in range(0, len(names), 500):
        deleted += int(await client.unlink(*names[start : start + 500]))
    deleted += int(await client.unlink(keys.index))
    return deleted


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
        if cursor is not None and not any(int(part) for part in cursor.split("-")):
            return Page([], None)  # nothing is older than 0-0 (Redis refuses "(0-0")
        newest = f"({cursor}" if cursor else "+"
        entries = await self.client.xrevrange(key, max=newest, min="-", count=limit + 1)
        more = len(entries) > limit
        entries = [(str(entry_id), dict(fields)) for entry_id, fields in entries[:limit]]
        return Page(entries, entries[-1][0] if more and entries else None)

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

    async def input_outcomes(self, numbers: Sequence[int]) -> dict[int, dict[str, Any]]:
        """What became of the inputs ``numbers`` (absent: not read by an agent yet)."""
        if not numbers:
            return {}
        raw = await self.client.hmget(self.keys.input_outcomes, [str(n) for n in numbers])
        return {n: orjson.loads(r) for n, r in zip(numbers, raw, strict=True) if r}

    async def usage(self) -> dict[str, int]:
        raw = await self.client.hgetall(self.keys.usage)
        return {key: int(value) for key, value in raw.items()}


# -- tool calls waiting for a person (agentstack_core.approvals) ---------------------------

# KEYS: approvals. ARGV: id, decision, by, reason, now. Replies {state after, 1 if this
# call moved it}.
_DECIDE = Script(
    """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return {'Missing', 0}
end
local r = cjson.decode(raw)
if r.state ~= 'Pending' then
  return {r.state, 0}
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
return {r.state, 1}
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
    moment = time.time() if now is None else now
    reply = await _DECIDE(
        client,
        [StackKeys(stack).approvals],
        [approval, APPROVED if approved else DENIED, by, reason, repr(moment)],
    )
    return str(reply[0]), bool(int(reply[1]))


async def claim_approval(
    client: RedisClient, stack: StackRef, approval: str, *, token: str, tick: str
) -> str:
    """Take an approved call to run it now (``Claimed``), under the stack's lease;
    else the record's state (``Running`` with another claim: an interrupted attempt)."""
    keys = StackKeys(stack)
    reply = await _CLAIM(client, [keys.lease, keys.approvals], [token, approval, tick])
    return str(reply[0])


async def read_approvals(client: RedisClient, stack: StackRef) -> list[Approval]:
    """Every approval record of the stack, oldest request first."""
    redis: Any = client  # see RedisClient: redis-py's annotations don't fit
    raw = await redis.hvals(StackKeys(stack).approvals)
    return sorted((Approval.decode(r) for r in raw), key=lambda a: (a.requested_at, a.id))
