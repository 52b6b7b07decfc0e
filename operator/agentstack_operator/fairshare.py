"""Fair share of the runners across namespaces: deficit round robin over held ticks.

When the runners keep up, the dispatcher sends every due tick at once and this queue
stays empty. When they do not, sending everything would line the ticks up in the
lanes first come, first served: a namespace with 5,000 busy stacks would put its ticks
ahead of a quiet namespace's few, and the quiet one's ticks would start as late as the
noisy one's (or expire in the lanes). So the dispatcher keeps the lanes short (a few
hundred requests no runner has received yet) and holds what does not fit here, one
queue per namespace, released by **deficit round robin** (M. Shreedhar and G.
Varghese, "Efficient fair queuing using deficit round robin", SIGCOMM 1995):

- the namespaces with held ticks take turns, in the order they began waiting;
- on its turn a namespace is credited its weight (the ``AgentBudget``'s
  ``spec.fairShare.weight``, 1 without one) and sends one tick per unit of credit it
  has; credit left over when its queue empties is forfeited (an idle namespace does
  not bank a share it did not use), credit left when the room ran out stays for its
  next turn;
- so while every namespace has ticks waiting, each sends in proportion to its weight,
  and a namespace that asks for less than its share gets all it asks for at once.

Within a namespace, higher priority goes first, then first in, first out. A held tick
whose deadline passes is dropped here (as the runner would drop it, late) and counted.

Pure: no clock, no I/O; the dispatcher passes the time and the room.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_WEIGHT = 1
"""A namespace's weight when no budget gives it one."""


@dataclass(frozen=True)
class Held(Generic[T]):
    """One held item, with what the queue orders and expires it by."""

    item: T
    namespace: str
    rank: int
    """Its priority: 0 first."""
    deadline: float
    """When it expires (unix seconds)."""


class FairQueue(Generic[T]):
    """Items held per namespace, released by deficit round robin (see the module)."""

    def __init__(self, weight: Callable[[str], int], ranks: int = 3) -> None:
        """``weight(namespace)``: its share (read on each of its turns, so a changed
        budget takes effect at once); ``ranks``: how many priorities there are."""
        self.weight = weight
        self.ranks = ranks
        self._queues: dict[str, list[deque[Held[T]]]] = {}
        self._deficit: dict[str, int] = {}
        self._turns: deque[str] = deque()
        """Namespaces with items, in the order of their turns (the head's turn is on)."""
        self._credited = False
        """Whether the head of :attr:`_turns` was credited for its current turn."""
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def waiting(self, namespace: str) -> int:
        return sum(len(queue) for queue in self._queues.get(namespace, ()))

    def push(self, held: Held[T]) -> None:
        queues = self._queues.get(held.namespace)
        if queues is None:
            queues = self._queues[held.namespace] = [deque() for _ in range(self.ranks)]
            self._deficit[held.namespace] = 0
            self._turns.append(held.namespace)
        queues[min(max(held.rank, 0), self.ranks - 1)].append(held)
        self._size += 1

    def take(
        self,
        room: int,
        now: float,
        allowance: Callable[[str], int | None] = lambda _namespace: None,
    ) -> tuple[list[Held[T]], list[Held[T]]]:
        """Up to ``room`` items in fair order, and the items found expired at ``now``
        on the way (removed, not counted against the room or any credit).

        ``allowance(namespace)``: how many more of the namespace's items may go out now
        (its quota of concurrent ticks, less those running; ``None``: no limit). A
        namespace that may send none passes its turn without credit, so it does not
        bank a share while it waits for its own ticks to end."""
        taken: list[Held[T]] = []
        expired: list[Held[T]] = []
        left: dict[str, int | None] = {}
        passed = 0  # turns passed in a row: once every namespace passed, none can send
        while len(taken) < room and self._turns and passed < len(self._turns):
            namespace = self._turns[0]
            if namespace not in left:
                left[namespace] = allowance(namespace)
            if left[namespace] == 0:
                self._deficit[namespace] = 0
                self._turns.rotate(-1)
                self._credited = False
                passed += 1
                continue
            passed = 0
            if not self._credited:
                self._deficit[namespace] += max(1, self.weight(namespace))
                self._credited = True
            queues = self._queues[namespace]
            while self._deficit[namespace] > 0 and len(taken) < room and left[namespace] != 0:
                held = self._pop(queues)
                if held is None:
                    break
                if held.deadline <= now:
                    expired.append(held)
                    continue
                taken.append(held)
                self._deficit[namespace] -= 1
                if left[namespace] is not None:
                    left[namespace] = (left[namespace] or 0) - 1
            if not any(queues):
                self._retire(namespace)
            elif self._deficit[namespace] <= 0 or left[namespace] == 0:
                if left[namespace] == 0:
                    self._deficit[namespace] = 0  # held back by its quota: nothing banked
                self._turns.rotate(-1)
                self._credited = False
            # else: the room ran out mid-turn; the turn goes on next time
        return taken, expired

    def expire(self, now: float) -> list[Held[T]]:
        """Remove and return every item whose deadline has passed (a sweep, for queues
        that wait long between turns)."""
        expired: list[Held[T]] = []
        for namespace in list(self._turns):
            queues = self._queues[namespace]
            for rank, queue in enumerate(queues):
                live = deque(h for h in queue if h.deadline > now)
                expired.extend(h for h in queue if h.deadline <= now)
                queues[rank] = live
            if not any(queues):
                self._retire(namespace)
        self._size -= len(expired)
        return expired

    def clear(self) -> list[Held[T]]:
        """Empty the queue (leadership lost); returns what it held."""
        items = [h for queues in self._queues.values() for queue in queues for h in queue]
        self._queues.clear()
        self._deficit.clear()
        self._turns.clear()
        self._credited = False
        self._size = 0
        return items

    def _pop(self, queues: list[deque[Held[T]]]) -> Held[T] | None:
        for queue in queues:
            if queue:
                self._size -= 1
                return queue.popleft()
        return None

    def _retire(self, namespace: str) -> None:
        """The namespace has nothing left: out of the turns, its credit forfeited."""
        if self._turns and self._turns[0] == namespace:
            self._credited = False
        self._turns.remove(namespace)
        del self._queues[namespace]
        del self._deficit[namespace]


