"""Two stacks side by side: which configuration wins, and how sure that is.

``kubectl agentstack compare A B`` reads each stack's recent work ticks (their history
entries, as the API serves them) and, per measure — each eval's score, tokens, dollars
and duration per tick, the share of ticks that failed — gives both means, the
difference (B - A) and a 95 % bootstrap interval of it (:func:`bootstrap`: the ticks of
each stack resampled with replacement, :data:`RESAMPLES` times, with a fixed seed so the
same ticks give the same interval). An interval that excludes 0 says the difference is
more than chance among those ticks; one that spans it says they cannot tell — run more
ticks, or mirror the same inputs to both (a fork with ``--mirror``). Pure.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Row:
    """One measure of the comparison."""

    measure: str
    a: float
    b: float
    n_a: int
    n_b: int
    low: float
    high: float
    """The interval of ``b - a``."""

    @property
    def difference(self) -> float:
        return self.b - self.a

    @property
    def verdict(self) -> str:
        if self.low > 0:
            return "B higher"
        if self.high < 0:
            return "B lower"
        return "no clear difference"


def bootstrap(a: Sequence[float], b: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """The :data:`CONFIDENCE` interval of ``mean(b) - mean(a)`` by the percentile
    bootstrap."""
    rng = random.Random(seed)
    differences = sorted(
        statistics.fmean(rng.choices(b, k=len(b))) - statistics.fmean(rng.choices(a, k=len(a)))
        for _ in range(RESAMPLES)
    )
    tail = (1 - CONFIDENCE) / 2
    return differences[int(tail * RESAMPLES)], differences[int((1 - tail) * RESAMPLES) - 1]


def _measures(entry: Mapping[str, Any]) -> dict[str, float]:
    """What one tick contributes to each measure (a measure it has no value for: left
    out, e.g. the dollars of a tick of an unpriced model)."""
    found = {f"eval {name}": float(score) for name, score in (entry.get("scores") or {}).items()}
    found["tokens/tick"] = float(entry.get("tokens") or 0)
    if entry.get("costUSD") is not None:
        found["USD/tick"] = float(entry["costUSD"])
    if entry.get("durationMs") is not None:
        found["seconds/tick"] = float(entry["durationMs"]) / 1000
    found["failed share"] = 1.0 if entry.get("outcome") == "Failed" else 0.0
    return found


def compared(entries: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The ticks a comparison counts: work ticks that ran (not consolidations, not
    ticks dropped before they ran)."""
    return [e for e in entries if e.get("kind", "Work") == "Work" and e.get("outcome") != "Dropped"]


def compare(
    a: Sequence[Mapping[str, Any]],
    b: Sequence[Mapping[str, Any]],
    interval: Callable[[Sequence[float], Sequence[float]], tuple[float, float]] = bootstrap,
) -> list[Row]:
    """A row per measure both stacks have values of (see the module docstring)."""
    by_a = [_measures(e) for e in compared(a)]
    by_b = [_measures(e) for e in compared(b)]
    names = sorted({n for m in by_a for n in m} & {n for m in by_b for n in m})
    names.sort(key=lambda name: (not name.startswith("eval "), name))
    rows = []
    for name in names:
        values_a = [m[name] for m in by_a if name in m]
        values_b = [m[name] for m in by_b if name in m]
        low, high = interval(values_a, values_b)
        rows.append(
            Row(
                measure=name,
                a=statistics.fmean(values_a),
                b=statistics.fmean(values_b),
                n_a=len(values_a),
                n_b=len(values_b),
                low=low,
                high=high,
            )
        )
    return rows
