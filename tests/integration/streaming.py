"""Helpers of the live-stream tests on real Redis: a client that shows where the hub read
from, entries added in one round trip, and a subscriber's next ids, waited for.

The hub's rules are about *where* it reads each key from; Redis tells what a client
sent only to ``MONITOR``, and nothing about reads it refused while it was down. So the
tests read through :class:`WatchedRedis`, a redis-py client that notes the ``streams``
argument of each ``XREAD`` before sending it — Redis answers every one of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from agentstack_api.tailing import Tail

WAIT = 20.0
"""Seconds any wait of these tests may take before it fails (it ends on a condition)."""


class WatchedRedis(Redis):
    """A real redis-py client that keeps what it was asked to read.

    - :attr:`reads`: the ``streams`` argument of every ``XREAD``, in call order, those
      that failed included;
    - :attr:`failed_reads`: how many of them raised (Redis down, connection killed);
    - :meth:`hold_replies`: ``XREAD`` replies wait in the client until the test lets
      them go, as on a slow network — the reply itself is Redis's;
    - :attr:`lose_cancellations`: while true, a cancellation that lands in a read is
      lost and the read answers nothing, as redis-py 8.1 loses some (it then hands the
      cancelled task the reply); :attr:`lost_cancellations` counts both kinds.

    Built by :meth:`watching`: decoded responses, and no retries inside redis-py, so each
    failed read reaches the hub (whose own retries are under test) as one failure.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.reads: list[dict[str, str]] = []
        self.failed_reads = 0
        self.lose_cancellations = False
        self.lost_cancellations = 0
        self._released: asyncio.Event | None = None

    @classmethod
    def watching(cls, url: str) -> WatchedRedis:
        client: WatchedRedis = cls.from_url(url, decode_responses=True, retry=Retry(NoBackoff(), 0))
        return client

    async def xread(
        self,
        streams: Mapping[str, str],
        count: int | None = None,
        block: int | None = None,
        **options: Any,
    ) -> Any:
        self.reads.append({str(key): str(position) for key, position in streams.items()})
        task = asyncio.current_task()
        cancelling = task.cancelling() if task is not None else 0
        try:
            reply = await super().xread(dict(streams), count=count, block=block, **options)
        except RedisError:
            self.failed_reads += 1
            raise
        except asyncio.CancelledError:
            if not self.lose_cancellations or task is None:
                raise
            task.uncancel()
            self.lost_cancellations += 1
            return []
        if task is not None and task.cancelling() > cancelling:  # lost in redis-py
            self.lost_cancellations += 1
        if self._released is not None:
            await self._released.wait()
        return reply

    def hold_replies(self) -> asyncio.Event:
        """From now on ``XREAD`` replies (that in flight included) are handed over only
        once the returned event is set."""
        self._released = asyncio.Event()
        return self._released


async def add_entries(client: Any, key: str, count: int, *, atomic: bool = False) -> list[str]:
    """``count`` entries ``{"n": i}`` added to ``key`` in one round trip; their ids.

    With ``atomic`` they are added in one ``MULTI``/``EXEC``, so a reader blocked on
    ``key`` is answered once, after the last of them (with up to its ``COUNT``).
    """
    pipe = client.pipeline(transaction=atomic)
    for i in range(count):
        pipe.xadd(key, {"n": str(i)})
    return [str(entry_id) for entry_id in await pipe.execute()]


async def collect(tail: Tail, count: int, timeout: float = WAIT) -> list[str]:
    """The ids of the next ``count`` entries ``tail`` returns; fail after ``timeout``."""
    ids: list[str] = []
    async with asyncio.timeout(timeout):
        while len(ids) < count:
            ids.extend(entry_id for entry_id, _ in await tail.next(timeout))
    return ids
