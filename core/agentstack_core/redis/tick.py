"""The tick path in Redis: the lease, what agents read, and the atomic writes of a tick.

Reads come in one round trip each (all of a stack's keys share one hash slot). Every
write is a Lua script, so it happens whole or not at all, and each is fenced twice:

- by the stack's life: the spec hash (with the stack's uid) is present from the
  operator's first publish until the stack is deleted. A script finds it gone (or
  belonging to a newer incarnation of the same name) and writes nothing — a tick in
  flight when its stack is deleted cannot recreate a single key
  (:class:`~agentstack_core.redis.errors.StackGoneError`);
- by the lease: only the holder of the stack's lease token may commit a step or
  finish a tick (:class:`~agentstack_core.redis.errors.LeaseLostError`), so a runner
  that lost its lease (paused, partitioned, presumed dead) can no longer change
  anything.

The scripts (each a ``.lua`` file beside this module, with named keys and arguments):

- ``begin``: starts a tick in one round trip — whether its id is done already (and
  its recorded outcome), else the lease, and with it everything admission and
  resumption need (the published spec, the counters, the steps an earlier attempt
  committed);
- ``context``: what one agent sees (plan, artifacts, recent feed, memory and its unread
  inbox, which starts after its cursor);
- ``commit_step``: one agent step's writes together with the record that the step is
  done. A tick resumed by another runner skips committed steps, so every step's
  effects happen exactly once even though delivery is at least once. In the same call
  it reads the context of the agent whose step comes next. The writes are the step's
  domain operations (:mod:`agentstack_core.operations`), which this module alone turns
  into Redis commands (:func:`commands_of`) — the script refuses any command outside
  its fixed list. An item for the archive is a named write, ``ARCHIVE``, that the
  script expands itself: appended and indexed in the same call
  (``archive_append.lua``, see :mod:`.search`). The step's bill goes into its day's
  chargeback buckets in the same call (:mod:`.usage`);
- ``finish_tick``: records the tick id as done together with its outcome (releasing
  the lease it ran under), appends the tick to the history and moves the stack's
  counters (tokens, ticks, cost, consecutive failures and idle ticks) — once, whoever
  gets there first — and trims the archive to its bounds, with its index. The outcome
  is kept for the ids of the done window: a redelivered tick that finds its id done
  republishes that outcome, so a result is never lost between recording and
  publishing it. A tick that did not run (dropped) is recorded
  without the lease, but never while the lease is held for that very tick id (it is
  running elsewhere);
- ``renew`` and ``release`` keep and give up the lease.

Every key a script creates is added to the stack's index set, so
:func:`~agentstack_core.redis.publishing.delete_stack` removes exactly the stack's keys
without scanning the keyspace.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from agentstack_core.budget import Usage
from agentstack_core.context import (
    FEED_CONTEXT,
    INBOX_BATCH,
    SLEEP_BATCH,
    AgentContext,
    InboxMessage,
)
from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.messages import TickResult
from agentstack_core.operations import (
    AdvanceCursor,
    AppendTrace,
    Archive,
    Deliver,
    Forget,
    ForgetApproval,
    MarkInputRead,
    Operation,
    Post,
    Remember,
    RemoveArtifact,
    SaveApproval,
    SaveArtifact,
    SaveGoal,
    SaveLongTerm,
    SavePlan,
)
from agentstack_core.protocol import RedisClient
from agentstack_core.records import (
    ArchiveKind,
    ArchiveRecord,
    ArtifactRecord,
    GoalRecord,
    LongTermRecord,
    MessageRecord,
    PublishedSpec,
    Record,
    StepRecord,
    TaskRecord,
    TickRecord,
)
from agentstack_core.redis.errors import GONE, LeaseLostError, StackGoneError
from agentstack_core.redis.script import LuaScript, pairs
from agentstack_core.redis.usage import day_of
from agentstack_core.retention import (
    ARCHIVE_HARD_MAXLEN,
    ARCHIVE_MAXLEN,
    ARCHIVE_TRIM_BATCH,
    CHECKPOINT_EVERY,
    CHECKPOINT_MAX,
    CHECKPOINT_MAX_BYTES,
    CHECKPOINT_RECENT,
    DONE_WINDOW,
    FEED_MAXLEN,
    HISTORY_MAXLEN,
    INBOX_MAXLEN,
    INDEX_TERMS,
    OUTCOMES_WINDOW,
    STEPS_TTL_MS,
    TRACE_MAXLEN,
)


def lease_token(tick_id: str, runner: str, nonce: str) -> str:
    """The token a runner holds a stack's lease under while it runs ``tick_id``: it
    starts with :func:`lease_prefix`, so anyone can tell which tick holds the lease."""
    return f"{lease_prefix(tick_id)}{runner}|{nonce}"


def lease_prefix(tick_id: str) -> str:
    return f"{tick_id}|"


@dataclass(frozen=True)
class _Begin:
    tick_id: str
    token: str
    ttl_ms: int
    uid: str


@dataclass(frozen=True)
class _Renew:
    token: str
    ttl_ms: int


@dataclass(frozen=True)
class _Release:
    token: str


@dataclass(frozen=True)
class _Context:
    agent: str
    feed_count: int = FEED_CONTEXT
    inbox_count: int = INBOX_BATCH


@dataclass(frozen=True)
class _Sleep:
    count: int = SLEEP_BATCH


@dataclass(frozen=True)
class _Commit:
    token: str
    uid: str
    agent: str
    record: str
    """The step's :class:`~agentstack_core.records.StepRecord` as JSON."""
    writes: str
    """JSON list of ``[command, key position, [arguments]]`` (:func:`commands_of`)."""
    next_agent: str | None
    day: str
    """The step's UTC day, ``YYYY-MM-DD``: its chargeback buckets (:func:`.usage.day_of`)."""
    steps_ttl_ms: int = STEPS_TTL_MS
    feed_count: int = FEED_CONTEXT
    inbox_count: int = INBOX_BATCH
    index_terms: int = INDEX_TERMS
    archive_hard_maxlen: int = ARCHIVE_HARD_MAXLEN
    archive_trim_batch: int = ARCHIVE_TRIM_BATCH


