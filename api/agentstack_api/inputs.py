"""Inputs sent to a stack's agents through the API, and what became of them.

An input (``POST …/stacks/{name}/inputs``) is a message from outside the team — a
person, a CI job, a webhook relay — to one agent. The route has already checked the
caller's right to ``create agentstacks/inputs`` (:meth:`~.access.StackAccess.steerable`);
here the stack's own input policy (``spec.inputs``) is applied, then one Redis script
(:func:`~agentstack_core.redis.inputs.send_input`) numbers the input, counts it against the
per-minute rate, and writes it to the agent's inbox and the stack's inputs log
together. A wake-up then asks the leading operator for a tick at once
(:mod:`agentstack_operator.waking`); if that hint were lost, the input would still be
read by the stack's next scheduled tick.

Refusals say why, and leave nothing behind: a stack that is stopped (409), not yet
taken on by the operator (409), an unknown agent (404, as for its inbox), content over
the stack's size limit (413), or over its rate (429 with ``Retry-After``). Webhook
deliveries (:mod:`.webhooks`) and A2A messages (:mod:`.a2aserver`) go in the same way
(:meth:`Inputs.put`).
"""

from __future__ import annotations

import logging
from typing import Any

from agentstack_api import models
from agentstack_api.access import StackSource
from agentstack_api.auth import User
from agentstack_api.errors import ApiError
from agentstack_api.views import stack_reader, stack_ref
from agentstack_core.forking import MIRROR_OF
from agentstack_core.keys import StackRef
from agentstack_core.kube.manifests import ObjectMeta
from agentstack_core.kube.stacks import StackManifest
from agentstack_core.protocol import RedisClient
from agentstack_core.records import InputOutcome, InputRecord
from agentstack_core.redis.errors import StackGoneError
from agentstack_core.redis.inputs import (
    DuplicateDeliveryError,
    InputRateError,
    StackStoppedError,
    UnknownAgentError,
    put_input,
)
from agentstack_core.spec import SpecError, StackSpec, parse_spec

logger = logging.getLogger(__name__)

MIRRORED = "mirror/"
"""The delivery ids of inputs a fork receives as its source's mirror."""


def spec_of(stack: dict[str, Any]) -> StackSpec:
    try:
        return parse_spec(dict(StackManifest.of(stack).spec))
    except SpecError as exc:
        raise ApiError(
            409, "InvalidSpec", f"{stack_ref(stack)} has an invalid spec, so it runs nothing: {exc}"
        ) from exc


def check_size(stack: dict[str, Any], spec: StackSpec, content: str) -> None:
    """Refuse (413) content over the stack's ``spec.inputs.maxBytes``: what a caller
    writes is refused whole (a webhook's delivery is cut to size instead, since its
    sender cannot shorten it)."""
    size = len(content.encode())
    if size > spec.inputs.max_bytes:
        raise ApiError(
            413,
            "InputTooLarge",
            f"the input is {size} bytes; {stack_ref(stack)} takes at most "
            f"{spec.inputs.max_bytes} (spec.inputs.maxBytes)",
        )


def input_entry(
    entry_id: str, fields: dict[str, str], outcome: InputOutcome | None
) -> models.InputEntry:
    """An entry of the inputs log, with what became of it (``outcome``: read, by whom)."""
    return models.from_record(
        models.InputEntry,
        InputRecord.from_fields(fields),
        id=entry_id,
        state=outcome.state if outcome else "Queued",
        readBy=outcome.agent if outcome else None,
        tickId=outcome.tick_id if outcome else None,
        readAt=outcome.at if outcome else None,
    )


