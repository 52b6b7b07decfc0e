"""Calendar schedules: when a cron expression fires, in a time zone.

A stack with ``spec.schedule`` ticks when its cron expression fires in its time zone
(IANA name, UTC by default) instead of on a fixed interval. Expressions are evaluated
by `cronsim <https://github.com/cuu508/cronsim>`_, chosen because it is written to
match Debian's cron exactly — including its rules for daylight-saving changes — works
with :mod:`zoneinfo`, is typed, and has no dependencies. Debian's rules, which people
expect of a schedule "at 02:30":

- on the spring-forward day a fire at a fixed time the clocks skip (02:30 in Berlin)
  runs once, at the first instant after the gap (03:00) — not never;
- on the fall-back day a fire at a fixed time the clocks pass twice runs once, the
  first time — not twice;
- expressions that fire every hour or more often follow real time (the repeated hour
  fires in both of its passes, the skipped hour not at all).

Five fields (minute hour day-of-month month day-of-week) or six, seconds first
(``*/15 * * * * *``). cronsim applies Debian's daylight-saving rules only to
five-field expressions, so a six-field one is evaluated here as its five-field minutes
(with those rules) and, within each minute that fires, its seconds: ``0 30 2 * * *``
behaves on a daylight-saving day exactly as ``30 2 * * *`` does.

Pure: no clock, no I/O. Times are POSIX seconds (UTC) in and out.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

FIELDS = (5, 6)


class CronError(ValueError):
    """A cron expression or time zone that cannot be evaluated (the message says why)."""


def zone_of(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (:class:`CronError` if there is none)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {name!r} (an IANA name, e.g. Europe/Berlin)") from exc


class CronExpression:
    """A cron expression in a time zone: its fires before and after any instant."""

    def __init__(self, expression: str, time_zone: str = "UTC") -> None:
        fields = expression.split()
        if len(fields) not in FIELDS:
            raise CronError(
                f"{expression!r} has {len(fields)} fields: five (minute hour day-of-month "
                "month day-of-week) or six, seconds first"
            )
        self.expression = expression
        self.zone = zone_of(time_zone)
        self._five = " ".join(fields[-5:])
        six = expression if len(fields) == 6 else f"0 {expression}"
        try:
            parsed = CronSim(six, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise CronError(f"{expression!r}: {exc}") from exc
        self._seconds = sorted(parsed.seconds)

    def describe(self) -> str:
        """The expression in words ("At 09:00 on Monday through Friday")."""
        return str(CronSim(self._five, datetime.now(UTC)).explain())

    def next_after(self, instant: float) -> float | None:
        """The first fire strictly after ``instant`` (``None``: none in the next fifty
        years, e.g. ``0 0 30 2 *``)."""
        for minute in self._minutes_from(_minute_start(instant) - 1, reverse=False):
            for second in self._seconds:
                if minute + second > instant:
                    return minute + second
        return None

    def last_at_or_before(self, instant: float) -> float | None:
        """The latest fire at or before ``instant`` (``None``: none in the past fifty
        years)."""
        for minute in self._minutes_from(_minute_start(instant) + 60, reverse=True):
            for second in reversed(self._seconds):
                if minute + second <= instant:
                    return minute + second
        return None

    def _minutes_from(self, start: float, *, reverse: bool) -> Iterator[float]:
        """The minutes the five fields fire, from ``start`` on (or back), as POSIX
        seconds. The start is local time made from a UTC instant, so no wall-clock
        arithmetic meets a daylight-saving gap."""
        sim = CronSim(self._five, datetime.fromtimestamp(start, self.zone), reverse=reverse)
        for minute in sim:
            yield minute.timestamp()


def _minute_start(instant: float) -> float:
    """The start of the minute ``instant`` falls in (every zone's offset is whole
    minutes)."""
    return float(math.floor(instant / 60) * 60)