STATE_KEYS = ("plan", "artifacts", "goal", "cursors", "feed")
"""A stack's state beyond the team's keys and the long-term memory, as a checkpoint
keeps it and a rollback or a fork's seed restores it (``restore_state.lua``)."""
CHECKPOINT_KEYS = (*STATE_KEYS, "checkpoints", "checkpoint_states")
"""The keys a checkpoint reads or keeps beyond the finish's own (``checkpoint.lua``;
with the team's memory and inbox keys, :meth:`~agentstack_core.keys.StackKeys.team`)."""
CHECKPOINT_LIMITS = {
    "recent": CHECKPOINT_RECENT,
    "every": CHECKPOINT_EVERY,
    "max": CHECKPOINT_MAX,
    "max_bytes": CHECKPOINT_MAX_BYTES,
    "feed": FEED_CONTEXT,
}
"""What a checkpoint keeps and how many are kept (:mod:`agentstack_core.retention`)."""


@dataclass(frozen=True)
class _Finish:
    uid: str
    owner: str | None
    """The lease token the tick ran under (``None``: a tick that did not run)."""
    busy_prefix: str | None
    """For a tick that did not run: the lease prefix of the tick itself (running now)."""
    now: float
    result: TickResult
    history: TickRecord
    ran: bool
    done_window: int = DONE_WINDOW
    outcomes_window: int = OUTCOMES_WINDOW
    history_maxlen: int = HISTORY_MAXLEN
    archive_maxlen: int = ARCHIVE_MAXLEN
    archive_hard_maxlen: int = ARCHIVE_HARD_MAXLEN
    archive_trim_batch: int = ARCHIVE_TRIM_BATCH
    checkpoint: bool = False
    """Keep the state the tick leaves (:mod:`.checkpoints`): a tick that ran steps."""
    agents: tuple[str, ...] = ()
    """The team, whose memory and inbox keys follow the declared keys, in pairs."""
    checkpoint_limits: dict[str, int] = field(default_factory=lambda: dict(CHECKPOINT_LIMITS))


