"""The A2A server of every stack: the ``a2a-sdk``'s JSON-RPC dispatcher over inputs.

One :class:`StackAgents` serves every stack: the route (:mod:`.routes.a2a`) has
authenticated the caller and checked ``create agentstacks/inputs`` on the stack (as for
``POST …/inputs``: 401, 403 before 404) before the SDK's
:class:`~a2a.server.routes.jsonrpc_dispatcher.JsonRpcDispatcher` parses the call; the
stack and the caller reach the handler in the call's context (:class:`CallContext`).
The protocol's v1.0 methods are served (``SendMessage``, ``SendStreamingMessage``,
``GetTask``, ``SubscribeToTask``), and v0.3's names (``message/send``,
``message/stream``, ``tasks/get``, ``tasks/resubscribe``) through the SDK's adapter.

What each call does, in the stack's terms (:mod:`.a2a`):

- **send** puts the message in as an input through :meth:`~.inputs.Inputs.put`, the one
  way every input goes in (the stack's input policy, its rate, the wake-up, the
  delivery id that makes a retried message find its first task instead of sending it
  twice); then it waits, at most :data:`SEND_WAIT_SECONDS`, for the tick that reads it
  to finish, unless the caller asked to return at once — a task still ``submitted`` or
  ``working`` is then followed with ``GetTask`` or ``SubscribeToTask``.
- **stream** sends the same way, then follows the task: the task as sent, a status
  update each time its state moves, the tick's artifacts and the final status when the
  tick ends (or after :data:`STREAM_SECONDS`; subscribe again to go on, until it ended).
- **get** reads where the input stands from Redis: its outcome, the tick's history
  entry and the tick's artifacts (nothing is stored for A2A but the delivery id).

Following a task wakes on each tick the stack finishes (its history stream, through
the API's :class:`~.tailing.StreamHub`: one blocking read for all followers), and
reads again at least every :data:`POLL_SECONDS` (a step reading the input leaves no
history entry; that is when the task turns ``working``).

Refusals are JSON-RPC errors, with the inputs route's status and code in their data:
an agent not in the team, content over ``spec.inputs.maxBytes`` or a part that is not
text are invalid parameters; a stopped stack, one not yet taken on, or one over its
rate (``retry-after`` in the data) are failed preconditions. Cancelling a task, push
notifications and task lists are not supported: an input once sent stays sent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import (
    A2AError,
    ExtendedAgentCardNotConfiguredError,
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from prometheus_client import Counter
from starlette.requests import Request

from agentstack_api import a2a
from agentstack_api.auth import User
from agentstack_api.errors import ApiError
from agentstack_api.inputs import Inputs, check_size, spec_of
from agentstack_api.tailing import DroppedError, StreamHub
from agentstack_api.views import stack_reader, stack_ref
from agentstack_core.kube.manifests import ObjectMeta
from agentstack_core.protocol import RedisClient
from agentstack_core.retention import INPUTS_MAXLEN

SEND_WAIT_SECONDS = 30.0
"""How long ``SendMessage`` waits for the tick that reads the message to finish before
it answers with the task as it stands (a tick of a real model may take longer)."""
STREAM_SECONDS = 600.0
"""How long one ``SendStreamingMessage`` or ``SubscribeToTask`` follows a task."""
POLL_SECONDS = 1.0
"""How often a followed task is read again when no tick finishes."""
MESSAGES = Counter(
    "agentstack_api_a2a_messages_total",
    "A2A messages sent to stacks, by outcome (Accepted, Duplicate, Invalid, Refused).",
    ["outcome"],
)
CALL = "agentstack"
"""The key of the call's :class:`StackCall` in the SDK's call context."""


@dataclass(frozen=True)
class StackCall:
    """Who calls which stack: resolved and authorised by the route before dispatch."""

    stack: dict[str, Any]
    caller: User


class CallContext(DefaultServerCallContextBuilder):
    """The SDK's call context, with the route's :class:`StackCall` (``request.state``)."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state[CALL] = getattr(request.state, "a2a_call", None)
        return context