class Inputs:
    """Inputs sent to stacks (``POST …/inputs``), and their log (``GET …/inputs``).

    With ``stacks`` (the API's cache), an input a stack accepts is sent on to the forks
    that mirror it (:data:`~agentstack_core.forking.MIRROR_OF`), once each: with the
    delivery id ``mirror/<source>#<number>``, which a fork refuses the second time. One
    level only — a fork's copy is not mirrored again — so annotations edited into a
    cycle cannot loop.
    """

    def __init__(self, redis: RedisClient, stacks: StackSource | None = None) -> None:
        self.redis = redis
        self.stacks = stacks

    async def send(
        self, stack: dict[str, Any], caller: User, request: models.InputRequest
    ) -> models.InputAccepted:
        spec = spec_of(stack)
        check_size(stack, spec, request.content)
        return await self.put(
            stack, spec, agent=request.agent, sender=caller.name, content=request.content
        )

    async def put(
        self,
        stack: dict[str, Any],
        spec: StackSpec,
        *,
        agent: str | None,
        sender: str,
        content: str,
        delivery: str = "",
    ) -> models.InputAccepted:
        """Put an input in ``agent``'s inbox (the first agent's when ``None``) and wake
        the stack (:func:`~agentstack_core.redis.inputs.put_input`, the one way every
        input goes in: a person's, a webhook delivery's, an A2A message's — whose
        ``delivery`` id is refused the second time), its refusals as API errors."""
        ref = stack_ref(stack)
        try:
            sent = await put_input(
                self.redis,
                ref,
                spec,
                uid=ObjectMeta.of(stack).uid,
                agent=agent,
                sender=sender,
                content=content,
                delivery=delivery,
            )
        except StackStoppedError as exc:
            raise ApiError(409, "StackStopped", str(exc)) from exc
        except UnknownAgentError as exc:
            raise ApiError(404, "NotFound", f"{exc} in {ref}") from exc
        except StackGoneError as exc:
            raise ApiError(
                409, "StackNotReady", f"the operator has not taken {ref} on yet; try again"
            ) from exc
        except DuplicateDeliveryError as exc:
            raise ApiError(
                409, "DuplicateDelivery", f"{exc}: it is not sent to {ref} again"
            ) from exc
        except InputRateError as exc:
            raise ApiError(
                429,
                "TooManyInputs",
                f"{ref} takes {spec.inputs.max_per_minute} inputs a minute "
                f"(spec.inputs.maxPerMinute); try again in {exc.retry_after:.0f}s",
                headers={"Retry-After": str(max(1, round(exc.retry_after)))},
            ) from exc
        if self.stacks is not None and not delivery.startswith(MIRRORED):
            await self._mirror(
                ref, agent=sent.agent, sender=sender, content=content, number=sent.number
            )
        return models.InputAccepted(
            number=sent.number,
            agent=sent.agent,
            sender=sender,
            messageId=sent.message_id,
            wakes=sent.wakes,
        )

    async def _mirror(
        self, source: StackRef, *, agent: str, sender: str, content: str, number: int
    ) -> None:
        """Send the input ``source`` accepted to each fork that mirrors it; a fork that
        cannot take it (stopped, no such agent, over its rate) misses it, logged."""
        assert self.stacks is not None
        wanted = str(source)
        for fork in self.stacks.items():
            if ObjectMeta.of(fork).annotations.get(MIRROR_OF) != wanted:
                continue
            try:
                await self.put(
                    fork,
                    spec_of(fork),
                    agent=agent,
                    sender=sender,
                    content=content,
                    delivery=f"{MIRRORED}{wanted}#{number}",
                )
            except ApiError as exc:
                logger.warning(
                    "input #%d of %s not mirrored to %s: %s", number, wanted, stack_ref(fork), exc
                )

    async def page(
        self, stack: dict[str, Any], *, cursor: str | None, limit: int
    ) -> models.InputPage:
        """A page of the stack's inputs, newest first, each with what became of it."""
        reader = stack_reader(self.redis, stack)
        page = await reader.page(reader.keys.inputs, cursor=cursor, limit=limit)
        numbers = [InputRecord.from_fields(fields).number for _id, fields in page.entries]
        outcomes = await reader.input_outcomes(numbers)
        return models.InputPage(
            items=[
                input_entry(entry_id, fields, outcomes.get(number))
                for (entry_id, fields), number in zip(page.entries, numbers, strict=True)
            ],
            nextCursor=page.next_cursor,
        )
