"""Recall's pure parts: how semantic ranking fuses the lexical and the cosine ranks,
what the model is shown, and the vectors' codec."""

from __future__ import annotations

from collections.abc import Sequence

from agentstack_core.records import ArchiveKind, ArchiveRecord
from agentstack_core.redis.search import ArchiveHit, SearchResult
from agentstack_runner.embeddings import (
    cosine,
    decode_vector,
    encode_vector,
    unit,
    worst_case_tokens,
)
from agentstack_runner.recall import (
    HIT_TEXT_CHARS,
    RRF_K,
    SEMANTIC_FLOOR,
    Recollection,
    fuse,
)

QUERY = unit([1.0, 0.0, 0.0])


def _hit(
    number: int, vector: Sequence[float] | None, text: str = "", score: float = 0.0
) -> ArchiveHit:
    record = ArchiveRecord(
        kind=ArchiveKind.NOTE,
        ref=f"n{number}",
        text=text or f"item {number}",
        vector=encode_vector(unit(vector)) if vector is not None else None,
    )
    return ArchiveHit(f"{1000 + number}-0", record, score)


def _found(hits: list[ArchiveHit], newest: Sequence[ArchiveHit] = ()) -> SearchResult:
    return SearchResult(terms=("q",), items=100, hits=hits, newest=list(newest))


def test_vectors_round_trip_as_unit_float32() -> None:
    vector = unit([3.0, 4.0])
    assert list(vector) == [0.6000000238418579, 0.800000011920929]
    assert decode_vector(encode_vector(vector)) == vector
    assert abs(cosine(vector, vector) - 1) < 1e-6
    assert cosine(vector, unit([1.0, 0.0, 0.0])) == 0.0  # another model's length
    assert decode_vector("not base64!") == decode_vector("") == unit([])
    assert list(unit([0.0, 0.0])) == [0.0, 0.0]
    assert worst_case_tokens(["ab", "", "ü"]) == 2 + 1 + 2


def test_without_vectors_the_lexical_order_stands() -> None:
    hits = [_hit(1, None), _hit(2, None), _hit(3, None)]
    fused = fuse(QUERY, _found(hits), limit=2)
    assert [hit.id for hit in fused] == ["1001-0", "1002-0"]
    assert fused[0].score == 2 / (RRF_K + 1)  # its lexical rank counts for both


def test_an_item_without_a_vector_keeps_its_lexical_standing() -> None:
    """An input (archived by the API, which embeds nothing) that matches best lexically
    is not pushed below embedded items that match worse."""
    hits = [_hit(1, None), _hit(2, [1.0, 0.0, 0.0]), _hit(3, [0.9, 0.1, 0.0])]
    fused = fuse(QUERY, _found(hits), limit=3)
    assert [hit.id for hit in fused] == ["1001-0", "1002-0", "1003-0"]


def test_an_item_near_in_meaning_rises_and_a_newest_one_joins_past_the_floor() -> None:
    lexical = [_hit(1, [0.0, 1.0, 0.0]), _hit(2, [1.0, 0.1, 0.0])]
    newest = [
        _hit(9, [1.0, 0.2, 0.0]),  # no word in common, close in meaning: joins
        _hit(8, [0.1, 1.0, 0.0]),  # no word in common, far: left out
        _hit(2, [1.0, 0.1, 0.0]),  # a lexical hit that is also new: counted once
    ]
    fused = fuse(QUERY, _found(lexical, newest), limit=10)
    assert [hit.id for hit in fused] == ["1002-0", "1001-0", "1009-0"]
    by_id = {hit.id: hit.score for hit in fused}
    assert by_id["1002-0"] == 1 / (RRF_K + 2) + 1 / (RRF_K + 1)
    assert by_id["1009-0"] == 1 / (RRF_K + 2)
    assert cosine(QUERY, unit([0.1, 1.0, 0.0])) < SEMANTIC_FLOOR


def test_what_the_model_is_shown_of_a_recall() -> None:
    long = _hit(1, None, text="x" * (HIT_TEXT_CHARS + 50))
    shown = Recollection("q", (long,), "lexical").for_prompt()
    assert shown == {
        "recall": "q",
        "mode": "lexical",
        "found": [
            {
                "id": "1001-0",
                "kind": "note",
                "ref": "n1",
                "agent": "",
                "tick": "",
                "text": "x" * HIT_TEXT_CHARS,
            }
        ],
    }
    failed = Recollection("q", (), error="the archive could not be searched")
    assert failed.for_prompt()["error"] == "the archive could not be searched"
    assert failed.traced().hits == ()
