"""The tick protocol between the operator (producer) and runners (consumers).

Data flow::

    operator ──XADD──► {agentstack}:ticks:<lane>  (High, Normal, Low, Sleep; capped)
                              │  consumer group "runners", at-least-once
                              ▼
    runner ── XREADGROUP (lanes in priority order) / XAUTOCLAIM (abandoned) ──► execute
                              │
    runner ──XADD──► {agentstack}:results ──XREADGROUP "operator"──► status

A request names the stack, the spec generation it was scheduled under, a tick id that
is deterministic per stack and slot (:func:`tick_id`), and a deadline. Delivery is at
least once: a runner that dies leaves its entries pending, and another runner claims
them after :data:`DEFAULT_VISIBILITY_TIMEOUT` (a live runner keeps its running ticks'
entries fresh with :func:`keep_alive`). Exactly-once *effects* come from the stack
side (``agentstack_core.redis.tick``): a per-stack lease, and a record of finished tick ids
with their outcomes, so a duplicate runs nothing and republishes the recorded result.

Everything here is plain data plus thin async functions over a ``redis.asyncio``
client (standalone or cluster); the operator imports this module, never the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError, ResponseError

from agentstack_core.keys import FleetKeys
from agentstack_core.messages import TickKind as TickKind
from agentstack_core.messages import TickRequest as TickRequest
from agentstack_core.messages import TickResult as TickResult
from agentstack_core.messages import Wakeup as Wakeup
from agentstack_core.messages import kind_of as kind_of
from agentstack_core.messages import sleep_tick_id as sleep_tick_id
from agentstack_core.messages import slot_of as slot_of
from agentstack_core.messages import tick_id as tick_id
from agentstack_core.reasons import Outcome as Outcome
from agentstack_core.redis.durability import confirmed
from agentstack_core.spec import Priority

RedisClient = Redis | RedisCluster
"""Either client (standalone or cluster), created with ``decode_responses=True``.

Every command of this package touches keys of one hash slot, so both work alike.
redis-py's annotations do not model ``decode_responses`` (they promise ``bytes | str``
and awaitables or values alike), so modules that read a lot hold the client as ``Any``
and type what they return themselves.
"""


RUNNERS_GROUP = "runners"
OPERATOR_GROUP = "operator"
SLEEP_LANE = "Sleep"
"""The lane of consolidation ticks, after every priority's: a runner takes one only
when no stack's work waits."""
LANES: tuple[str, ...] = (Priority.HIGH, Priority.NORMAL, Priority.LOW, SLEEP_LANE)
"""Lane names, the order runners read them in."""
WORK_LANES: tuple[str, ...] = tuple(lane for lane in LANES if lane != SLEEP_LANE)
"""The lanes of stacks' work (a consolidation waits in its own lane until they are
empty, so it does not count against the room for work)."""


def lane_of(request: TickRequest) -> str:
    """The lane a request goes to: its stack's priority, or the sleep lane."""
    return SLEEP_LANE if request.kind is TickKind.SLEEP else request.priority.value


LANE_MAXLEN = 100_000
"""Approximate cap of each lane: a fleet far behind drops the oldest requests."""
RESULTS_MAXLEN = 100_000
WAKEUPS_MAXLEN = 10_000
WAKEUP_REPLAY_SECONDS = 10.0
"""A new leader reads the wake-ups of this many seconds before it took over, so an
input sent during a failover still gets its prompt tick."""
DEFAULT_VISIBILITY_TIMEOUT = 60.0
"""Seconds a delivered tick may stay unacknowledged before another runner claims it."""


@dataclass(frozen=True)
class Delivery:
    """A request as delivered to one runner: the stream entry it must acknowledge."""

    lane: str
    entry_id: str
    request: TickRequest | None
    """``None`` when the entry could not be decoded (it is acknowledged and reported)."""
    raw: dict[str, str]