ROOM_AHEAD_SECONDS = 0.03
"""How much work the lanes hold while the runners are behind: about what they receive in
this long. Enough that a runner freeing a slot finds a request waiting (while ticks are
held, batches go out every :data:`~.dispatching.RELEASE_GAP_SECONDS`), little enough
that a quiet namespace's tick, released on its turn, starts this soon after."""
MIN_ROOM = 4
"""The lanes may always hold this many (a fleet starting up, runners just back)."""


class Room:
    """How many more requests the lanes may take now.

    The room follows the runners' pace: the requests they received since the last look
    (what was waiting then, plus what was sent since, minus what waits now) over the
    time since, times :data:`ROOM_AHEAD_SECONDS`, at least :data:`MIN_ROOM` and at most
    ``most``. Runners that keep up take everything at once, so the room grows by
    :data:`ROOM_AHEAD_SECONDS` ÷ the time between batches each batch until it fits the
    fleet's pace; runners that are behind take what they can,
    and the rest waits in the :class:`FairQueue`, not in the lanes.
    """

    def __init__(self, most: int, least: int = MIN_ROOM) -> None:
        self.most = most
        self.least = min(least, most)
        self.target = self.least
        self._waiting = 0
        self._sent = 0
        self._at: float | None = None

    def free(self, waiting: int, now: float) -> int:
        """The room at monotonic time ``now``, with ``waiting`` requests not yet received."""
        if self._at is not None and now > self._at:
            received = max(0, self._waiting + self._sent - waiting)
            pace = received / (now - self._at)
            self.target = min(self.most, max(self.least, round(pace * ROOM_AHEAD_SECONDS)))
        self._waiting, self._sent, self._at = waiting, 0, now
        return max(0, self.target - waiting)

    def sent(self, count: int) -> None:
        self._sent += count


RUNNING_GRACE_SECONDS = 60.0
"""How long past its latest possible end a tick still counts as running when its result
never came (a runner lost with it): the quota is then freed."""


class Running:
    """Ticks released to the lanes whose result has not come yet, per namespace: what a
    quota of concurrent ticks (``AgentBudget`` ``spec.quota.maxConcurrentTicks``)
    counts. Only ticks of namespaces with such a quota are tracked."""

    def __init__(self) -> None:
        self._ticks: dict[str, dict[str, float]] = {}

    def started(self, namespace: str, tick: str, until: float) -> None:
        """``tick`` went out; it counts until its result comes, or until ``until``."""
        self._ticks.setdefault(namespace, {})[tick] = until

    def ended(self, namespace: str, tick: str) -> None:
        ticks = self._ticks.get(namespace)
        if ticks is not None:
            ticks.pop(tick, None)
            if not ticks:
                del self._ticks[namespace]

    def count(self, namespace: str, now: float) -> int:
        ticks = self._ticks.get(namespace)
        if not ticks:
            return 0
        for tick in [t for t, until in ticks.items() if until <= now]:
            del ticks[tick]
        return len(ticks)

    def clear(self) -> None:
        self._ticks.clear()
