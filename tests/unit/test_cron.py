"""Calendar schedules: fires in a time zone, across real daylight-saving changes.

The transition dates are the zones' real ones (from the system's tz database through
``zoneinfo``), checked here before they are relied on, so a test cannot pass against a
day that had no transition.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentstack_core.cron import CronError, CronExpression

SPRING = [
    # zone, the day clocks go forward, a local time that day that does not exist
    ("Europe/Berlin", date(2026, 3, 29), "30 2 * * *", (3, 0)),
    ("America/New_York", date(2026, 3, 8), "30 2 * * *", (3, 0)),
    ("Australia/Sydney", date(2026, 10, 4), "30 2 * * *", (3, 0)),
    ("Australia/Lord_Howe", date(2026, 10, 4), "15 2 * * *", (2, 30)),  # a 30-minute shift
]
FALL = [
    # zone, the day clocks go back, a local time that day that happens twice
    ("Europe/Berlin", date(2026, 10, 25), "30 2 * * *"),
    ("America/New_York", date(2026, 11, 1), "30 1 * * *"),
    ("Australia/Sydney", date(2026, 4, 5), "30 2 * * *"),
]


def _fires_on(expression: CronExpression, zone: str, day: date) -> list[datetime]:
    """The fires whose local date is ``day``."""
    tz = ZoneInfo(zone)
    start = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() - 1
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz).timestamp()
    fires, at = [], expression.next_after(start)
    while at is not None and at < end:
        fires.append(datetime.fromtimestamp(at, tz))
        at = expression.next_after(at)
    return fires


def _real_seconds(zone: str, day: date) -> float:
    tz = ZoneInfo(zone)
    start = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz).timestamp()
    return end - start


@pytest.mark.parametrize(("zone", "day", "expression", "at"), SPRING)
@pytest.mark.parametrize("seconds", [False, True], ids=["five-fields", "six-fields"])
def test_a_fixed_time_the_clocks_skip_fires_once_just_after_the_gap(
    zone: str, day: date, expression: str, at: tuple[int, int], seconds: bool
) -> None:
    assert _real_seconds(zone, day) < 86_400, f"{day} is not a spring-forward day in {zone}"
    cron = CronExpression(f"0 {expression}" if seconds else expression, zone)
    fires = _fires_on(cron, zone, day)
    assert [(f.hour, f.minute) for f in fires] == [at]
    # The days around it fire at the written time.
    for other in (day - timedelta(days=1), day + timedelta(days=1)):
        minute, hour = (int(part) for part in expression.split()[:2])
        assert [(f.hour, f.minute) for f in _fires_on(cron, zone, other)] == [(hour, minute)]


@pytest.mark.parametrize(("zone", "day", "expression"), FALL)
@pytest.mark.parametrize("seconds", [False, True], ids=["five-fields", "six-fields"])
def test_a_fixed_time_the_clocks_pass_twice_fires_once(
    zone: str, day: date, expression: str, seconds: bool
) -> None:
    assert _real_seconds(zone, day) > 86_400, f"{day} is not a fall-back day in {zone}"
    cron = CronExpression(f"0 {expression}" if seconds else expression, zone)
    fires = _fires_on(cron, zone, day)
    minute, hour = (int(part) for part in expression.split()[:2])
    assert [(f.hour, f.minute, f.fold) for f in fires] == [(hour, minute, 0)]


@pytest.mark.parametrize(("zone", "day"), [("Europe/Berlin", date(2026, 3, 29))])
def test_hourly_fires_follow_real_time_through_a_spring_forward(zone: str, day: date) -> None:
    fires = _fires_on(CronExpression("0 * * * *", zone), zone, day)
    assert len(fires) == 23
    gaps = {b.timestamp() - a.timestamp() for a, b in itertools.pairwise(fires)}
    assert gaps == {3600.0}


def test_hourly_fires_run_in_both_passes_of_the_repeated_hour() -> None:
    fires = _fires_on(
        CronExpression("0 * * * *", "Europe/Berlin"), "Europe/Berlin", date(2026, 10, 25)
    )
    assert len(fires) == 25
    assert [(f.hour, f.fold) for f in fires if f.hour == 2] == [(2, 0), (2, 1)]


def test_seconds_come_first_in_six_fields() -> None:
    cron = CronExpression("*/15 * * * * *")
    start = datetime(2026, 1, 1, 12, 0, 7).timestamp()
    fires = []
    at = cron.next_after(start)
    for _ in range(5):
        assert at is not None
        fires.append(datetime.fromtimestamp(at).second)
        at = cron.next_after(at)
    assert fires == [15, 30, 45, 0, 15]


def test_a_half_hour_zone_without_daylight_saving() -> None:
    cron = CronExpression("0 9 * * MON-FRI", "Asia/Kolkata")
    saturday = datetime(2026, 12, 5, 12, tzinfo=ZoneInfo("Asia/Kolkata")).timestamp()
    at = cron.next_after(saturday)
    assert at is not None
    monday = datetime.fromtimestamp(at, ZoneInfo("UTC"))
    assert monday.isoformat() == "2026-12-07T03:30:00+00:00"
    assert (
        cron.last_at_or_before(saturday)
        == datetime(2026, 12, 4, 9, tzinfo=ZoneInfo("Asia/Kolkata")).timestamp()
    )


@pytest.mark.parametrize(
    ("expression", "zone", "says"),
    [
        ("* * * *", "UTC", "has 4 fields"),
        ("61 * * * *", "UTC", "Bad minute"),
        ("0 9 * * FUNDAY", "UTC", "Bad day-of-week"),
        ("0 0 31 2 *", "UTC", "Bad day-of-month"),
        ("0 9 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("0 9 * * *", "../../etc/passwd", "unknown time zone"),
    ],
)
def test_bad_expressions_and_zones_say_what_is_wrong(expression: str, zone: str, says: str) -> None:
    with pytest.raises(CronError, match=says.replace("(", r"\(")):
        CronExpression(expression, zone)


ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
EXPRESSIONS = ["30 2 * * *", "0 30 2 * * *", "*/7 * * * *", "0 9 * * MON-FRI", "15,45 */3 * * *"]
INSTANTS = st.floats(min_value=1.7e9, max_value=1.9e9, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(EXPRESSIONS), st.sampled_from(ZONES), INSTANTS)
def test_next_and_last_fires_agree(expression: str, zone: str, instant: float) -> None:
    """The fire after an instant is the first one: the latest at or before it is
    itself, and the latest before it is at or before the instant."""
    cron = CronExpression(expression, zone)
    fire = cron.next_after(instant)
    assert fire is not None
    assert fire > instant
    assert cron.last_at_or_before(fire) == fire
    before = cron.last_at_or_before(fire - 0.001)
    assert before is not None
    assert before <= instant
    assert cron.next_after(before) == fire
