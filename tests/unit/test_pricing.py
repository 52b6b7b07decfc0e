"""The price table, the money unit and the dollar budget's bound (pure rules)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentstack_core.budget import Usage, cost_left, exhausted
from agentstack_core.pricing import (
    DEFAULT_PRICES,
    Price,
    PriceTable,
    PriceTableError,
    UnpricedError,
    affordable_output,
    format_usd,
    known_usd,
    nanos,
    prompt_bound,
    usd,
)
from agentstack_core.spec import DEFAULTS, Budget, ModelRef

GROQ_70B = ModelRef("groq", "llama-3.3-70b-versatile")


def test_a_call_costs_its_tokens_at_the_models_prices() -> None:
    price = PriceTable.builtin().price(GROQ_70B)
    assert price == Price(0.59, 0.79)
    # 1,000 prompt tokens at $0.59/M and 500 completion tokens at $0.79/M.
    assert usd(price.cost(1000, 500)) == pytest.approx(0.00059 + 0.000395)
    assert price.cost(0, 0) == 0


def test_every_default_model_has_both_prices_and_the_default_models_are_priced() -> None:
    for models in DEFAULT_PRICES.values():
        assert all(p.input >= 0 and p.output >= 0 for p in models.values())
    table = PriceTable.builtin()
    for agent in DEFAULTS.agents:
        assert all(table.price(model) is not None for model in agent.models), agent


def test_overrides_replace_and_add_models_and_keep_the_rest() -> None:
    table = PriceTable.with_overrides(
        "groq:\n  llama-3.3-70b-versatile: {input: 1, output: 2}\n"
        "  my-model: {input: 0.5, output: 0.25}\n"
    )
    assert table.price(GROQ_70B) == Price(1.0, 2.0)
    assert table.price(ModelRef("groq", "my-model")) == Price(0.5, 0.25)
    assert table.price(ModelRef("openai", "gpt-4o-mini")) == Price(0.15, 0.60)
    assert table.price(ModelRef("groq", "unheard-of")) is None
    as_json = PriceTable.with_overrides('{"gateway": {"x": {"input": 3, "output": 4}}}')
    assert as_json.price(ModelRef("gateway", "x")) == Price(3.0, 4.0)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[1, 2]", "must map providers"),
        ("groq: 3", "expected a map of models"),
        ("groq: {m: {input: 1}}", "expected exactly {input, output}"),
        ("groq: {m: {input: 1, output: -2}}", "≥ 0"),
        ("groq: {m: {input: yes, output: 1}}", "≥ 0"),
        ("groq: {m: {input: '1', output: 1}}", "≥ 0"),
        ("groq: [", "not YAML or JSON"),
    ],
)
def test_a_bad_price_list_is_refused_with_where_and_why(text: str, says: str) -> None:
    with pytest.raises(PriceTableError, match="AGENTSTACK_PRICES") as refused:
        PriceTable.with_overrides(text)
    assert says in str(refused.value)


def test_unknown_cost_is_none_never_zero() -> None:
    assert known_usd(1500, 0) == pytest.approx(0.0000015)
    assert known_usd(1500, 1) is None
    assert known_usd(0, 2) is None
    assert format_usd(1_234_567) == "0.001235"


def test_the_prompt_bound_counts_bytes_not_characters() -> None:
    ascii_only = prompt_bound([{"role": "user", "content": "abcd"}])
    accented = prompt_bound([{"role": "user", "content": "ééèè"}])
    assert accented - ascii_only == 4  # two bytes each in UTF-8
    assert prompt_bound([]) < ascii_only


def test_a_dollar_budget_is_spent_below_what_the_refused_call_needed() -> None:
    budget = Budget(max_cost_usd=0.001)
    assert cost_left(budget, Usage(cost=400_000)) == 600_000
    assert exhausted(budget, Usage(cost=400_000)) is None
    assert exhausted(budget, Usage(cost=1_000_000)) == ("$0.001000 spent of the budget of $0.001")
    # A call needing 700,000 nano-dollars was refused: 600,000 left is spent ...
    assert exhausted(budget, Usage(cost=400_000, needed=700_000)) is not None
    # ... until the budget is raised.
    assert exhausted(Budget(max_cost_usd=0.002), Usage(cost=400_000, needed=700_000)) is None
    assert cost_left(Budget(), Usage(cost=10**12)) is None
    assert exhausted(Budget(), Usage(cost=10**12)) is None


def test_an_unpriced_model_in_the_chain_refuses_the_bound() -> None:
    with pytest.raises(UnpricedError, match="groq:mystery"):
        affordable_output(
            [(GROQ_70B, Price(0.59, 0.79)), (ModelRef("groq", "mystery"), None)], 100, 10**9, 1024
        )


def test_a_free_model_affords_all_it_wants() -> None:
    free = [(ModelRef("scripted", "scripted-v1"), Price(0.0, 0.0))]
    assert affordable_output(free, 10_000, 0, 1024) == 1024


prices = st.builds(
    Price,
    st.floats(min_value=0, max_value=100, allow_nan=False),
    st.floats(min_value=0, max_value=100, allow_nan=False),
)


@given(
    chain=st.lists(prices, min_size=1, max_size=3),
    prompt=st.integers(min_value=0, max_value=200_000),
    left=st.integers(min_value=0, max_value=10**10),
    wanted=st.integers(min_value=1, max_value=32_768),
)
def test_the_affordable_answer_never_overspends_and_is_the_largest_that_fits(
    chain: list[Price], prompt: int, left: int, wanted: int
) -> None:
    models = [(ModelRef("p", f"m{i}"), price) for i, price in enumerate(chain)]
    fits = affordable_output(models, prompt, left, wanted)
    assert 0 <= fits <= wanted
    if fits > 0:  # whichever model answers, its worst case fits in what is left
        assert all(price.cost(prompt, fits) <= left for price in chain)
    if fits < wanted:  # one token more would not fit for some model
        assert any(price.cost(prompt, fits + 1) > left for price in chain)


def test_nanos_round_down_so_a_budget_is_never_rounded_up() -> None:
    assert nanos(0.000000001) == 1
    assert nanos(0.0000000019) == 1
    assert nanos(2.5) == 2_500_000_000