def protocol_error(exc: ApiError) -> A2AError:
    """An input refused by :class:`~.inputs.Inputs` as a JSON-RPC error: the caller's
    mistake (400, 404, 413) is an invalid parameter, the stack's state (409, 429) a
    failed precondition; the status, code and ``Retry-After`` are in the data."""
    data = {"status": str(exc.status), "code": exc.code}
    data |= {name.lower(): value for name, value in exc.headers.items()}
    kind = InvalidParamsError if exc.status in (400, 404, 413) else UnsupportedOperationError
    return kind(exc.message, data=data)


def _call(context: ServerCallContext) -> StackCall:
    call = context.state.get(CALL)
    if not isinstance(call, StackCall):  # only a route that authorised the call sets it
        raise UnsupportedOperationError("no stack resolved for this call")
    return call


def context_id(stack: dict[str, Any]) -> str:
    """The A2A context of a stack's tasks: the stack itself (its uid)."""
    return ObjectMeta.of(stack).uid or str(stack_ref(stack))


class StackAgents(RequestHandler):
    """Every stack's A2A requests, answered from its inputs and its ticks."""

    def __init__(
        self,
        inputs: Inputs,
        redis: RedisClient,
        hub: StreamHub,
        *,
        public_url: str = "",
        send_wait_seconds: float = SEND_WAIT_SECONDS,
        stream_seconds: float = STREAM_SECONDS,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.inputs = inputs
        self.redis = redis
        self.hub = hub
        self.public_url = public_url.rstrip("/")
        """The API's URL as callers reach it, for the cards (empty: each request's)."""
        self.send_wait_seconds = send_wait_seconds
        self.stream_seconds = stream_seconds
        self.poll_seconds = poll_seconds
        self.dispatcher = JsonRpcDispatcher(
            self, context_builder=CallContext(), enable_v0_3_compat=True
        )

    def card(self, stack: dict[str, Any], url: str) -> AgentCard:
        """The stack's agent card, its endpoint at ``url`` (409 for an invalid spec)."""
        return a2a.agent_card(stack_ref(stack).name, spec_of(stack), url)

    # -- inputs and where they stand ------------------------------------------------------

    async def _send(self, call: StackCall, message: Message) -> int:
        """The number of the input ``message`` is: sent now, or before under its id."""
        try:
            delivery = a2a.delivery(message)
            text = a2a.content(message)
            agent = a2a.target_agent(message)
        except A2AError:
            MESSAGES.labels("Invalid").inc()
            raise
        try:
            spec = spec_of(call.stack)
            check_size(call.stack, spec, text)
            accepted = await self.inputs.put(
                call.stack,
                spec,
                agent=agent,
                sender=call.caller.name,
                content=text,
                delivery=delivery,
            )
        except ApiError as exc:
            if exc.code == "DuplicateDelivery":
                first = await stack_reader(self.redis, call.stack).input_of_delivery(delivery)
                if first is not None:
                    MESSAGES.labels("Duplicate").inc()
                    return first.number
            MESSAGES.labels("Refused").inc()
            raise protocol_error(exc) from exc
        MESSAGES.labels("Accepted").inc()
        return accepted.number

    async def _progress(self, stack: dict[str, Any], number: int) -> a2a.Progress:
        reader = stack_reader(self.redis, stack)
        outcome = (await reader.input_outcomes([number])).get(number)
        if outcome is None:
            return a2a.Progress(number)
        tick = await reader.finished_tick(outcome.tick_id, since=outcome.at)
        if tick is None:
            return a2a.Progress(number, outcome)
        made = sorted(
            (
                (name, record)
                for name, record in (await reader.artifacts()).items()
                if record.tick_id == outcome.tick_id
            ),
            key=lambda item: item[0],
        )
        return a2a.Progress(number, outcome, tick, tuple(made))

    async def _existing(self, stack: dict[str, Any], ident: str) -> int:
        """The number of the input task ``ident`` is, if the inputs log still keeps it."""
        number = a2a.input_number(ident)
        sent = await stack_reader(self.redis, stack).inputs_sent()
        if number is None or not sent - INPUTS_MAXLEN < number <= sent:
            raise TaskNotFoundError(f"no task {ident!r} in {stack_ref(stack)}")
        return number

    async def _follow(
        self, stack: dict[str, Any], number: int, seconds: float
    ) -> AsyncIterator[a2a.Progress]:
        """Where the input stands, each time that changes, until its tick ended or
        ``seconds`` passed (the first one at once)."""
        key = stack_reader(self.redis, stack).keys.history
        tail = await self.hub.follow(key, "$")  # before reading: no finish slips between
        deadline = time.monotonic() + seconds
        last = None
        try:
            while True:
                progress = await self._progress(stack, number)
                if progress.state != last:
                    last = progress.state
                    yield progress
                left = deadline - time.monotonic()
                if progress.state in a2a.TERMINAL or left <= 0:
                    return
                try:
                    await tail.next(min(self.poll_seconds, left))
                except DroppedError:
                    tail.close()
                    tail = await self.hub.follow(key, "$")
        finally:
            tail.close()

    async def _events(self, stack: dict[str, Any], number: int) -> AsyncGenerator[Event]:
        """The task, then its status updates; the tick's artifacts before the last one."""
        context = context_id(stack)
        ident = a2a.task_id(number)
        last = None
        async for progress in self._follow(stack, number, self.stream_seconds):
            if last is None:
                last = progress
                yield a2a.task(progress, context)
                continue
            if progress.state in a2a.TERMINAL and last.outcome is None:
                # Read and finished between two looks: it was worked on all the same.
                working = a2a.Progress(number, progress.outcome)
                yield TaskStatusUpdateEvent(
                    task_id=ident, context_id=context, status=a2a.status(working, ident, context)
                )
            last = progress
            if progress.state in a2a.TERMINAL:
                for name, record in progress.artifacts:
                    yield TaskArtifactUpdateEvent(
                        task_id=ident,
                        context_id=context,
                        artifact=a2a.artifact(name, record),
                        last_chunk=True,
                    )
            yield TaskStatusUpdateEvent(
                task_id=ident, context_id=context, status=a2a.status(progress, ident, context)
            )

    # -- the protocol -------------------------------------------------------------------

    async def on_message_send(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> Task | Message:
        call = _call(context)
        number = await self._send(call, params.message)
        seconds = 0.0 if params.configuration.return_immediately else self.send_wait_seconds
        last = a2a.Progress(number)
        async for progress in self._follow(call.stack, number, seconds):
            last = progress
        return a2a.task(last, context_id(call.stack))

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        call = _call(context)
        number = await self._send(call, params.message)
        async for event in self._events(call.stack, number):
            yield event

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task | None:
        stack = _call(context).stack
        number = await self._existing(stack, params.id)
        return a2a.task(await self._progress(stack, number), context_id(stack))

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        stack = _call(context).stack
        number = await self._existing(stack, params.id)
        state = (await self._progress(stack, number)).state
        if state in a2a.TERMINAL:  # as the SDK's own handler: nothing more will come
            raise UnsupportedOperationError(
                f"task {params.id} has ended ({TaskState.Name(state)}); GetTask reads it"
            )
        async for event in self._events(stack, number):
            yield event

    async def on_cancel_task(
        self, params: CancelTaskRequest, context: ServerCallContext
    ) -> Task | None:
        await self._existing(_call(context).stack, params.id)
        raise TaskNotCancelableError("an input once sent stays sent: its agent reads it")

    async def on_list_tasks(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        raise UnsupportedOperationError("tasks are not listed; GET …/inputs lists the inputs")

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        raise PushNotificationNotSupportedError

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        raise ExtendedAgentCardNotConfiguredError
