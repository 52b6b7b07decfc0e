"""A stack as an A2A agent: the protocol's objects in a stack's own terms (pure rules).

A stack answers the A2A protocol (the ``a2a-sdk``'s types; served by
:mod:`.a2aserver` under :mod:`.routes.a2a`) without a store of its own, because every
A2A object is something the stack already keeps:

- **The agent card** is derived from the spec: the stack's name, its goal as the
  description, one skill per agent of the team (its id the agent's name, so a caller
  can pick the agent), the JSON-RPC endpoint's URL (protocol 1.0, and 0.3), streaming.
- **A message** is an input (:meth:`~.inputs.Inputs.put`): its text parts joined are the
  content; the first agent (the planner) reads it unless the message's metadata names
  another agent of the team (``agent``, or ``skillId``/``skill``: a skill's id is the
  agent's name). Other parts are refused: agents read text. The message id is the
  input's delivery id (``a2a/<messageId>``), so a retried message is not sent twice
  and finds the task its first sending made.
- **A task** is the input's number (``input-<number>``); its state is what became of
  the input (the inputs log's outcomes) and of the tick that read it (the tick
  history): ``submitted`` while queued, ``working`` once an agent's step read it,
  ``completed`` or ``failed`` as that tick ended. The artifacts written in that tick
  are the task's artifacts (their current versions: a later tick's revision takes an
  artifact over); the status message names the reading agent and the tick, whose
  trace (``GET …/traces``) says what each agent did.
- **The context** is the stack (its uid): every task of one stack shares the team's
  plan and memory, which is what an A2A context is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Artifact,
    Message,
    Part,
    Role,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.constants import (
    AGENT_CARD_WELL_KNOWN_PATH,
    PROTOCOL_VERSION_0_3,
    PROTOCOL_VERSION_1_0,
)
from a2a.utils.errors import ContentTypeNotSupportedError, InvalidParamsError

from agentstack_core.reasons import Outcome
from agentstack_core.records import ArtifactRecord, InputOutcome, TickRecord
from agentstack_core.spec import StackSpec

CARD_PATH = AGENT_CARD_WELL_KNOWN_PATH
"""Where the card is, below a stack's A2A endpoint (where the SDK's resolver looks)."""
TASK_PREFIX = "input-"
TASK_ID = re.compile(rf"{TASK_PREFIX}([1-9][0-9]{{0,17}})", re.ASCII)
DELIVERY_PREFIX = "a2a/"
AGENT_KEYS = ("agent", "skillId", "skill")
"""Keys of a message's metadata that name the agent to read it, in order."""
PROTOCOL_VERSIONS = (PROTOCOL_VERSION_1_0, PROTOCOL_VERSION_0_3)
"""What the endpoint speaks (0.3 through the SDK's adapter): a card with a 0.3 interface
also carries 0.3's fields (``url``, ``protocolVersion``), which 0.3 clients read."""
TEXT_MODES = ["text/plain"]
TERMINAL = frozenset({TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED})


def agent_card(name: str, spec: StackSpec, url: str) -> AgentCard:
    """The card of stack ``name`` whose JSON-RPC endpoint is at ``url``."""
    return AgentCard(
        name=name,
        description=spec.goal,
        version="v1alpha1",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version=version)
            for version in PROTOCOL_VERSIONS
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=TEXT_MODES,
        default_output_modes=TEXT_MODES,
        skills=[
            AgentSkill(
                id=agent.name,
                name=agent.name,
                description=f"The team's {agent.role}"
                + (" (the default reader of messages)" if index == 0 else "")
                + f': name it in a message\'s metadata ({{"agent": "{agent.name}"}}) to '
                "send the message to this agent.",
                tags=[agent.role],
            )
            for index, agent in enumerate(spec.agents)
        ],
    )


def task_id(number: int) -> str:
    return f"{TASK_PREFIX}{number}"


def input_number(task: str) -> int | None:
    """The input a task id names (``None``: not one of ours)."""
    match = TASK_ID.fullmatch(task)
    return int(match[1]) if match else None


def delivery(message: Message) -> str:
    """The input's delivery id: a message sent again under its id is the same input."""
    if not message.message_id:
        raise InvalidParamsError("the message has no messageId")
    return f"{DELIVERY_PREFIX}{message.message_id}"


