"""Two stacks' ticks compared: means, differences and bootstrap intervals."""

from __future__ import annotations

from typing import Any

from agentstack_core.comparing import bootstrap, compare


def ticks(score: float, tokens: int, count: int = 40, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "kind": "Work",
            "outcome": "Succeeded",
            "tokens": tokens + (n % 5),
            "costUSD": None,
            "durationMs": 1000,
            "scores": {"report": score if n % 4 else score - 0.2},
            **extra,
        }
        for n in range(count)
    ]


def test_a_real_difference_is_called_and_no_difference_is_not() -> None:
    rows = {row.measure: row for row in compare(ticks(0.5, 100), ticks(0.9, 100))}
    report = rows["eval report"]
    assert round(report.difference, 6) == 0.4
    assert report.low > 0
    assert report.verdict == "B higher"
    same = rows["tokens/tick"]
    assert same.low <= 0 <= same.high
    assert same.verdict == "no clear difference"
    assert "USD/tick" not in rows  # unpriced on both sides: nothing to compare
    assert next(iter(rows)) == "eval report"  # evals first


def test_consolidations_and_dropped_ticks_are_not_counted() -> None:
    a = [*ticks(0.5, 100, count=10), *ticks(0.0, 10**6, count=5, kind="Sleep")]
    b = [*ticks(0.5, 100, count=10), *ticks(0.0, 10**6, count=5, outcome="Dropped")]
    rows = {row.measure: row for row in compare(a, b)}
    assert (rows["tokens/tick"].n_a, rows["tokens/tick"].n_b) == (10, 10)
    failed = rows["failed share"]
    assert failed.a == failed.b == 0.0


def test_the_interval_is_the_same_for_the_same_ticks() -> None:
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 5.0, 6.0]
    assert bootstrap(a, b) == bootstrap(a, b)
    low, high = bootstrap(a, b)
    assert low <= 1.75 <= high
