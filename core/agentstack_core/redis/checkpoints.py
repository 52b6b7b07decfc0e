"""Checkpoints of a stack's state at tick boundaries, and rolling a stack back to one.

The finish of every tick that ran steps keeps the state the tick leaves, in the same
atomic script (``checkpoint.lua`` composed into ``finish_tick.lua``), so a checkpoint
never shows half a tick: what the agents see and build on — plan, artifacts, goal, the
long-term memory, cursors, the newest feed posts, each agent's memory and unread inbox
— and where the archive stood. Counters are not part of it: money spent stays spent.

Kept per stack (:mod:`agentstack_core.retention`): every one of the newest
:data:`~agentstack_core.retention.CHECKPOINT_RECENT`, then one in
:data:`~agentstack_core.retention.CHECKPOINT_EVERY`, at most
:data:`~agentstack_core.retention.CHECKPOINT_MAX` and
:data:`~agentstack_core.retention.CHECKPOINT_MAX_BYTES` (oldest first, never the newest).

A rollback (``rollback.lua``) needs the stack paused — its published state ``Paused``
and no tick holding the lease — so nothing runs while its state is replaced, and it is
all or nothing: a process killed during it leaves the old state or the new. What came
after the checkpoint stays where it is kept anyway: in the archive (every task, artifact
version, message and input) and in the later checkpoints, which a second rollback can
return to. Inputs sent after the checkpoint stay in their inboxes, unread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import RedisClient
from agentstack_core.records import ArchiveKind, ArchiveRecord
from agentstack_core.redis.errors import StackGoneError
from agentstack_core.redis.script import LuaScript, pairs
from agentstack_core.redis.tick import ARCHIVE_KEYS, ARCHIVE_LIBS, CHECKPOINT_KEYS, STATE_KEYS
from agentstack_core.retention import ARCHIVE_HARD_MAXLEN, ARCHIVE_TRIM_BATCH, INDEX_TERMS


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint kept: the tick that left it, its sequence number, its size."""

    tick_id: str
    seq: int
    bytes: int


@dataclass(frozen=True)
class AgentState:
    """One agent's part of a checkpoint."""

    memory: dict[str, str]
    unread: list[tuple[str, dict[str, str]]]
    """Its inbox after its cursor: (message id, fields), oldest first."""
    newest: str
    """The id of the newest message in its inbox then (empty: none)."""


@dataclass(frozen=True)
class CheckpointState:
    """The stack's state as one tick left it (see the module docstring)."""

    tick_id: str
    seq: int
    at: float
    plan: str
    artifacts: dict[str, str]
    """Artifact name → its record as JSON."""
    goal: str
    longterm: dict[str, str]
    cursors: dict[str, str]
    feed: list[tuple[str, dict[str, str]]]
    """The newest feed posts, newest first."""
    agents: dict[str, AgentState]
    archive: str
    """The id of the archive's newest item then (empty: the archive was empty)."""

    @classmethod
    def from_json(cls, raw: str | bytes) -> CheckpointState:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(
            tick_id=data["tick"],
            seq=int(data["seq"]),
            at=float(data["at"]),
            plan=data["plan"],
            artifacts=_hash(data["artifacts"]),
            goal=data["goal"],
            longterm=_hash(data["longterm"]),
            cursors=_hash(data["cursors"]),
            feed=_entries(data["feed"]),
            agents={
                name: AgentState(memory=_hash(memory), unread=_entries(unread), newest=newest)
                for name, memory, unread, newest in data["agents"]
            },
            archive=data["archive"],
        )


def _hash(flat: list[str] | dict[str, Any]) -> dict[str, str]:
    """A HGETALL reply as Lua's cjson encoded it (an empty one as ``{}``)."""
    return pairs(flat) if isinstance(flat, list) else {}


