"""The JSON action schema agents answer in, and its validation.

An agent's reply must be one JSON object ``{"thought": "...", "actions": [...]}`` where
each action is one of:

``send_message``     ``{to, content}`` — into another agent's inbox (kept across restarts)
``update_memory``    ``{key, value}`` — the agent's own working memory (``value: null`` forgets)
``write_artifact``   ``{name, content, task_id?}`` — create or revise a named artifact
``update_plan``      ``{tasks: [{id, title, status, note?}]}`` — add or change tasks; a task
                     set ``done`` or ``dropped`` leaves the plan for the archive
``review_artifact``  ``{name, verdict: accept|revise, feedback}`` — accept or send back
``post_update``      ``{content}`` — a progress note on the stack's feed, for people
``call_tool``        ``{tool, arguments}`` — a tool listed for the agent; its result comes
                     back within the step
``recall``           ``{query, limit?}`` — search the stack's archive; what it finds comes
                     back within the step
``declare_goal_met`` ``{summary}`` — a finite goal is met (confirmed before it counts)
``confirm_goal_met`` ``{verdict: accept|reject, reason}`` — the reviewer's (or judge's) say

Model output is untrusted: sizes are bounded, unknown fields are rejected, and
:func:`parse_reply` turns any failure into a :class:`ReplyError` whose message is
short enough to show the model in the single repair attempt (see ``agents``).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

MAX_REPLY_CHARS = 64_000
"""Replies longer than this are refused before parsing: huge output is a failure mode."""
MAX_ACTIONS = 16
MAX_CONTENT_CHARS = 16_000
MAX_TASKS = 50
MAX_QUERY_CHARS = 500
MAX_RECALL_LIMIT = 10
DEFAULT_RECALL_LIMIT = 5

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][\w .\-/]*$")]
Text = Annotated[str, Field(min_length=1, max_length=MAX_CONTENT_CHARS)]
TaskStatus = Literal["todo", "doing", "review", "done", "dropped"]


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SendMessage(_Action):
    type: Literal["send_message"]
    to: Name
    content: Text


class UpdateMemory(_Action):
    type: Literal["update_memory"]
    key: Name
    value: Annotated[str, Field(max_length=MAX_CONTENT_CHARS)] | None


class WriteArtifact(_Action):
    type: Literal["write_artifact"]
    name: Name
    content: Text
    task_id: Name | None = None


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: Name
    title: Annotated[str, Field(min_length=1, max_length=500)]
    status: TaskStatus = "todo"
    note: Annotated[str, Field(max_length=2000)] | None = None


class UpdatePlan(_Action):
    type: Literal["update_plan"]
    tasks: Annotated[list[Task], Field(max_length=MAX_TASKS)]


class ReviewArtifact(_Action):
    type: Literal["review_artifact"]
    name: Name
    verdict: Literal["accept", "revise"]
    feedback: Annotated[str, Field(max_length=MAX_CONTENT_CHARS)] = ""


class PostUpdate(_Action):
    type: Literal["post_update"]
    content: Text


class DeclareGoalMet(_Action):
    """Say the stack's finite goal is met (``spec.completion``); the reviewer or a judge
    confirms it before the stack completes."""

    type: Literal["declare_goal_met"]
    summary: Text


class ConfirmGoalMet(_Action):
    """The reviewer's (or the judge's) decision on a declaration that the goal is met."""

    type: Literal["confirm_goal_met"]
    verdict: Literal["accept", "reject"]
    reason: Annotated[str, Field(max_length=MAX_CONTENT_CHARS)] = ""


Note = Annotated[str, Field(min_length=1, max_length=500)]
Notes = Annotated[list[Note], Field(max_length=50)]


class UpdateLongTermMemory(_Action):
    """A consolidation's answer: the stack's long-term memory as it should now stand
    (each section newest first)."""

    type: Literal["update_long_term_memory"]
    decisions: Notes = []
    facts: Notes = []
    delivered: Notes = []
    open_threads: Notes = []
    lessons: Notes = []


class CallTool(_Action):
    """Call one of the tools listed under ``tools`` (by ``server/tool``); its result
    comes back within the same step, and the agent answers again."""

    type: Literal["call_tool"]
    tool: Annotated[str, Field(min_length=3, max_length=200, pattern=r"^[a-z0-9-]+/.+$")]
    arguments: dict[str, Any] = Field(default_factory=dict)


class Recall(_Action):
    """Search the stack's archive (every task, artifact version, input, message, feed
    post and consolidation note it keeps); what it finds comes back within the same
    step, and the agent answers again."""

    type: Literal["recall"]
    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]
    limit: Annotated[int, Field(ge=1, le=MAX_RECALL_LIMIT)] = DEFAULT_RECALL_LIMIT


Action = Annotated[
    SendMessage
    | UpdateMemory
    | WriteArtifact
    | UpdatePlan
    | ReviewArtifact
    | PostUpdate
    | DeclareGoalMet
    | ConfirmGoalMet
    | UpdateLongTermMemory
    | CallTool
    | Recall,
    Field(discriminator="type"),
]
Lookup = CallTool | Recall
"""An action that asks rather than acts: answered within the step, before the agent
answers again."""


class Reply(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    thought: Annotated[str, Field(max_length=MAX_CONTENT_CHARS)] = ""
    actions: Annotated[list[Action], Field(max_length=MAX_ACTIONS)] = []


_REPLY = TypeAdapter(Reply)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class ReplyError(ValueError):
    """The model's output is not a valid reply; the message says what to fix."""


