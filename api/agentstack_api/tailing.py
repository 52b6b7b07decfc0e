"""Tailing Redis streams for live clients: one blocking read per group of keys, fanned out.

A live client of a stack's trace or feed waits for new entries. If each client waited
in its own blocking ``XREAD``, each would hold a pooled Redis connection for its whole
life: a few hundred dashboards would empty the pool that pages and stacks are served
from, and Redis would keep one blocked client per viewer. :class:`StreamHub` makes the
connections scale with the streams watched instead of with the clients::

    StreamViews.tail ─ follow(key, start) ─► Tail ◄─ put_nowait ─┐
      │  (request pool) XREVRANGE: the newest id                 │ fan-out, never waits
      │                 XRANGE (last +: catch-up                 │
      ▼                                                          │
    SSE text ◄─ Tail.next: catch-up, then the queue,      a group's reader (one task,
                dropping ids already sent                 the readers' own client):
                                                          XREAD BLOCK 500
                                                            STREAMS k1 k2 … id1 id2 …

- **Groups.** On standalone Redis one reader reads every watched key in one ``XREAD``.
  On Redis Cluster a multi-key ``XREAD`` across hash slots fails (CROSSSLOT), so keys
  are grouped by slot — one reader per slot; a stack's keys share a slot (hash tag).
- **Positions.** The hub keeps, per watched key, the id of the last entry it read. A key
  newly watched starts at the newest id its first subscriber saw *before* subscribing,
  so the entries added in between are read, not skipped. The block is short
  (:data:`HUB_BLOCK_MS`) because a newly watched key joins its group's next read.
- **No gap, no duplicate.** A subscriber registers first, then catches up with
  ``XRANGE (last +`` (whatever the hub read before it registered is in Redis), then
  takes its queue, dropping ids at or below the last one it returned.
- **Slow clients.** A subscriber's queue is bounded; fan-out never waits on it. When it
  is full the subscriber is dropped (:class:`DroppedError`): its stream ends and the
  client reconnects with ``Last-Event-ID``, which resumes it exactly.
- **Failures.** A failed read (Redis restarted, a cluster node gone) is retried with
  back-off from the kept positions; the reader never dies while its keys are watched.
- **Lifetime.** A reader starts with its group's first key and ends after the read in
  which it finds its group empty; :meth:`StreamHub.stop` empties every group and
  cancels every reader (so a reader whose cancellation was lost still ends).

Short reads (the newest id, catch-up) use the client requests are served with; only the
blocking reads use the readers' client, which the server builds apart (its own pool),
so live streams never take a connection a page request waits for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from agentstack_core.protocol import RedisClient

logger = logging.getLogger(__name__)

Entry = tuple[str, dict[str, str]]
"""A stream entry: its id and its fields."""

HUB_BLOCK_MS = 500
"""How long one read of a group waits for new entries (a key that joins waits as long)."""
READ_COUNT = 100
"""Entries per key and read, for the readers and for catch-up alike."""
QUEUE_ENTRIES = 512
"""Entries a subscriber may have waiting before it is dropped as too slow."""
BACKOFF_SECONDS = (0.1, 5.0)
"""First and longest wait after a failed read; each failure in a row doubles it."""


def stream_order(entry_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair: ``1700-10`` comes after ``1700-9``."""
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


def slot_group(key: str, cluster: bool) -> int:
    """The group whose reader reads ``key``: its hash slot on a cluster, else one group."""
    return key_slot(key.encode()) if cluster else 0


def _entries(reply: Any) -> list[tuple[str, list[Entry]]]:
    """An ``XREAD`` reply as (key, entries) pairs; RESP2 sends a list, RESP3 a map."""
    pairs = reply.items() if isinstance(reply, dict) else (reply or [])
    return [
        (str(key), [(str(entry_id), dict(fields)) for entry_id, fields in entries])
        for key, entries in pairs
    ]


class DroppedError(Exception):
    """The subscriber's queue overflowed: it was too slow and has left the hub."""