_CONTEXT_KEYS = ("plan", "artifacts", "feed", "cursors", "memory", "inbox", "goal", "longterm")
"""The keys ``read_context.lua`` reads (``memory`` and ``inbox``: the agent's own)."""
ARCHIVE_KEYS = ("archive", "archive_index", "archive_stats", "longterm")
"""The keys the archive's append and trim touch (``archive_append.lua``,
``trim_archive.lua``): the stream, its index and the consolidation watermark."""
ARCHIVE_LIBS = ("field_value", "tokens", "trim_archive", "archive_append")
"""What a script that appends to the archive composes: a stream entry's field, the
tokenizer, the trim, the append that indexes."""

_BEGIN = LuaScript(
    __file__,
    "begin",
    keys=("spec", "lease", "index", "done", "outcomes", "usage", "steps", "goal"),
    args=_Begin,
    libs=("alive",),
)
_RENEW = LuaScript(__file__, "renew", keys=("lease",), args=_Renew)
_RELEASE = LuaScript(__file__, "release", keys=("lease",), args=_Release)
_CONTEXT = LuaScript(__file__, "context", keys=_CONTEXT_KEYS, args=_Context, libs=("read_context",))
_SLEEP_CONTEXT = LuaScript(__file__, "sleep_context", keys=("longterm", "archive"), args=_Sleep)
_COMMIT_STEP = LuaScript(
    __file__,
    "commit_step",
    keys=(
        "spec",
        "lease",
        "index",
        "steps",
        "usage_days",
        *_CONTEXT_KEYS,
        *(key for key in ARCHIVE_KEYS if key not in _CONTEXT_KEYS),
    ),
    args=_Commit,
    libs=("alive", "read_context", *ARCHIVE_LIBS),
    records={"step": StepRecord},
    durable=True,
)
_FINISH_TICK = LuaScript(
    __file__,
    "finish_tick",
    keys=(
        *("spec", "lease", "index", "done", "history", "usage", "steps", "outcomes"),
        *ARCHIVE_KEYS,
        *CHECKPOINT_KEYS,
    ),
    args=_Finish,
    libs=("alive", "field_value", "trim_archive", "checkpoint"),
    records={"r": TickResult},
    hashes={"usage": Usage},
    durable=True,
)

_CONSOLIDATED = ("memory", "watermark", "consolidations")
"""The long-term memory's fields a consolidation writes (``lost`` is the trim's)."""

Command = tuple[str, str, list[str]]
"""A write as the commit script executes it: (command, key, arguments)."""


def commands_of(keys: StackKeys, operation: Operation) -> list[Command]:
    """The Redis writes of one domain operation: the one place that knows them."""
    match operation:
        case Deliver(to=to, message=message):
            return [_append(keys.inbox(to), message, INBOX_MAXLEN)]
        case Remember(agent=agent, key=key, value=value):
            return [("HSET", keys.memory(agent), [key, value])]
        case Forget(agent=agent, key=key):
            return [("HDEL", keys.memory(agent), [key])]
        case SaveArtifact(name=name, artifact=artifact):
            return [("HSET", keys.artifacts, [name, artifact.to_json()])]
        case RemoveArtifact(name=name):
            return [("HDEL", keys.artifacts, [name])]
        case Archive(entry=entry):
            return [("ARCHIVE", keys.archive, _flat(entry))]
        case SavePlan(tasks=tasks):
            return [("SET", keys.plan, [orjson.dumps([t.to_dict() for t in tasks]).decode()])]
        case Post(entry=entry):
            return [_append(keys.feed, entry, FEED_MAXLEN)]
        case AdvanceCursor(agent=agent, message_id=message_id):
            return [("HSET", keys.cursors, [agent, message_id])]
        case MarkInputRead(number=number, outcome=outcome):
            return [("HSET", keys.input_outcomes, [str(number), outcome.to_json()])]
        case SaveApproval(approval=approval, new=new):
            command = "HSETNX" if new else "HSET"
            return [(command, keys.approvals, [approval.id, approval.to_json()])]
        case ForgetApproval(id=approval):
            return [("HDEL", keys.approvals, [approval])]
        case SaveGoal(goal=goal):
            return [("SET", keys.goal, [goal.to_json()])]
        case SaveLongTerm(record=record):
            fields = record.to_fields()
            kept = [part for name in _CONSOLIDATED for part in (name, fields[name])]
            return [("HSET", keys.longterm, kept)]
        case AppendTrace(entry=entry):
            return [_append(keys.trace, entry, TRACE_MAXLEN)]
    raise TypeError(f"not a domain operation: {operation!r}")