def _entries(raw: list[Any] | dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """A stream range as Lua's cjson encoded it (an empty one as ``{}``)."""
    return [(entry_id, _hash(fields)) for entry_id, fields in raw] if isinstance(raw, list) else []


class Refusal(Enum):
    """Why a rollback or a fork's seed did not happen (nothing changed)."""

    GONE = "gone"
    """No such stack: not published (yet: a fork the operator has not taken on), or
    another incarnation."""
    RUNNING = "running"
    """Its published state is not ``Paused`` (yet: the operator publishes it)."""
    BUSY = "busy"
    """A tick holds the stack's lease (it finishes, or its lease expires)."""
    MISSING = "missing"
    """No checkpoint of that tick is kept (a rollback)."""
    USED = "used"
    """It was seeded, or has ticked, already: its own state is never overwritten (a
    fork's seed)."""


@dataclass(frozen=True)
class RolledBack:
    """A rollback done: to which checkpoint, and how many later inputs stayed unread."""

    tick_id: str
    seq: int
    inputs_kept: int


@dataclass(frozen=True, kw_only=True)
class _Restore:
    """What ``rollback.lua`` and ``seed.lua`` both take (``restore_state.lua``)."""

    uid: str
    agents: tuple[str, ...]
    """The checkpoint's team, whose memory and inbox keys follow the declared keys."""
    note: ArchiveRecord
    """The archive's note of who did it."""
    index_terms: int = INDEX_TERMS
    archive_hard_maxlen: int = ARCHIVE_HARD_MAXLEN
    archive_trim_batch: int = ARCHIVE_TRIM_BATCH


@dataclass(frozen=True, kw_only=True)
class _Rollback(_Restore):
    tick_id: str


_ROLLBACK = LuaScript(
    __file__,
    "rollback",
    keys=("spec", "lease", "index", *ARCHIVE_KEYS, *CHECKPOINT_KEYS),
    args=_Rollback,
    libs=("alive", *ARCHIVE_LIBS, "restore_state"),
    durable=True,
)


@dataclass(frozen=True, kw_only=True)
class _Seed(_Restore):
    state: str
    """The source's checkpoint, as JSON (as its hash keeps it)."""


_SEED = LuaScript(
    __file__,
    "seed",
    keys=("spec", "lease", "index", "done", *ARCHIVE_KEYS, *STATE_KEYS),
    args=_Seed,
    libs=("alive", *ARCHIVE_LIBS, "restore_state"),
    durable=True,
)


def _note(ref: str, by: str, text: str) -> ArchiveRecord:
    return ArchiveRecord(kind=ArchiveKind.NOTE, ref=ref, agent=by, at=time.time(), text=text)


async def seed(
    client: RedisClient,
    fork: StackRef,
    uid: str,
    source: CheckpointState,
    raw: str,
    by: str,
    origin: StackRef,
) -> Refusal | None:
    """Give the fork ``fork`` (incarnation ``uid``, paused, never ticked) the state of
    ``origin``'s checkpoint ``source`` (``raw``: its JSON), noting ``by`` (who forked)
    in its archive; ``None`` when done."""
    keys = StackKeys(fork)
    agents = tuple(source.agents)
    text = f"{by} forked this stack from {origin} at the state tick {source.tick_id} left"
    answer = await _SEED(
        client,
        _Seed(uid=uid, state=raw, agents=agents, note=_note(f"fork of {origin}", by, text)),
        keys=keys,
        extra_keys=keys.team(agents),
    )
    outcome = str(answer[0])
    return None if outcome == "done" else Refusal(outcome)


class Checkpoints:
    """The checkpoints of one stack: listed, read, rolled back to."""

    def __init__(self, client: RedisClient, stack: StackRef, uid: str = "") -> None:
        self.client: Any = client  # see RedisClient: redis-py's annotations don't fit
        self.stack = stack
        self.uid = uid
        self.keys = StackKeys(stack)

    async def listing(self) -> list[CheckpointInfo]:
        """The checkpoints kept, oldest first."""
        kept = await self.client.zrange(self.keys.checkpoints, 0, -1, withscores=True)
        if not kept:
            return []
        pipe = self.client.pipeline(transaction=False)
        for tick_id, _seq in kept:
            pipe.hstrlen(self.keys.checkpoint_states, tick_id)
        sizes = await pipe.execute()
        return [
            CheckpointInfo(tick_id=str(tick_id), seq=int(seq), bytes=int(size))
            for (tick_id, seq), size in zip(kept, sizes, strict=True)
            if size
        ]

    async def raw(self, tick_id: str) -> str | None:
        """The state ``tick_id`` left as JSON, if its checkpoint is kept."""
        raw = await self.client.hget(self.keys.checkpoint_states, tick_id)
        return str(raw) if raw else None

    async def newest(self) -> str | None:
        """The tick id of the newest checkpoint kept."""
        kept = await self.client.zrange(self.keys.checkpoints, -1, -1)
        return str(kept[0]) if kept else None

    async def state(self, tick_id: str) -> CheckpointState | None:
        """The state ``tick_id`` left, if its checkpoint is kept."""
        raw = await self.raw(tick_id)
        return CheckpointState.from_json(raw) if raw else None

    def tick_of(self, text: str) -> str:
        """A tick id as people give it — whole, or only its slot (``42``, ``42-sleep``) —
        as the stack's tick id."""
        return text if "/" in text else f"{self.stack}/{text}"

    async def rollback(
        self, tick_id: str, by: str, state: CheckpointState | None = None
    ) -> RolledBack | Refusal:
        """Restore the state ``tick_id`` left (see the module docstring), recording
        ``by`` (who asked) in the archive's note; ``state``: that checkpoint as the
        caller read it already (else read here). Raises
        :class:`~agentstack_core.redis.errors.StackGoneError` for a stack that no longer
        lives in Redis."""
        state = state or await self.state(tick_id)
        if state is None:
            return Refusal.MISSING
        agents = tuple(state.agents)
        text = f"{by} rolled the stack back to the state tick {tick_id} left"
        answer = await _ROLLBACK(
            self.client,
            _Rollback(
                uid=self.uid,
                tick_id=tick_id,
                agents=agents,
                note=_note(f"rollback to {tick_id}", by, text),
            ),
            keys=self.keys,
            extra_keys=self.keys.team(agents),
        )
        outcome = str(answer[0])
        if outcome == Refusal.GONE.value:
            raise StackGoneError(f"{self.stack} no longer exists")
        if outcome == "done":
            return RolledBack(tick_id=tick_id, seq=int(answer[1]), inputs_kept=int(answer[2]))
        return Refusal(outcome)
