"""The namespace's budgets, kept before each LLM call a step makes.

A stack's own budget is kept by its tick alone (one tick of a stack runs at a time). A
namespace's (an ``AgentBudget``) is shared by every stack of the namespace, on every
runner at once, so it is kept by the namespace's ledger in Redis
(:mod:`agentstack_core.redis.ledger`): before a call, the step *holds* the call's worst
case (its prompt's bound plus the longest answer it allows, at the dearest model of the
agent's chain); the ledger grants the hold only if it fits in what the window has left
counting every hold in flight, and the step *settles* it with what the call really cost
once it answered (nothing, if no model answered). Concurrent runners therefore never
spend more than a window allows; a runner that dies between the two leaves its hold to
expire, and the ledger charges it at its worst case.

A hold that does not fit is tried once more with the answer shortened to what the room
left allows (never below the step's minimum answer); a call that cannot fit even then is
not made, and its minimum cost is recorded as needed, which the operator reads to hold
the namespace's stacks until the window rolls over.

Only pool runners keep namespace budgets. A tick pod (``executor: Job``) logs in to Redis
as its namespace's own user, which may not touch the ledger — a tenant could reset it
with the same credentials — so its calls are counted by its stack's budget only (see
docs/cost.md).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from redis.exceptions import RedisError

from agentstack_core.namespacebudget import limits_window
from agentstack_core.protocol import RedisClient
from agentstack_core.redis.ledger import Held, NamespaceLedger, Refused, Stale, Unbudgeted

logger = logging.getLogger(__name__)

CACHE_SECONDS = 2.0
"""How long a runner trusts the budgets it read of a namespace before it reads them
again. A budget created meanwhile is kept from the next read on; a changed cap is read
by the ledger's scripts themselves, so it applies at once."""
HOLD_MARGIN_SECONDS = 60.0
"""How long past the tick's deadline a hold lives before the ledger charges it at its
worst case (its runner must have died: a live one settles it)."""


@dataclass(frozen=True)
class Hold:
    """A call's worst case, held in the namespace's ledger until it is settled."""

    hold_id: str
    cost: int
    tokens: int


class NamespaceGate:
    """One namespace's ledger, as the steps of a tick use it."""

    def __init__(
        self,
        ledger: NamespaceLedger,
        limits: Mapping[str, Mapping[str, str]],
        clock: Callable[[], float],
    ) -> None:
        self.ledger = ledger
        self.limits: dict[str, Mapping[str, str]] = dict(limits)
        self.clock = clock

    @property
    def namespace(self) -> str:
        return self.ledger.keys.namespace

    @property
    def caps_cost(self) -> bool:
        """Whether a budget caps dollars (then every model called must have a price)."""
        return any("maxCost" in limit for limit in self.limits.values())

    def windows(self, now: float) -> dict[str, str]:
        return {name: limits_window(limit, now) for name, limit in self.limits.items()}

    async def hold(
        self, cost: int, tokens: int, *, seconds: float, needed: bool
    ) -> Hold | Refused | None:
        """Hold ``cost`` nano-dollars and ``tokens`` for a call that may take
        ``seconds``; ``needed``: a refusal records them as what the window needs (the
        smallest call the step could make). ``None``: the namespace's budgets are gone
        since they were read; nothing is held, and the call may be made."""
        hold_id = uuid.uuid4().hex
        for _attempt in range(2):
            now = self.clock()
            answer = await self.ledger.hold(
                hold_id,
                self.windows(now),
                cost,
                tokens,
                now=now,
                ttl=seconds + HOLD_MARGIN_SECONDS,
                needed=needed,
            )
            if isinstance(answer, Held):
                return Hold(hold_id, cost, tokens)
            if isinstance(answer, Refused):
                return answer
            if isinstance(answer, Unbudgeted):
                return None
            assert isinstance(answer, Stale)
            self.limits = dict(await self.ledger.published())  # a budget came or went
        raise RedisError(f"namespace {self.namespace}: its budgets keep changing")

    async def settle(self, hold: Hold, cost: int, tokens: int) -> None:
        """Charge what the call cost in place of its hold. If Redis cannot be reached,
        the hold stays and expires, charged at its worst case: never less than spent."""
        try:
            await self.ledger.settle(hold.hold_id, cost, tokens, now=self.clock())
        except (RedisError, OSError) as exc:
            logger.warning(
                "namespace %s: a call's cost could not be settled (%s); its hold will be "
                "charged at its worst case",
                self.namespace,
                exc,
            )


class NamespaceBudgets:
    """Every namespace's published budgets, as one runner knows them (cached)."""

    def __init__(self, client: RedisClient, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        self._read: dict[str, tuple[float, dict[str, dict[str, str]]]] = {}

    async def gate(self, namespace: str) -> NamespaceGate | None:
        """The namespace's gate (``None``: it has no budget, as read at most
        :data:`CACHE_SECONDS` ago)."""
        ledger = NamespaceLedger(self.client, namespace)
        now = time.monotonic()
        cached = self._read.get(namespace)
        if cached is None or now - cached[0] > CACHE_SECONDS:
            cached = (now, await ledger.published())
            self._read[namespace] = cached
        return NamespaceGate(ledger, cached[1], self.clock) if cached[1] else None
