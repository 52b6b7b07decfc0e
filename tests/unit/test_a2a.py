"""A stack as an A2A agent: the card from the spec, a message as an input, an input's
fate as a task (:mod:`agentstack_api.a2a`), and refusals as JSON-RPC errors."""

from __future__ import annotations

import pytest
from a2a.types.a2a_pb2 import Message, Part, Role, TaskState
from a2a.utils.errors import (
    ContentTypeNotSupportedError,
    InvalidParamsError,
    UnsupportedOperationError,
)

from agentstack_api import a2a
from agentstack_api.a2aserver import protocol_error
from agentstack_api.app import create_app
from agentstack_api.errors import ApiError
from agentstack_core.records import ArtifactRecord, InputOutcome, TickRecord
from agentstack_core.spec import parse_spec
from tests.unit import test_api_fakes as fakes

TICK = "team/alpha/1700000000000"
URL = "https://api.example/api/v1/namespaces/team/stacks/alpha/a2a"


def _message(*parts: Part, ident: str = "m-1", **metadata: object) -> Message:
    message = Message(message_id=ident, role=Role.ROLE_USER, parts=list(parts))
    if metadata:
        message.metadata.update(metadata)
    return message


def test_the_card_is_the_spec_seen_as_an_agent() -> None:
    spec = parse_spec(
        {
            "goal": "Keep the notes current.",
            "agents": [{"name": "lead", "role": "planner"}, {"name": "maker", "role": "builder"}],
        }
    )
    card = a2a.agent_card("alpha", spec, URL)
    assert (card.name, card.description) == ("alpha", "Keep the notes current.")
    assert [(s.id, s.name, list(s.tags)) for s in card.skills] == [
        ("lead", "lead", ["planner"]),
        ("maker", "maker", ["builder"]),
    ]
    assert "default reader" in card.skills[0].description
    assert "default reader" not in card.skills[1].description
    assert [(i.url, i.protocol_binding, i.protocol_version) for i in card.supported_interfaces] == [
        (URL, "JSONRPC", "1.0"),
        (URL, "JSONRPC", "0.3"),
    ]
    assert card.capabilities.streaming
    assert not card.capabilities.push_notifications


def test_the_default_team_is_four_skills() -> None:
    card = a2a.agent_card("alpha", parse_spec({"goal": "g"}), URL)
    assert [s.id for s in card.skills] == ["planner", "builder", "reviewer", "communicator"]


def test_text_parts_are_the_content_and_other_parts_are_refused() -> None:
    message = _message(Part(text="First."), Part(text="  "), Part(text="Second."))
    assert a2a.content(message) == "First.\n\nSecond."
    with pytest.raises(ContentTypeNotSupportedError, match="part 1 is url"):
        a2a.content(_message(Part(text="see"), Part(url="https://example.com/a.png")))
    with pytest.raises(ContentTypeNotSupportedError, match="part 0 is raw"):
        a2a.content(_message(Part(raw=b"\x00")))
    with pytest.raises(InvalidParamsError, match="no text"):
        a2a.content(_message())
    with pytest.raises(InvalidParamsError, match="no text"):
        a2a.content(_message(Part(text=" \n")))


def test_the_metadata_names_the_agent_else_the_first_agent_reads() -> None:
    assert a2a.target_agent(_message(Part(text="hi"))) is None
    assert a2a.target_agent(_message(Part(text="hi"), agent="maker")) == "maker"
    assert a2a.target_agent(_message(Part(text="hi"), skillId="lead")) == "lead"
    assert a2a.target_agent(_message(Part(text="hi"), skill="lead", other="x")) == "lead"
    with pytest.raises(InvalidParamsError, match=r"metadata\.agent"):
        a2a.target_agent(_message(Part(text="hi"), agent=3))
    with pytest.raises(InvalidParamsError, match=r"metadata\.skillId"):
        a2a.target_agent(_message(Part(text="hi"), skillId=""))


def test_a_message_id_is_the_delivery_and_a_task_id_the_input_number() -> None:
    assert a2a.delivery(_message(ident="abc-1")) == "a2a/abc-1"
    with pytest.raises(InvalidParamsError, match="messageId"):
        a2a.delivery(_message(ident=""))
    assert a2a.task_id(7) == "input-7"
    assert a2a.input_number("input-7") == 7
    for other in ("input-0", "input-07", "input-", "7", "input-²", "input-7x", "input-" + "9" * 19):
        assert a2a.input_number(other) is None, other