class Tail:
    """One subscriber of one stream key: catch-up, then what the hub reads, each entry once.

    Made by :meth:`StreamHub.follow`; :meth:`close` leaves the hub.
    """

    def __init__(self, hub: StreamHub, key: str, last: str) -> None:
        self.key = key
        self.last = last
        """The id of the last entry returned (or where the subscriber started)."""
        self.dropped = False
        self._hub = hub
        self._caught_up = False
        self._queue: asyncio.Queue[Entry] = asyncio.Queue(hub.queue_entries)

    def offer(self, entry: Entry) -> bool:
        """Queue ``entry`` without waiting; ``False`` (and dropped) when the queue is full."""
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.dropped = True
            return False
        return True

    async def next(self, wait_seconds: float) -> list[Entry]:
        """The next entries after :attr:`last`, in order; ``[]`` if none came in ``wait_seconds``.

        Raises :class:`DroppedError` once the hub has dropped this subscriber.
        """
        if self.dropped:
            raise DroppedError(self.key)
        if not self._caught_up:
            batch = await self._hub.range_after(self.key, self.last)
            self._caught_up = len(batch) < READ_COUNT
            if batch:
                return self._fresh(batch)
        deadline = time.monotonic() + wait_seconds
        while True:
            queued = await self._queued(deadline - time.monotonic())
            if not queued:
                return []
            fresh = self._fresh(queued)
            if fresh:
                return fresh

    async def _queued(self, wait_seconds: float) -> list[Entry]:
        """What is queued, waiting up to ``wait_seconds`` for the first entry."""
        entries: list[Entry] = []
        if self._queue.empty():
            try:
                async with asyncio.timeout(wait_seconds):
                    entries.append(await self._queue.get())
            except TimeoutError:
                return []
        while not self._queue.empty():
            entries.append(self._queue.get_nowait())
        return entries

    def _fresh(self, entries: list[Entry]) -> list[Entry]:
        """``entries`` newer than :attr:`last` (catch-up and the queue may overlap)."""
        fresh = [e for e in entries if stream_order(e[0]) > stream_order(self.last)]
        if fresh:
            self.last = fresh[-1][0]
        return fresh

    def close(self) -> None:
        """Leave the hub (its reader stops after its last subscriber left)."""
        self._hub.leave(self)


@dataclass(eq=False)
class _Watched:
    """A watched key: where the hub has read it to, and who waits for it."""

    position: str
    tails: set[Tail] = field(default_factory=set)


@dataclass(eq=False)
class _Group:
    """Keys one reader reads together (one hash slot on a cluster)."""

    keys: dict[str, _Watched] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None


