"""Records written to Redis read back as written, and old or odd entries still read."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentstack_core.keys import StackRef
from agentstack_core.protocol import Outcome, TickRequest, TickResult
from agentstack_core.records import (
    ArtifactRecord,
    ArtifactStatus,
    Attempt,
    FeedRecord,
    InputOutcome,
    MessageRecord,
    RecordError,
    StepRecord,
    TickRecord,
    TraceRecord,
)
from agentstack_core.spec import Priority

text = st.text(max_size=50)
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
counts = st.integers(min_value=0, max_value=2**53)


@given(
    tick_id=text,
    outcome=st.sampled_from(list(Outcome)),
    reason=text,
    started=floats,
    tokens=counts,
    progressed=st.booleans(),
)
def test_a_tick_record_round_trips(
    tick_id: str, outcome: Outcome, reason: str, started: float, tokens: int, progressed: bool
) -> None:
    record = TickRecord(
        tick_id=tick_id,
        outcome=outcome.value,
        reason=reason,
        started_at=started,
        tokens=tokens,
        progressed=progressed,
    )
    fields = record.to_fields()
    assert all(isinstance(value, str) for value in fields.values())
    assert TickRecord.from_fields(fields) == record


@given(
    attempts=st.lists(st.builds(Attempt, model=text, outcome=text, seconds=floats), max_size=4),
    actions=st.lists(text, max_size=5),
    fallback=st.booleans(),
)
def test_a_trace_record_round_trips(
    attempts: list[Attempt], actions: list[str], fallback: bool
) -> None:
    record = TraceRecord(
        tick_id="ns/a/1",
        agent="planner",
        fallback=fallback,
        attempts=tuple(attempts),
        actions=tuple(actions),
        at=1.5,
    )
    assert TraceRecord.from_fields(record.to_fields()) == record


def test_booleans_have_one_spelling_and_old_spellings_still_read() -> None:
    assert TickRecord(progressed=True).to_fields()["progressed"] == "true"
    assert TickRecord.from_fields({"progressed": "1"}).progressed is True
    assert TickRecord.from_fields({"progressed": "0"}).progressed is False


def test_a_message_keeps_its_sender_under_the_from_field() -> None:
    fields = MessageRecord(sender="planner", content="hi", tick_id="t", at=2.0).to_fields()
    assert fields["from"] == "planner"
    assert "sender" not in fields
    assert MessageRecord.from_fields(fields).sender == "planner"


def test_absent_optional_values_are_not_written_and_read_back_as_absent() -> None:
    fields = FeedRecord(agent="a", content="c").to_fields()
    assert "at" not in fields
    assert FeedRecord.from_fields(fields).at is None


def test_a_stream_record_with_malformed_fields_reads_with_defaults() -> None:
    record = TraceRecord.from_fields(
        {"agent": "a", "latency_ms": "soon", "attempts": "{not json", "actions": '"x"'}
    )
    assert record == TraceRecord(agent="a")


def test_the_tick_protocol_refuses_requests_missing_what_it_needs() -> None:
    request = TickRequest(
        stack=StackRef("ns", "a"),
        generation=3,
        tick_id="ns/a/1000",
        slot=1000,
        deadline=1700000000.25,
        priority=Priority.HIGH,
        dispatched_at=1699999999.5,
    )
    fields = request.to_fields()
    assert TickRequest.from_fields(fields) == request
    del fields["generation"]
    with pytest.raises(RecordError, match="generation"):
        TickRequest.from_fields(fields)
    with pytest.raises(RecordError, match="stack"):
        TickRequest.from_fields({**request.to_fields(), "stack": "no-slash"})


def test_a_result_keeps_the_wire_format_runners_and_operators_already_speak() -> None:
    result = TickResult(
        stack=StackRef("ns", "a"),
        tick_id="ns/a/1",
        generation=1,
        outcome=Outcome.SUCCEEDED,
        reason="Completed",
        started_at=10.0,
        finished_at=12.5,
        tokens=7,
        progressed=True,
    )
    fields = result.to_fields()
    assert fields["stack"] == "ns/a"
    assert fields["outcome"] == "Succeeded"
    assert fields["progressed"] == "true"
    assert fields["finished_at"] == "12.5"
    assert TickResult.from_fields(fields) == result


@given(
    content=text,
    version=counts,
    updated=floats,
    task=st.none() | text,
    status=st.sampled_from(list(ArtifactStatus)),
)
def test_a_json_record_round_trips(
    content: str, version: int, updated: float, task: str | None, status: ArtifactStatus
) -> None:
    artifact = ArtifactRecord(
        content=content, version=version, updated_at=updated, task_id=task, status=status
    )
    assert ArtifactRecord.from_json(artifact.to_json()) == artifact
    step = StepRecord(agent="a", role="r", outcome="Failed", reason="X", tool_problems=(content,))
    assert StepRecord.from_json(step.to_json()) == step


def test_a_json_record_of_an_older_shape_reads_with_defaults() -> None:
    """Numbers written as text read as numbers; what does not parse takes its default;
    a key of another version is ignored; absent is None, never written as null."""
    old = ArtifactRecord.from_json(
        '{"status": "approved", "version": "3", "updated_at": "soon", "task_id": null,'
        ' "content": "# x", "shiny": true}'
    )
    assert old == ArtifactRecord(content="# x", version=3)
    assert "task_id" not in ArtifactRecord(content="c").to_json()


def test_a_json_record_missing_what_it_needs_is_an_error() -> None:
    with pytest.raises(RecordError, match="InputOutcome"):
        InputOutcome.from_json('{"agent": "a"}')
    with pytest.raises(RecordError, match="expected a JSON object"):
        InputOutcome.from_json("[]")
    with pytest.raises(RecordError, match="not JSON"):
        InputOutcome.from_json("{")
    assert InputOutcome.from_json('{"agent": "a", "tickId": "t", "at": 2}').at == 2.0