def _append(key: str, record: Record, maxlen: int) -> Command:
    return ("XADD", key, ["MAXLEN", "~", str(maxlen), "*", *_flat(record)])


def _flat(record: Record) -> list[str]:
    return [item for pair in record.to_fields().items() for item in pair]


class Finished(Enum):
    """What :meth:`TickStore.finish_tick` did."""

    RECORDED = "recorded"
    ALREADY_DONE = "already done"
    """The tick id had been recorded before (its outcome stands)."""
    RUNNING = "running"
    """Not recorded: the tick is running right now (its lease holder will finish it)."""


@dataclass(frozen=True)
class TickStart:
    """What :meth:`TickStore.begin` found, in the order the engine checks it."""

    done: bool = False
    """The tick id is recorded as done: nothing may run."""
    recorded: TickResult | None = None
    """Its recorded result, if it is among the newest kept (published again)."""
    holder: str | None = None
    """Another token holds the lease (the begin took nothing)."""
    published: PublishedSpec | None = None
    """Under the lease: the published spec, ``None`` if none."""
    usage: Usage = field(default_factory=Usage)
    """Under the lease: the stack's counters."""
    committed: dict[str, StepRecord] = field(default_factory=dict)
    """The step records an earlier attempt of this tick committed (also when another
    token holds the lease: a tick dropped then still counts what they did and spent)."""
    goal: GoalRecord | None = None
    """Under the lease: where a finite goal stands (``None``: never declared)."""