async def ensure_groups(client: RedisClient) -> None:
    """Create the consumer groups (idempotent): runners on each lane, operator on results."""
    pairs = [(FleetKeys.lane(lane), RUNNERS_GROUP) for lane in LANES]
    pairs.append((FleetKeys.results, OPERATOR_GROUP))
    for stream, group in pairs:
        try:
            await client.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


STARTUP_RETRY_MAX_SECONDS = 10.0
"""Longest pause between attempts to reach Redis at start-up."""


async def wait_for_groups(
    client: RedisClient, *, stopping: Callable[[], bool], log: logging.Logger
) -> bool:
    """:func:`ensure_groups`, retried until Redis answers (or ``stopping()``).

    A process usually starts with its Redis (the chart's in-chart Redis, a Redis being
    restarted): waiting, unready but alive, beats crashing into the kubelet's back-off,
    which would keep a pod down long after Redis is up. Returns ``False`` if it stopped
    before Redis answered. An authentication or configuration error is retried too —
    the Secret may still be on its way — and logged each time, without the URL.
    """
    delay = 0.5
    while not stopping():
        try:
            await ensure_groups(client)
        except (RedisError, OSError) as exc:
            log.warning(
                "waiting for Redis (%s: %s); next attempt in %.1fs",
                type(exc).__name__,
                exc,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, STARTUP_RETRY_MAX_SECONDS)
        else:
            return True
    return False


async def dispatch(client: RedisClient, requests: Iterable[TickRequest]) -> list[str]:
    """Enqueue requests in one pipelined round trip; returns the stream entry ids.

    Confirmed by replicas when the client asks for it (:mod:`.redis.durability`): the
    scheduler moves on once they are sent, so a dispatch a failover lost would be a slot
    never run nor recorded (:class:`~.redis.errors.NotDurableError`: sent again, under
    the same tick ids)."""
    batch = list(requests)
    if not batch:
        return []

    def queue(pipe: Any) -> None:
        for request in batch:
            pipe.xadd(
                FleetKeys.lane(lane_of(request)),
                request.to_fields(),
                maxlen=LANE_MAXLEN,
                approximate=True,
            )

    return [str(entry) for entry in await confirmed(client, "dispatch", queue)]


def _decode(lane: str, entry_id: str, fields: dict[str, str]) -> Delivery:
    try:
        request: TickRequest | None = TickRequest.from_fields(fields)
    except (KeyError, ValueError):
        request = None
    return Delivery(lane, entry_id, request, fields)


async def read(
    client: RedisClient, consumer: str, count: int, block_ms: int | None
) -> list[Delivery]:
    """Deliver up to ``count`` new requests, higher lanes first.

    Lanes are polled without blocking in priority order; only when all are empty does
    the call block (up to ``block_ms``) on every lane at once.
    """
    deliveries: list[Delivery] = []
    for lane in LANES:
        if len(deliveries) >= count:
            break
        stream = FleetKeys.lane(lane)
        reply = await client.xreadgroup(
            RUNNERS_GROUP, consumer, {stream: ">"}, count=count - len(deliveries)
        )
        deliveries.extend(_flatten(reply))
    if deliveries or not block_ms:
        return deliveries
    streams: dict[Any, Any] = {FleetKeys.lane(lane): ">" for lane in LANES}
    reply = await client.xreadgroup(RUNNERS_GROUP, consumer, streams, count=count, block=block_ms)
    return sorted(_flatten(reply), key=lambda d: LANES.index(d.lane.rsplit(":", 1)[1]))


def _flatten(reply: Any) -> list[Delivery]:
    deliveries = []
    for stream, entries in reply or []:
        for entry_id, fields in entries:
            deliveries.append(_decode(str(stream), str(entry_id), fields))
    return deliveries