def _progress(outcome: str | None = None, *, read: bool = True) -> a2a.Progress:
    seen = InputOutcome(agent="lead", tick_id=TICK, at=1_700_000_001.0) if read else None
    tick = None
    if outcome is not None:
        tick = TickRecord(
            tick_id=TICK,
            outcome=outcome,
            reason="Completed" if outcome == "Succeeded" else "StepFailed",
            message="" if outcome == "Succeeded" else "maker: the model refused",
            finished_at=1_700_000_002.5,
        )
    made = (
        ("notes.md", ArtifactRecord(content="# Notes", author="maker", version=2, tick_id=TICK)),
    )
    return a2a.Progress(3, seen, tick, made if outcome else ())


def test_the_task_state_follows_the_input_and_its_tick() -> None:
    assert _progress(read=False).state == TaskState.TASK_STATE_SUBMITTED
    assert _progress().state == TaskState.TASK_STATE_WORKING
    assert _progress("Succeeded").state == TaskState.TASK_STATE_COMPLETED
    assert _progress("Failed").state == TaskState.TASK_STATE_FAILED
    assert _progress("Dropped").state == TaskState.TASK_STATE_FAILED
    assert "waits in the inbox" in _progress(read=False).summary()
    assert _progress().summary() == f"lead read input #3 in tick {TICK}; the tick is running."
    failed = _progress("Failed").summary()
    assert "ended Failed (StepFailed): maker: the model refused" in failed
    assert "Artifacts of the tick: notes.md." in failed


def test_a_finished_task_carries_the_ticks_artifacts_and_when_it_ended() -> None:
    task = a2a.task(_progress("Succeeded"), "ctx")
    assert (task.id, task.context_id) == ("input-3", "ctx")
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert task.status.timestamp.ToSeconds() == 1_700_000_002
    assert task.status.message.role == Role.ROLE_AGENT
    assert task.status.message.task_id == "input-3"
    assert dict(task.metadata) == {"input": 3.0, "agent": "lead", "tickId": TICK}
    (artifact,) = task.artifacts
    assert (artifact.artifact_id, artifact.parts[0].text) == ("notes.md", "# Notes")
    assert dict(artifact.metadata) == {
        "author": "maker",
        "version": 2.0,
        "status": "review",
        "tickId": TICK,
    }
    queued = a2a.task(_progress(read=False), "ctx")
    assert dict(queued.metadata) == {"input": 3.0}
    assert not queued.status.HasField("timestamp")
    assert not queued.artifacts


def test_refused_inputs_are_json_rpc_errors_with_the_inputs_routes_answer() -> None:
    unknown = protocol_error(ApiError(404, "NotFound", "no agent 'x' in team/alpha"))
    assert isinstance(unknown, InvalidParamsError)
    assert unknown.data == {"status": "404", "code": "NotFound"}
    assert isinstance(protocol_error(ApiError(413, "InputTooLarge", "big")), InvalidParamsError)
    busy = protocol_error(
        ApiError(429, "TooManyInputs", "slow down", headers={"Retry-After": "12"})
    )
    assert isinstance(busy, UnsupportedOperationError)
    assert busy.message == "slow down"
    assert busy.data == {"status": "429", "code": "TooManyInputs", "retry-after": "12"}
    stopped = protocol_error(ApiError(409, "StackStopped", "team/alpha is Stopped"))
    assert isinstance(stopped, UnsupportedOperationError)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("public_url", "endpoint"),
    [
        ("", "http://api.test/api/v1/namespaces/team/stacks/alpha/a2a"),
        (
            "https://agents.example/",
            "https://agents.example/api/v1/namespaces/team/stacks/alpha/a2a",
        ),
    ],
)
async def test_the_card_names_the_endpoint_where_callers_reach_it(
    public_url: str, endpoint: str
) -> None:
    redis = fakes.unreachable_redis()
    app = create_app(
        cache=fakes.FakeCache([fakes.stack("team", "alpha")]),
        redis=redis,
        hub=fakes.hub(redis),
        auth=fakes.FakeAuthorizer({"team"}),
        state_writer=fakes.FakeStateWriter(),
        secrets=None,
        public_url=public_url,
    )
    async with fakes.client(app) as http:
        card = await http.get(f"/api/v1/namespaces/team/stacks/alpha/a2a{a2a.CARD_PATH}")
        refused = await http.get(f"/api/v1/namespaces/other/stacks/beta/a2a{a2a.CARD_PATH}")
    assert card.status_code == 200, card.text
    body = card.json()
    assert (body["name"], body["description"]) == ("alpha", "goal of alpha")
    assert body["supportedInterfaces"][0]["url"] == endpoint
    assert (body["url"], body["protocolVersion"]) == (endpoint, "0.3")  # for 0.3 clients
    fakes.error_of(refused, 403, "Forbidden")