class TickStore:
    """The lease, reads and fenced writes of one stack's tick path.

    ``uid`` is the incarnation of the stack the caller works for (empty: whichever
    exists); writes for another incarnation raise
    :class:`~agentstack_core.redis.errors.StackGoneError`.
    """

    def __init__(self, client: RedisClient, stack: StackRef, uid: str = "") -> None:
        self.client: Any = client  # see RedisClient: redis-py's annotations don't fit
        self.stack = stack
        self.uid = uid
        self.keys = StackKeys(stack)

    def _gone(self) -> StackGoneError:
        return StackGoneError(f"{self.stack} no longer exists")

    async def spec(self) -> PublishedSpec | None:
        """The published spec, or ``None`` if there is none."""
        return published(await self.client.hgetall(self.keys.spec))

    # -- the lease -------------------------------------------------------------------

    async def begin(self, tick_id: str, token: str, ttl_seconds: float) -> TickStart:
        """Start ``tick_id`` under ``token`` in one round trip (see :class:`TickStart`).

        Raises :class:`~agentstack_core.redis.errors.StackGoneError` if the stack no
        longer exists.
        """
        answer = await _BEGIN(
            self.client,
            _Begin(tick_id=tick_id, token=token, ttl_ms=int(ttl_seconds * 1000), uid=self.uid),
            keys=self.keys,
            steps=self.keys.steps(tick_id),
        )
        state = answer[0]
        if state == "done":
            raw = answer[1]
            recorded = TickResult.from_fields(orjson.loads(raw)) if raw else None
            return TickStart(done=True, recorded=recorded)
        if state == "gone":
            raise self._gone()
        if state == "held":
            return TickStart(holder=str(answer[1]), committed=_committed(answer[2]))
        spec, usage = (pairs(flat) for flat in answer[1:3])
        return TickStart(
            published=published(spec),
            usage=Usage.from_hash(usage),
            committed=_committed(answer[3]),
            goal=_goal(answer[4]),
        )

    async def outcome(self, tick_id: str) -> TickResult | None:
        """The result the tick was recorded with, while the newest outcomes keep it."""
        raw = await self.client.hget(self.keys.outcomes, tick_id)
        return TickResult.from_fields(orjson.loads(raw)) if raw else None

    async def artifacts_of(self, tick_id: str) -> dict[str, str]:
        """Name → content of the artifacts whose current version ``tick_id`` wrote or
        reviewed (what the evals score)."""
        found: dict[str, str] = {}
        for name, raw in (await self.client.hgetall(self.keys.artifacts)).items():
            record = ArtifactRecord.from_json(raw)
            if record.tick_id == tick_id:
                found[str(name)] = record.content
        return found

    async def goal(self) -> GoalRecord | None:
        """Where the stack's finite goal stands now."""
        return _goal(await self.client.get(self.keys.goal))

    async def renew_lease(self, token: str, ttl_seconds: float) -> bool:
        renewed = await _RENEW(
            self.client, _Renew(token=token, ttl_ms=int(ttl_seconds * 1000)), keys=self.keys
        )
        return bool(renewed)

    async def release_lease(self, token: str) -> None:
        await _RELEASE(self.client, _Release(token=token), keys=self.keys)

    # -- what agents read ------------------------------------------------------------

    async def context(self, agent: str) -> AgentContext:
        return _agent_context(
            await _CONTEXT(self.client, _Context(agent=agent), **self._context_keys(agent))
        )

    async def sleep_context(self, count: int = SLEEP_BATCH) -> AgentContext:
        """What a consolidation reads: the long-term memory and the archive items after
        its watermark (at most ``count``), its own notes left out."""
        longterm, items = await _SLEEP_CONTEXT(self.client, _Sleep(count), keys=self.keys)
        return AgentContext(
            plan=(),
            artifacts={},
            feed=[],
            memory={},
            inbox=[],
            longterm=LongTermRecord.from_fields(pairs(longterm)),
            archive=tuple(
                (str(entry_id), record)
                for entry_id, fields in items
                if (record := ArchiveRecord.from_fields(pairs(fields))).kind
                is not ArchiveKind.NOTE  # a consolidation's own notes: already in memory
            ),
        )

    def _context_keys(self, agent: str) -> dict[str, str]:
        keys = self.keys
        return {
            "plan": keys.plan,
            "artifacts": keys.artifacts,
            "feed": keys.feed,
            "cursors": keys.cursors,
            "memory": keys.memory(agent),
            "inbox": keys.inbox(agent),
            "goal": keys.goal,
            "longterm": keys.longterm,
        }

    # -- fenced writes ---------------------------------------------------------------

    async def commit_step(
        self,
        *,
        token: str,
        tick_id: str,
        record: StepRecord,
        operations: Sequence[Operation],
        then: str | None = None,
        at: float | None = None,
    ) -> AgentContext | None:
        """Apply ``operations`` and mark ``record.agent``'s step of ``tick_id`` done,
        atomically.

        ``then``: the agent whose step comes next; its context (as after this commit)
        is returned, read in the same round trip. Nothing is applied if the step had
        been committed already (a resumed tick). Raises
        :class:`~agentstack_core.redis.errors.LeaseLostError` if this runner no longer
        holds the lease, and :class:`~agentstack_core.redis.errors.StackGoneError` if
        the stack was deleted.

        ``at``: when the step happened (default: now); its UTC day names the chargeback
        buckets its bill is added to (:attr:`~agentstack_core.keys.StackKeys.usage_days`).
        """
        named = {"steps": self.keys.steps(tick_id), **self._context_keys(then or record.agent)}
        declared = _COMMIT_STEP.key_list(named, self.keys)
        extra: list[str] = []
        writes = []
        for operation in operations:
            for command, key, arguments in commands_of(self.keys, operation):
                if key not in declared and key not in extra:
                    extra.append(key)
                position = (
                    declared.index(key) if key in declared else len(declared) + extra.index(key)
                )
                writes.append([command, position + 1, arguments])
        reply = await _COMMIT_STEP(
            self.client,
            _Commit(
                token=token,
                uid=self.uid,
                agent=record.agent,
                record=record.to_json(),
                writes=orjson.dumps(writes).decode(),
                next_agent=then,
                day=day_of(time.time() if at is None else at),
            ),
            keys=self.keys,
            extra_keys=extra,
            **named,
        )
        if reply[0] == GONE:
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
        agents: Sequence[str] = (),
    ) -> Finished:
        """Record ``result`` as the tick's outcome (once), and in the history stream.

        ``token``: the lease token the tick ran under (only its holder may finish it;
        :class:`~agentstack_core.redis.errors.LeaseLostError` otherwise), or ``None``
        for a tick that did not run (dropped, or failed outside any runner) — recorded
        unless the tick is running right now. ``ran=False`` records it without counting
        it as a tick run. ``agents``: the team's names; a tick that ran steps under its
        lease then leaves a checkpoint of the state (:mod:`.checkpoints`).
        """
        checkpoint = token is not None and result.steps > 0 and bool(agents)
        team = tuple(agents) if checkpoint else ()
        answer = await _FINISH_TICK(
            self.client,
            _Finish(
                uid=self.uid,
                owner=token,
                busy_prefix=lease_prefix(result.tick_id) if token is None else None,
                now=time.time(),
                result=result,
                history=result.history_entry(),
                ran=ran,
                checkpoint=checkpoint,
                agents=team,
            ),
            keys=self.keys,
            steps=self.keys.steps(result.tick_id),
            extra_keys=self.keys.team(team),
        )
        if answer == GONE:
            raise self._gone()
        if answer == 0:
            if token is not None:
                raise LeaseLostError(f"lease of {self.stack} lost finishing {result.tick_id}")
            return Finished.RUNNING
        return Finished.RECORDED if answer == 1 else Finished.ALREADY_DONE