async def claim_abandoned(
    client: RedisClient,
    consumer: str,
    *,
    min_idle_seconds: float = DEFAULT_VISIBILITY_TIMEOUT,
    count: int = 100,
) -> list[Delivery]:
    """Take over requests another runner received but did not acknowledge in time."""
    claimed: list[Delivery] = []
    for lane in LANES:
        stream = FleetKeys.lane(lane)
        _next, entries, *_deleted = await client.xautoclaim(
            stream, RUNNERS_GROUP, consumer, int(min_idle_seconds * 1000), "0-0", count=count
        )
        for entry_id, fields in entries:
            if fields:  # trimmed entries come back empty: nothing to run
                claimed.append(_decode(stream, str(entry_id), fields))
            else:
                await client.xack(stream, RUNNERS_GROUP, entry_id)
    return claimed


async def acknowledge(client: RedisClient, delivery: Delivery) -> None:
    await client.xack(delivery.lane, RUNNERS_GROUP, delivery.entry_id)


async def keep_alive(client: RedisClient, consumer: str, delivery: Delivery) -> None:
    """Reset the delivery's idle time: a tick still running is not abandoned.

    A runner calls this whenever it renews the stack's lease, so a tick that runs
    longer than the visibility timeout is never claimed by another runner while its
    owner is alive (``XCLAIM … JUSTID`` to itself: no delivery count, no payload).
    """
    await client.xclaim(delivery.lane, RUNNERS_GROUP, consumer, 0, [delivery.entry_id], justid=True)


async def release(client: RedisClient, consumer: str, delivery: Delivery) -> None:
    """Hand an unfinished delivery back: make it claimable by another runner now."""
    await client.xclaim(
        delivery.lane,
        RUNNERS_GROUP,
        consumer,
        0,
        [delivery.entry_id],
        idle=int(DEFAULT_VISIBILITY_TIMEOUT * 1000) * 10,
    )


async def publish_results(client: RedisClient, results: Sequence[TickResult]) -> None:
    if not results:
        return
    pipe = client.pipeline(transaction=False)
    for result in results:
        pipe.xadd(
            FleetKeys.results,
            result.to_fields(),  # type: ignore[arg-type]
            maxlen=RESULTS_MAXLEN,
            approximate=True,
        )
    await pipe.execute()


async def pending_count(client: RedisClient, lanes: Sequence[str] = LANES) -> int:
    """Requests waiting in ``lanes`` (every lane by default) that no runner has received
    yet (queue depth), in one pipelined round trip."""
    pipe = client.pipeline(transaction=False)
    for lane in lanes:
        pipe.xinfo_groups(FleetKeys.lane(lane))
    total = 0
    for groups in await pipe.execute():
        for group in groups:
            if group["name"] == RUNNERS_GROUP:
                total += int(group.get("lag") or 0)
    return total


async def wake(client: RedisClient, wakeup: Wakeup) -> None:
    """Ask the leading operator for a tick of ``wakeup.stack`` at once."""
    await client.xadd(
        FleetKeys.wakeups,
        wakeup.to_fields(),  # type: ignore[arg-type]
        maxlen=WAKEUPS_MAXLEN,
        approximate=True,
    )


async def read_wakeups(
    client: RedisClient, after: str, *, count: int, block_ms: int
) -> tuple[str, list[Wakeup]]:
    """Wake-ups after the stream id ``after`` (blocking up to ``block_ms`` for one);
    returns the id to read after next time, and the wake-ups (malformed ones skipped).

    Plain ``XREAD``, no consumer group: a wake-up is a hint that only the current
    leader acts on, and a new leader starts :data:`WAKEUP_REPLAY_SECONDS` back.
    """
    redis: Any = client  # see RedisClient: redis-py's annotations don't fit
    reply = await redis.xread({FleetKeys.wakeups: after}, count=count, block=block_ms)
    wakeups: list[Wakeup] = []
    last = after
    for _stream, entries in reply or []:
        for entry_id, fields in entries:
            last = str(entry_id)
            try:
                wakeups.append(Wakeup.from_fields(fields))
            except (KeyError, ValueError):
                continue
    return last, wakeups
