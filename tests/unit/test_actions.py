"""The action schema: what a model may answer, and how bad answers are reported."""

from __future__ import annotations

import json

import pytest

from agentstack_runner.actions import (
    DEFAULT_RECALL_LIMIT,
    MAX_ACTIONS,
    MAX_REPLY_CHARS,
    SCHEMA_HINT,
    Recall,
    ReplyError,
    ReviewArtifact,
    SendMessage,
    parse_reply,
)


def test_valid_reply_parses_into_typed_actions() -> None:
    reply = parse_reply(
        json.dumps(
            {
                "thought": "ship it",
                "actions": [
                    {"type": "send_message", "to": "builder", "content": "go"},
                    {"type": "review_artifact", "name": "t1.md", "verdict": "accept"},
                ],
            }
        )
    )
    assert reply.thought == "ship it"
    assert reply.actions[0] == SendMessage(type="send_message", to="builder", content="go")
    assert isinstance(reply.actions[1], ReviewArtifact)


def test_one_markdown_fence_is_tolerated() -> None:
    reply = parse_reply('```json\n{"actions": [{"type": "post_update", "content": "hi"}]}\n```')
    assert len(reply.actions) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I think we should plan first.", "not valid JSON"),
        ("[1, 2, 3]", "must be a JSON object, not list"),
        ('{"actions": [{"type": "launch_rockets"}]}', "actions.0"),
        ('{"actions": [{"type": "send_message", "to": "b"}]}', "content"),
        ('{"actions": [{"type": "send_message", "to": 7, "content": "x"}]}', "to"),
        ('{"actions": "send everything"}', "actions"),
        (
            '{"actions": [{"type": "post_update", "content": "x", "extra": 1}]}',
            "Extra inputs are not permitted",
        ),
        ('{"actions": [{"type": "review_artifact", "name": "a", "verdict": "maybe"}]}', "verdict"),
        ('{"actions": [{"type": "recall", "query": ""}]}', "query"),
        ('{"actions": [{"type": "recall", "query": "x", "limit": 11}]}', "limit"),
    ],
)
def test_invalid_replies_say_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(ReplyError, match=expected):
        parse_reply(text)


def test_huge_output_is_refused_before_parsing() -> None:
    with pytest.raises(ReplyError, match=f"limit is {MAX_REPLY_CHARS}"):
        parse_reply('{"thought": "' + "x" * MAX_REPLY_CHARS + '"}')


def test_too_many_actions_are_refused() -> None:
    actions = [{"type": "post_update", "content": str(n)} for n in range(MAX_ACTIONS + 1)]
    with pytest.raises(ReplyError, match="actions"):
        parse_reply(json.dumps({"actions": actions}))


def test_a_recall_asks_with_a_query_and_an_optional_limit() -> None:
    reply = parse_reply(
        json.dumps(
            {
                "actions": [
                    {"type": "recall", "query": "launch code"},
                    {"type": "recall", "query": "feedback on t1.md", "limit": 2},
                ]
            }
        )
    )
    assert reply.actions == [
        Recall(type="recall", query="launch code", limit=DEFAULT_RECALL_LIMIT),
        Recall(type="recall", query="feedback on t1.md", limit=2),
    ]
    assert '{"type": "recall", "query":' in SCHEMA_HINT  # models are told of it
