"""Evals: parsing spec.evals, scoring what a tick produced, the rolling mean."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentstack_core.evals import (
    Eval,
    Produced,
    decode_scores,
    encode_scores,
    parse_evals,
    rolling,
    tick_scores,
)

REPORT = "# Report\n\n## Risks\nNone.\n\n## Plan\nShip it.\n"


def parsed(raw: list[dict[str, object]]) -> tuple[tuple[Eval, ...], list[str]]:
    problems: list[str] = []
    return parse_evals(raw, problems), problems


def test_an_artifact_scores_the_share_of_its_checks_that_hold() -> None:
    evals, problems = parsed(
        [
            {"name": "report", "artifacts": "*.md", "sections": ["## Risks", "## Plan"]},
            {"name": "short", "artifacts": "*.md", "maxLength": 10, "pattern": "Ship"},
            {"name": "data", "artifacts": "*.json", "jsonSchema": {"type": "object"}},
        ]
    )
    assert problems == []
    produced = Produced(artifacts={"r.md": REPORT, "d.json": '{"a": 1}', "x.json": "[1]"})
    assert tick_scores(evals, produced) == {"report": 1.0, "short": 0.5, "data": 0.5}


def test_nothing_to_score_is_no_score_not_a_zero() -> None:
    evals, _ = parsed(
        [
            {"name": "report", "artifacts": "*.md", "minLength": 1},
            {"name": "tools", "toolSuccess": True},
        ]
    )
    assert tick_scores(evals, Produced(artifacts={"a.txt": "x"})) == {}
    done = Produced(artifacts={}, tool_calls=4, tool_failures=1)
    assert tick_scores(evals, done) == {"tools": 0.75}


def test_a_malformed_artifact_fails_its_schema_check_without_breaking_the_tick() -> None:
    evals, _ = parsed([{"name": "data", "artifacts": "*", "jsonSchema": {"type": "object"}}])
    assert tick_scores(evals, Produced(artifacts={"d": "{not json"})) == {"data": 0.0}


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"name": "Bad Name", "artifacts": "*", "minLength": 1}, "lowercase"),
        ({"name": "x", "artifacts": "*"}, "at least one check"),
        ({"name": "x", "minLength": 1}, "needs artifacts"),
        ({"name": "x", "toolSuccess": True, "artifacts": "*"}, "drop one"),
        ({"name": "x", "artifacts": "*", "pattern": "("}, "not a regular expression"),
        ({"name": "x", "artifacts": "*", "pattern": r"(a)\1"}, "RE2 takes"),
        ({"name": "x", "artifacts": "*", "jsonSchema": {"type": 5}}, "not a JSON schema"),
    ],
)
def test_bad_evals_say_why(raw: dict[str, object], says: str) -> None:
    evals, problems = parsed([raw])
    assert evals == ()
    assert any(says in problem for problem in problems), problems


def test_duplicate_names_are_refused() -> None:
    one = {"name": "x", "artifacts": "*", "minLength": 1}
    _, problems = parsed([one, one])
    assert problems == ["spec.evals[1].name: duplicate eval 'x'"]


def test_the_rolling_mean_starts_at_the_first_score_and_moves_a_tenth() -> None:
    first = rolling({}, {"a": 0.5})
    assert first == {"a": {"mean": 0.5, "ticks": 1}}
    second = rolling(first, {"a": 1.0, "b": 0.0})
    assert second == {"a": {"mean": 0.55, "ticks": 2}, "b": {"mean": 0.0, "ticks": 1}}
    assert first == {"a": {"mean": 0.5, "ticks": 1}}  # not changed in place


@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=50))
def test_the_rolling_mean_stays_within_the_scores(scores: list[float]) -> None:
    state: dict[str, dict[str, float]] = {}
    for score in scores:
        state = rolling(state, {"e": score})
    assert min(scores) - 1e-3 <= state["e"]["mean"] <= max(scores) + 1e-3
    assert state["e"]["ticks"] == len(scores)


@given(st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), st.floats(0, 1)))
def test_scores_round_trip_as_text(scores: dict[str, float]) -> None:
    assert decode_scores(encode_scores(scores)) == scores
    assert decode_scores("not json") == {}
    assert decode_scores("[1]") == {}


def test_a_pattern_that_would_backtrack_for_ever_in_re_is_answered_at_once() -> None:
    evals, problems = parsed([{"name": "x", "artifacts": "*", "pattern": "^(a+)+$"}])
    assert problems == []
    # Python's re takes exponential time here; RE2 is linear in the content.
    assert tick_scores(evals, Produced(artifacts={"a": "a" * 50_000 + "b"})) == {"x": 0.0}
    assert tick_scores(evals, Produced(artifacts={"a": "x\naaa\ny"})) == {"x": 1.0}


def test_a_schema_whose_ref_resolves_nowhere_fails_its_check_not_the_tick() -> None:
    schema = {"$ref": "https://example.invalid/schema.json"}
    evals, problems = parsed([{"name": "x", "artifacts": "*", "jsonSchema": schema}])
    assert problems == []
    assert tick_scores(evals, Produced(artifacts={"a": "{}"})) == {"x": 0.0}
