"""The budget rule: spent exactly when a counter reaches its limit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agentstack_core.budget import Usage, exhausted
from agentstack_core.spec import Budget

limits = st.none() | st.integers(min_value=0, max_value=10_000)
used = st.integers(min_value=0, max_value=20_000)


@given(max_tokens=limits, max_ticks=limits, tokens=used, ticks=used)
def test_spent_exactly_when_a_counter_reaches_its_limit(
    max_tokens: int | None, max_ticks: int | None, tokens: int, ticks: int
) -> None:
    reason = exhausted(Budget(max_tokens, max_ticks), Usage(tokens=tokens, ticks=ticks))
    over = (max_tokens is not None and tokens >= max_tokens) or (
        max_ticks is not None and ticks >= max_ticks
    )
    assert (reason is not None) == over


def test_the_reason_names_the_counter_and_its_limit() -> None:
    assert exhausted(Budget(max_tokens=100), Usage(tokens=120)) == (
        "120 tokens used of the budget of 100"
    )
    assert exhausted(Budget(max_ticks=3), Usage(ticks=3)) == "3 ticks run of the budget of 3"
    assert exhausted(Budget(), Usage(tokens=10**9, ticks=10**9)) is None


def test_usage_reads_the_counters_hash_and_treats_absent_as_zero() -> None:
    assert Usage.from_hash({}) == Usage(0, 0, 0, 0)
    assert Usage.from_hash({"tokens": "12", "ticks": "3"}) == Usage(tokens=12, ticks=3)