class StreamHub:
    """Shared tailers of Redis streams: one blocking reader per group of watched keys.

    ``redis`` serves the short reads of subscribers (the requests' client); ``readers``
    (a client of its own, apart from the requests' pool) serves the blocking reads.
    """

    def __init__(
        self,
        redis: RedisClient,
        readers: RedisClient,
        *,
        block_ms: int = HUB_BLOCK_MS,
        queue_entries: int = QUEUE_ENTRIES,
        backoff_seconds: tuple[float, float] = BACKOFF_SECONDS,
    ) -> None:
        self.redis: Any = redis  # see RedisClient: redis-py's annotations don't fit
        self.readers: Any = readers
        self.block_ms = block_ms
        self.queue_entries = queue_entries
        self.backoff_seconds = backoff_seconds
        self._cluster = isinstance(readers, RedisCluster)
        self._groups: dict[int, _Group] = {}

    def _group_of(self, key: str) -> int:
        return slot_group(key, self._cluster)

    @property
    def reader_count(self) -> int:
        """Readers running: one per group of watched keys."""
        return sum(1 for g in self._groups.values() if g.task is not None and not g.task.done())

    @property
    def subscriber_count(self) -> int:
        """Subscribers registered (dropped ones no longer count)."""
        return sum(len(w.tails) for g in self._groups.values() for w in g.keys.values())

    def position(self, key: str) -> str | None:
        """The id of the last entry of ``key`` the hub read, or ``None`` if it is not watched."""
        group = self._groups.get(self._group_of(key))
        watched = group.keys.get(key) if group is not None else None
        return watched.position if watched is not None else None

    async def follow(self, key: str, start: str) -> Tail:
        """A subscriber of ``key``'s entries after ``start`` (a stream id; ``$``: new ones)."""
        newest = await self.newest(key)
        tail = Tail(self, key, newest if start == "$" else start)
        group_id = self._group_of(key)
        group = self._groups.get(group_id)
        if group is None:
            group = self._groups[group_id] = _Group()
            group.task = asyncio.create_task(
                self._read(group_id, group), name=f"stream hub group {group_id}"
            )
        group.keys.setdefault(key, _Watched(newest)).tails.add(tail)
        return tail

    def leave(self, tail: Tail) -> None:
        """Unregister ``tail``; a key without subscribers leaves its group's next read."""
        group = self._groups.get(self._group_of(tail.key))
        watched = group.keys.get(tail.key) if group is not None else None
        if group is None or watched is None:
            return
        watched.tails.discard(tail)
        if not watched.tails:
            del group.keys[tail.key]

    async def stop(self) -> None:
        """End every reader (on shutdown); subscribers left get no more entries.

        Each reader is cancelled and its group emptied: a cancellation that lands in a
        Redis call can be lost in the client library (redis-py 8.1 hands the reader its
        ``XREAD`` reply instead), and the reader then ends after that read, not never.
        """
        groups = list(self._groups.values())
        self._groups.clear()
        tasks = [g.task for g in groups if g.task is not None]
        for group in groups:
            group.keys.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def newest(self, key: str) -> str:
        """The id of ``key``'s newest entry, or ``0-0`` for an empty stream."""
        newest = await self.redis.xrevrange(key, count=1)
        return str(newest[0][0]) if newest else "0-0"

    async def range_after(self, key: str, last: str) -> list[Entry]:
        """Up to :data:`READ_COUNT` entries of ``key`` after ``last``, oldest first."""
        entries = await self.redis.xrange(key, min=f"({last}", max="+", count=READ_COUNT)
        return [(str(entry_id), dict(fields)) for entry_id, fields in entries]

    async def _read(self, group_id: int, group: _Group) -> None:
        """A group's reader: read every watched key from its position, fan out, repeat."""
        first, longest = self.backoff_seconds
        backoff = first
        while group.keys:
            streams = {key: watched.position for key, watched in group.keys.items()}
            try:
                reply = await self._xread(streams)
            except Exception as exc:  # Redis restarted, a node gone: retry, never die
                logger.warning(
                    "live-stream read of %d keys failed (%s); retrying in %.1fs",
                    len(streams),
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, longest)
                continue
            backoff = first
            for key, entries in _entries(reply):
                self._fan_out(group, key, entries)
        if self._groups.get(group_id) is group:
            del self._groups[group_id]

    async def _xread(self, streams: dict[str, str]) -> Any:
        """One blocking ``XREAD`` of ``streams`` (keys of one group) on the readers' client.

        On a cluster it is sent straight to the node owning the group's slot: redis-py
        would otherwise ask a node ``COMMAND GETKEYS`` before every read (``XREAD`` has
        movable keys), one more round trip and one more connection per group.
        """
        if not self._cluster:
            return await self.readers.xread(streams, count=READ_COUNT, block=self.block_ms)
        await self.readers.initialize()  # a no-op once the slots are known
        node = self.readers.get_node_from_key(next(iter(streams)))
        return await self.readers.execute_command(
            "XREAD",
            "COUNT",
            READ_COUNT,
            "BLOCK",
            self.block_ms,
            "STREAMS",
            *streams,
            *streams.values(),
            target_nodes=node,
        )

    def _fan_out(self, group: _Group, key: str, entries: list[Entry]) -> None:
        """Queue ``entries`` for the key's subscribers; drop those whose queue is full."""
        watched = group.keys.get(key)
        if watched is None:  # nobody waits for it any more
            return
        for entry in entries:
            if stream_order(entry[0]) <= stream_order(watched.position):
                continue  # read before the key was watched again from a newer position
            watched.position = entry[0]
            for tail in [t for t in watched.tails if not t.offer(entry)]:
                logger.info("dropped a live client of %s: it reads too slowly", key)
                watched.tails.discard(tail)
        if not watched.tails:
            del group.keys[key]
