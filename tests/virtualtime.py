"""An event loop on a virtual clock, for tests of code whose rules are about time.

Leases, deadlines and retry periods are tested on this clock, not the machine's: it
stands still while anything is ready to run, and jumps to the next timer the moment
nothing is. Ten renewal periods pass in no time, and a loaded machine (a late turn of
the loop) cannot make a deadline pass that the code under test kept — nor hide one it
missed.

It suits code that waits on the loop alone (its timers, futures, events, tasks). A
socket or a thread still answers in real time: a turn with a timer pending first polls
them without waiting, and only if none is ready does the clock jump.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0


class _JumpingSelector(selectors.BaseSelector):
    """The platform's selector, except that a wait with a timeout moves the clock on
    by that timeout instead of sleeping (when no file is ready)."""

    def __init__(self, clock: _Clock) -> None:
        self._clock = clock
        self._real = selectors.DefaultSelector()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only a file (a thread's wake-up) can help
            return self._real.select(None)
        self._clock.now += timeout
        return []

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose :meth:`time` is virtual; :meth:`freeze` moves it on
    without running anything (the whole process stopped, then woke up)."""

    def __init__(self) -> None:
        self._clock = _Clock()
        super().__init__(_JumpingSelector(self._clock))

    def time(self) -> float:
        return self._clock.now

    def freeze(self, seconds: float) -> None:
        self._clock.now += seconds


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualTimeLoop`."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)


def loop_time() -> float:
    """The running loop's clock: on a :class:`VirtualTimeLoop`, virtual seconds."""
    return asyncio.get_running_loop().time()


def virtual_loop() -> VirtualTimeLoop:
    """The running :class:`VirtualTimeLoop` (a test that is not on one fails here)."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop), loop
    return loop