def parse_reply(text: str) -> Reply:
    """Validate a model's raw output into a :class:`Reply`.

    Tolerates one Markdown code fence around the JSON (models add them even when asked
    not to); everything else must match the schema exactly.
    """
    if len(text) > MAX_REPLY_CHARS:
        raise ReplyError(f"reply is {len(text)} characters; the limit is {MAX_REPLY_CHARS}")
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    try:
        data: Any = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ReplyError(f"reply is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(data, dict):
        raise ReplyError(f"reply must be a JSON object, not {type(data).__name__}")
    try:
        return _REPLY.validate_python(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'reply'}: {error['msg']}"
            for error in exc.errors()[:8]
        ]
        raise ReplyError("invalid reply: " + "; ".join(problems)) from exc


SCHEMA_HINT = """Answer with ONE JSON object and nothing else:
{"thought": "<one or two sentences>", "actions": [<zero or more actions>]}
Actions (at most 16):
{"type": "send_message", "to": "<agent name>", "content": "<text>"}
{"type": "update_memory", "key": "<name>", "value": "<text or null to forget>"}
{"type": "write_artifact", "name": "<file name>", "content": "<text>", "task_id": "<task id>"}
{"type": "update_plan", "tasks": [{"id": "t1", "title": "<text>", "status": "<status>"}]}
  (status: todo, doing, review, done or dropped; the plan holds open work: a task set
  done or dropped leaves it, and stays in the stack's archive)
{"type": "review_artifact", "name": "<artifact>", "verdict": "accept|revise", "feedback": "<text>"}
{"type": "post_update", "content": "<progress note for people>"}
{"type": "declare_goal_met", "summary": "<what was achieved>"}
  (only when "completion" is shown: the goal is finite; the reviewer or a judge
  confirms it with {"type": "confirm_goal_met", "verdict": "accept|reject", "reason": "..."})
{"type": "call_tool", "tool": "<server/tool>", "arguments": {<as its input_schema says>}}
  (only tools listed under "tools"; their results come back before you answer again;
  some tools need a person's approval first: "approvals" shows what waits, what was
  decided, and the results of approved calls, made for you)
{"type": "recall", "query": "<words to look for>", "limit": <1-10, default 5>}
  (searches everything the team did and was told — finished tasks, every artifact
  version, inputs, messages, feed posts, notes — beyond what this prompt shows; what it
  finds comes back before you answer again)
Inbox messages with an "input" number come from people or systems outside the team:
act on them, and answer them with post_update (send_message reaches teammates only)."""
