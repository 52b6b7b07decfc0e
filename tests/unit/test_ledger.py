"""The namespace ledger's pure parts: its keyspace, what may cross to its scripts, and
how their replies read (the scripts themselves run in ``tests/integration``)."""

from __future__ import annotations

import dataclasses
import json
from fnmatch import fnmatchcase
from typing import cast

import pytest
from redis.crc import key_slot

from agentstack_core.keys import NamespaceKeys, StackKeys, StackRef, namespace_pattern
from agentstack_core.protocol import RedisClient
from agentstack_core.redis.ledger import (
    COUNTERS,
    BudgetLimits,
    Held,
    NamespaceLedger,
    Refused,
    Spend,
    Stale,
    Unbudgeted,
    check_amount,
    check_name,
    check_windows,
    definition_text,
    hold_answer,
    spend_of,
)

LEDGER_KEYS = ("budgets", "spend", "holds", "held")


def test_a_namespace_s_ledger_keys_share_one_cluster_slot() -> None:
    keys = NamespaceKeys("team-a")
    names = [getattr(keys, name) for name in LEDGER_KEYS]
    assert len(set(names)) == len(names)
    assert len({key_slot(name.encode()) for name in names}) == 1
    assert all(name.startswith("{ns:team-a}:") for name in names)


@pytest.mark.parametrize("namespace", ["team-a", "ns", "team"])
def test_a_tenant_s_key_pattern_never_matches_a_ledger_key(namespace: str) -> None:
    pattern = namespace_pattern(namespace)
    for owner in ("team-a", "ns", "team", namespace):
        for name in LEDGER_KEYS:
            assert not fnmatchcase(getattr(NamespaceKeys(owner), name), pattern)
    # ... while it does match the namespace's stacks' keys, as it should.
    assert fnmatchcase(StackKeys(StackRef(namespace, "s")).spec, pattern)


@pytest.mark.parametrize("name", ["", "a|b", "|"])
def test_a_name_with_the_separator_or_empty_cannot_be_a_budget_or_window(name: str) -> None:
    with pytest.raises(ValueError, match="a budget is non-empty"):
        check_name("budget", name)
    with pytest.raises(ValueError, match="a window is non-empty"):
        check_windows({"daily": name})
    with pytest.raises(ValueError, match="a budget is non-empty"):
        check_windows({name: "2026-12-07"})


def test_names_that_fit_a_spend_field_pass_as_they_are() -> None:
    assert check_windows({"daily": "2026-12-07", "weekly": "2026-W49"}) == {
        "daily": "2026-12-07",
        "weekly": "2026-W49",
    }


@pytest.mark.parametrize("amount", [-1, 1.5, True, "3"])
def test_an_amount_is_a_non_negative_integer(amount: object) -> None:
    with pytest.raises(ValueError, match="cost is a non-negative integer"):
        check_amount("cost", amount)  # type: ignore[arg-type]


def test_amounts_beyond_a_double_s_precision_pass_exactly() -> None:
    assert check_amount("cost", 0) == 0
    assert check_amount("cost", 2**60 + 1) == 2**60 + 1


def test_a_definition_is_published_as_sorted_json_with_every_field_kept() -> None:
    text = definition_text("daily", {"window": "Day", "maxTokens": "10", "maxCost": "5"})
    assert text == '{"maxCost": "5", "maxTokens": "10", "window": "Day"}'
    assert json.loads(definition_text("free", {})) == {}


@pytest.mark.parametrize(
    "definition",
    [{"maxCost": "1.5"}, {"maxCost": "-1"}, {"maxTokens": ""}, {"maxCost": "١٢"}, {"maxTokens": 5}],
)
def test_a_limit_that_is_not_decimal_text_of_an_integer_is_refused(
    definition: dict[str, str],
) -> None:
    with pytest.raises(ValueError, match="decimal text"):
        definition_text("daily", definition)


def test_the_limits_checked_are_the_fields_the_hold_script_reads() -> None:
    keys = {f.metadata["key"] for f in dataclasses.fields(BudgetLimits)}
    assert keys == {"maxCost", "maxTokens"}


def test_the_hold_script_s_replies_read_as_answers() -> None:
    assert hold_answer("h", ["held"]) == Held("h")
    assert hold_answer("h", ["refused", "daily", "2026-12-07", 40, None]) == Refused(
        budget="daily", window="2026-12-07", room_cost=40, room_tokens=None
    )
    assert hold_answer("h", ["stale", "a", "b"]) == Stale(published=("a", "b"))
    assert hold_answer("h", ["stale"]) == Stale(published=())
    assert hold_answer("h", ["unbudgeted"]) == Unbudgeted()
    with pytest.raises(ValueError, match="unexpected reply"):
        hold_answer("h", ["maybe"])


def test_the_spent_script_s_reply_reads_as_counters_by_budget() -> None:
    assert tuple(f.name for f in dataclasses.fields(Spend)) == COUNTERS
    reply = ["daily", "5", "6", "1", None, "0", None, "7", None, "weekly", *[None] * 8]
    assert spend_of(reply) == {
        "daily": Spend(
            cost=5, tokens=6, calls=1, held_cost=0, held_tokens=0, unsettled=0, needed_cost=7
        ),
        "weekly": Spend(0, 0, 0, 0, 0, 0),
    }
    assert spend_of([]) == {}


@pytest.mark.asyncio
async def test_prune_refuses_a_window_id_given_for_a_collection_of_them() -> None:
    ledger = NamespaceLedger(cast(RedisClient, None), "team-a")  # refused before any call
    with pytest.raises(TypeError, match="a collection"):
        await ledger.prune({"daily": "2026-12-07"})
