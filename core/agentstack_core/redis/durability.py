"""Commits that must survive a failover: confirmed by replicas before anyone acts on them.

Redis replicates asynchronously: a primary acknowledges a write before any replica has
it, so when Sentinel promotes a replica after the primary died, the writes of the last
moments before the death may be gone. For most of what the processes write that is
harmless — the tick protocol is at-least-once and idempotent, and what is lost is
redone. It is not for the writes something outside Redis acts on:

- a step's commit (the next step, and the tick's finish, build on it) and a tick's
  finish (its result is published and the delivery acknowledged): lost, the tick runs
  again in effect — its model calls and tools made twice;
- the claim of an approved tool call, made just before the call: lost, the approval is
  ``Approved`` again after the failover and the call is made a second time;
- a person's decision and an input (the API answers 200): lost, the decision can be
  made again — differently — and the input is gone;
- a dispatch (the scheduler moves on): lost, the slot is never run nor recorded.

With ``REDIS_WAIT_REPLICAS`` = *n* > 0, each of those goes out in a pipeline followed by
``WAIT n timeout`` on the same connection (``WAIT`` counts the replicas that have the
connection's own writes, so it must follow them there); fewer than *n* confirmations in
``REDIS_WAIT_TIMEOUT_SECONDS`` raise :class:`~.errors.NotDurableError` and the commit
counts as not made (its writer's handling is the error's docstring). Fencing needs no
such confirmation: a lease token is compared, never trusted from memory, so a runner
whose lease a failover lost is refused by the new primary like any other.

The policy travels with the client (:func:`require`, set by
:func:`agentstack_core.connection.connect` from the settings): the code that writes
never asks which Redis it talks to. The writes that need it say so once — a script
declared ``durable=True`` (:class:`~.script.LuaScript`), the dispatch's pipeline
(:func:`agentstack_core.protocol.dispatch`) — and go through :func:`confirmed`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from agentstack_core.redis.errors import NotDurableError

Client = TypeVar("Client")

_ATTRIBUTE = "agentstack_durability"


@dataclass(frozen=True)
class Durability:
    """How many replicas must confirm a commit that matters, and how long to wait."""

    replicas: int = 0
    timeout_seconds: float = 0.5

    @property
    def required(self) -> bool:
        return self.replicas > 0

    @property
    def timeout_ms(self) -> int:
        # WAIT's 0 means "block for ever": never ask for it by rounding down.
        return max(1, round(self.timeout_seconds * 1000))


NONE = Durability()
"""No confirmation asked: a commit is made when the primary acknowledges it."""


def require(client: Client, durability: Durability) -> Client:
    """``client``, whose commits that matter need ``durability`` from now on."""
    setattr(client, _ATTRIBUTE, durability)
    return client


def durability_of(client: object) -> Durability:
    """What ``client``'s commits that matter need (:data:`NONE` unless :func:`require`d)."""
    found = getattr(client, _ATTRIBUTE, None)
    return found if isinstance(found, Durability) else NONE


async def confirmed(client: Any, what: str, queue: Callable[[Any], object]) -> list[Any]:
    """Run the commands ``queue`` adds to a pipeline, in one round trip, and return
    their replies — confirmed by the replicas the client's durability asks for
    (:class:`~.errors.NotDurableError` otherwise; ``what`` names the commit in it).

    The pipeline is not a transaction: its commands run in order on one connection, so
    the ``WAIT`` after them waits for exactly their writes (and everything before)."""
    durability = durability_of(client)
    pipe = client.pipeline(transaction=False)
    queue(pipe)
    if not durability.required:
        return list(await pipe.execute())
    pipe.execute_command("WAIT", durability.replicas, durability.timeout_ms)
    *replies, acknowledged = await pipe.execute()
    if int(acknowledged) < durability.replicas:
        raise NotDurableError(
            f"{what}: {acknowledged} of {durability.replicas} replica(s) confirmed it "
            f"within {durability.timeout_seconds:g}s"
        )
    return list(replies)