def target_agent(message: Message) -> str | None:
    """The agent the message's metadata names (``None``: the stack's first agent)."""
    fields = message.metadata.fields
    for key in AGENT_KEYS:
        if key in fields:
            value = fields[key]
            if value.WhichOneof("kind") != "string_value" or not value.string_value:
                raise InvalidParamsError(f"metadata.{key} must name an agent of the team")
            return str(value.string_value)
    return None


def content(message: Message) -> str:
    """The text the agent reads: the message's text parts, joined by blank lines."""
    texts: list[str] = []
    for index, part in enumerate(message.parts):
        kind = part.WhichOneof("content")
        if kind != "text":
            raise ContentTypeNotSupportedError(
                f"part {index} is {kind or 'empty'}: a stack's agents read text parts only"
            )
        texts.append(part.text)
    text = "\n\n".join(t for t in texts if t.strip())
    if not text:
        raise InvalidParamsError("the message has no text")
    return text


@dataclass(frozen=True)
class Progress:
    """Where an input stands: who read it in which tick, and how that tick ended."""

    number: int
    outcome: InputOutcome | None = None
    """``None``: queued, no agent has read it yet."""
    tick: TickRecord | None = None
    """The tick that read it, once finished (``None``: not read, or still running)."""
    artifacts: tuple[tuple[str, ArtifactRecord], ...] = ()
    """The artifacts written in that tick, by name (current versions)."""

    @property
    def state(self) -> TaskState:
        if self.outcome is None:
            return TaskState.TASK_STATE_SUBMITTED
        if self.tick is None:
            return TaskState.TASK_STATE_WORKING
        if self.tick.outcome == Outcome.SUCCEEDED:
            return TaskState.TASK_STATE_COMPLETED
        return TaskState.TASK_STATE_FAILED

    def summary(self) -> str:
        """The status message: what happened to the input, naming agent and tick."""
        number, outcome, tick = self.number, self.outcome, self.tick
        if outcome is None:
            return f"Input #{number} waits in the inbox for the stack's next tick."
        read = f"{outcome.agent} read input #{number} in tick {outcome.tick_id}"
        if tick is None:
            return f"{read}; the tick is running."
        ended = f"{read}; the tick ended {tick.outcome} ({tick.reason})"
        made = ", ".join(name for name, _record in self.artifacts)
        return (
            ended
            + (f": {tick.message}" if tick.message else "")
            + (f". Artifacts of the tick: {made}." if made else ".")
            + " Its trace says what each agent did."
        )

    def stamp(self) -> float | None:
        """When the input reached its state (``None``: when it was sent, not known here)."""
        if self.tick is not None and self.tick.finished_at:
            return self.tick.finished_at
        return self.outcome.at if self.outcome is not None else None


def artifact(name: str, record: ArtifactRecord) -> Artifact:
    return Artifact(
        artifact_id=name,
        name=name,
        parts=[Part(text=record.content, media_type="text/plain")],
        metadata={
            "author": record.author,
            "version": record.version,
            "status": record.status.value,
            "tickId": record.tick_id,
        },
    )


def status(progress: Progress, ident: str, context: str) -> TaskStatus:
    """The status of task ``ident``: its state and a message saying what happened."""
    made = TaskStatus(
        state=progress.state,
        message=Message(
            message_id=f"{ident}-{TaskState.Name(progress.state).lower()}",
            context_id=context,
            task_id=ident,
            role=Role.ROLE_AGENT,
            parts=[Part(text=progress.summary())],
        ),
    )
    moment = progress.stamp()
    if moment is not None:
        made.timestamp.FromDatetime(datetime.fromtimestamp(moment, UTC))
    return made


def task(progress: Progress, context: str) -> Task:
    """The task of an input, as ``tasks/get`` answers it."""
    ident = task_id(progress.number)
    metadata: dict[str, Any] = {"input": progress.number}
    if progress.outcome is not None:
        metadata |= {"agent": progress.outcome.agent, "tickId": progress.outcome.tick_id}
    return Task(
        id=ident,
        context_id=context,
        status=status(progress, ident, context),
        artifacts=[artifact(name, record) for name, record in progress.artifacts],
        metadata=metadata,
    )
