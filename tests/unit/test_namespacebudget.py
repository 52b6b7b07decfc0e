"""The namespace budget's pure rules: calendar windows in a time zone (a fake clock: the
instants are arguments), the checks the schema cannot make, and the levels."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from agentstack_core.namespacebudget import (
    MAX_WEIGHT,
    BudgetSpec,
    BudgetSpecError,
    Level,
    Period,
    Standing,
    calendar_window,
    limits_window,
    parse_budget,
    quota_factor,
    standing,
    worst,
)
from agentstack_core.pricing import nanos

PARIS = ZoneInfo("Europe/Paris")
CRD = Path(__file__).resolve().parents[2] / "crds" / "agentstack.dev_agentbudgets.yaml"


def at(zone: ZoneInfo, *parts: int) -> float:
    return dt.datetime(*parts, tzinfo=zone).timestamp()  # type: ignore[misc]


def test_a_day_starts_at_local_midnight_and_the_spring_change_makes_it_23_hours() -> None:
    window = calendar_window(Period.DAY, PARIS, at(PARIS, 2026, 3, 29, 12))
    assert window.id == "2026-03-29"
    assert window.start == at(PARIS, 2026, 3, 29)
    assert window.end - window.start == 23 * 3600
    # One second before midnight is still the day before; midnight is the next one.
    assert calendar_window(Period.DAY, PARIS, window.start - 1).id == "2026-03-28"
    assert calendar_window(Period.DAY, PARIS, window.end).id == "2026-03-30"


def test_a_week_is_the_iso_week_from_monday() -> None:
    sunday_night = at(PARIS, 2026, 12, 13, 23, 59)
    window = calendar_window(Period.WEEK, PARIS, sunday_night)
    assert window.id == "2026-W50"
    assert dt.datetime.fromtimestamp(window.start, PARIS) == dt.datetime(2026, 12, 7, tzinfo=PARIS)
    assert calendar_window(Period.WEEK, PARIS, window.end).id == "2026-W51"


def test_a_month_rolls_over_into_the_next_year() -> None:
    window = calendar_window(Period.MONTH, ZoneInfo("UTC"), at(ZoneInfo("UTC"), 2026, 12, 31, 23))
    assert window.id == "2026-12"
    assert window.end == at(ZoneInfo("UTC"), 2027, 1, 1)
    assert calendar_window(Period.MONTH, ZoneInfo("UTC"), window.end).id == "2027-01"


def test_the_same_instant_is_in_different_days_in_different_zones() -> None:
    instant = at(ZoneInfo("UTC"), 2026, 12, 7, 23, 30)
    assert calendar_window(Period.DAY, ZoneInfo("UTC"), instant).id == "2026-12-07"
    assert calendar_window(Period.DAY, PARIS, instant).id == "2026-12-08"


@given(st.floats(min_value=0, max_value=4e9), st.sampled_from(list(Period)))
def test_every_instant_is_inside_its_window(now: float, period: Period) -> None:
    window = calendar_window(period, PARIS, now)
    assert window.start <= now < window.end


def test_fixed_windows_are_counted_from_the_epoch() -> None:
    spec = BudgetSpec(name="b", max_tokens=10, period=None, seconds=60)
    window = spec.window(125.0)
    assert (window.id, window.start, window.end) == ("s60-2", 120, 180)


@pytest.mark.parametrize(
    "raw",
    [
        {"maxCostUSD": 2, "window": {"calendar": "Day", "timeZone": "Europe/Paris"}},
        {"maxTokens": 1000, "window": {"seconds": 60}},
        {"maxCostUSD": 1},
    ],
)
def test_a_runner_names_the_window_the_operator_does(raw: dict[str, object]) -> None:
    """The runner only has the published limits; it must name the same window as the
    operator, which has the whole spec."""
    spec = parse_budget("b", raw)
    now = at(PARIS, 2026, 12, 7, 23, 30)
    assert limits_window(spec.ledger_limits(), now) == spec.window(now).id


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"window": {"calendar": "Day"}}, "spec.quota or spec.fairShare must be set"),
        ({"fairShare": {"weight": 0}}, "weight must be 1 to 1000"),
        ({"maxTokens": 5, "window": {"timeZone": "Mars/Olympus"}}, "unknown time zone"),
        ({"maxTokens": 5, "window": {"seconds": 5}}, "at least 30"),
        ({"maxTokens": 5, "thresholds": {"warnPercent": 95, "throttlePercent": 90}}, "<="),
    ],
)
def test_what_the_schema_cannot_refuse_is_named(raw: dict[str, object], problem: str) -> None:
    with pytest.raises(BudgetSpecError, match=problem):
        parse_budget("b", raw)


def test_levels_follow_the_thresholds() -> None:
    budget = parse_budget("team", {"maxCostUSD": 1.0})
    window = budget.window(0)

    def level(dollars: float) -> Level:
        return standing(budget, window, nanos(dollars), 0).level

    assert level(0.79) is Level.OK
    assert level(0.80) is Level.WARNING
    assert level(0.90) is Level.THROTTLED
    assert level(1.00) is Level.EXCEEDED
    message = standing(budget, window, nanos(0.5), 0).message
    assert "AgentBudget team" in message
    assert "$0.500000 of $1.000000" in message


def test_a_budget_with_less_left_than_a_refused_call_needed_is_exceeded() -> None:
    budget = parse_budget("team", {"maxCostUSD": 1.0})
    window = budget.window(0)
    assert standing(budget, window, nanos(0.5), 0, needed_cost=nanos(0.4)).level is Level.OK
    assert standing(budget, window, nanos(0.7), 0, needed_cost=nanos(0.4)).level is Level.EXCEEDED


def test_tokens_count_when_they_are_further_along_than_dollars() -> None:
    budget = parse_budget("team", {"maxCostUSD": 1.0, "maxTokens": 100})
    found = standing(budget, budget.window(0), nanos(0.1), 95)
    assert (found.level, found.percent) == (Level.THROTTLED, 95.0)


def test_the_namespace_follows_its_furthest_budget() -> None:
    ok = Standing(Level.OK, 10, "a")
    warned = Standing(Level.WARNING, 85, "b")
    exceeded = Standing(Level.EXCEEDED, 100, "c")
    assert worst({"a": ok, "b": warned}) == ("b", warned)
    assert worst({"c": exceeded, "b": warned, "a": ok}) == ("c", exceeded)
    assert worst({}) is None


def test_a_quota_of_ticks_stretches_every_interval_by_the_same_factor() -> None:
    budget = parse_budget("q", {"quota": {"maxTicksPerSecond": 2, "maxStacks": 5}})
    assert (budget.caps, budget.max_stacks) == (False, 5)
    assert quota_factor(budget, [0.5, 0.5, 1.0]) == 1.0
    assert quota_factor(budget, [1.0] * 5) == 2.5
    assert quota_factor(parse_budget("c", {"maxTokens": 1}), [100.0]) == 1.0


def test_a_weight_alone_is_a_budget_that_caps_nothing() -> None:
    budget = parse_budget("share", {"fairShare": {"weight": 5}})
    assert (budget.weight, budget.caps) == (5, False)
    assert parse_budget("cap", {"maxTokens": 5}).weight is None


def test_the_schema_and_the_parser_agree_on_the_largest_weight() -> None:
    crd = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["fairShare"]["properties"]["weight"]["maximum"] == MAX_WEIGHT


def test_a_quota_of_concurrent_ticks_is_read() -> None:
    budget = parse_budget("q", {"quota": {"maxConcurrentTicks": 4}})
    assert (budget.max_concurrent_ticks, budget.caps) == (4, False)