def published(raw: dict[str, str]) -> PublishedSpec | None:
    """The spec hash as a record (``None``: nothing published)."""
    if not raw or "spec" not in raw:
        return None
    return PublishedSpec.from_fields(raw)


def _agent_context(reply: Sequence[Any]) -> AgentContext:
    """The reply of ``read_context.lua``."""
    plan, artifacts, feed, memory, inbox, goal, longterm = reply
    return AgentContext(
        plan=tuple(TaskRecord.from_dict(task) for task in orjson.loads(plan)) if plan else (),
        artifacts={
            name: ArtifactRecord.from_json(record) for name, record in pairs(artifacts).items()
        },
        feed=[pairs(fields).get("content", "") for _id, fields in reversed(feed)],
        memory=pairs(memory),
        inbox=[_inbox_message(str(entry_id), pairs(fields)) for entry_id, fields in inbox],
        goal=_goal(goal),
        longterm=LongTermRecord.from_fields(pairs(longterm)),
    )


def _goal(raw: str | None) -> GoalRecord | None:
    return GoalRecord.from_json(raw) if raw else None


def _committed(flat: list[str]) -> dict[str, StepRecord]:
    """A tick's steps hash (agent → record), as HGETALL answers it in a script."""
    return {name: StepRecord.from_json(record) for name, record in pairs(flat).items()}


def _inbox_message(entry_id: str, fields: dict[str, str]) -> InboxMessage:
    record = MessageRecord.from_fields(fields)
    return InboxMessage(
        id=entry_id,
        sender=record.sender,
        content=record.content,
        tick_id=record.tick_id,
        input=record.input,
    )
