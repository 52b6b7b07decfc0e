"""The budget rule, once: when has a stack spent what its spec allows?

The runner checks it before it starts a tick (so a spent budget drops the tick) and
the operator after it folds results (so the stack stops being scheduled and says why
in its ``BudgetExceeded`` condition). Both read the same counters — the stack's usage
hash in Redis, which only the atomic finish of a tick increments — and word the
answer the same way.

Dollars are counted in nano-dollars (:mod:`agentstack_core.pricing`). A dollar budget is
spent not only at zero: once a call was refused because its worst case did not fit in
what was left, the stack is spent while less than that call needed remains — otherwise
every later tick would start only to be refused again.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentstack_core.pricing import nanos, usd
from agentstack_core.spec import Budget


@dataclass(frozen=True)
class Usage:
    """The counters of a stack's ``usage`` hash, kept by the atomic finish of a tick."""

    tokens: int = 0
    ticks: int = 0
    failures: int = 0
    """Consecutive failed ticks (a success resets it; a dropped tick leaves it)."""
    idle: int = 0
    """Consecutive successful ticks that made no progress."""
    cost: int = 0
    """Nano-dollars of the priced LLM calls (see :mod:`agentstack_core.pricing`)."""
    unpriced: int = 0
    """LLM calls of models without a price: their cost is unknown, not zero."""
    needed: int = 0
    """Nano-dollars the last call refused by the dollar budget needed at the least: the
    budget is spent while less than this is left (raising it resumes the stack)."""
    sleeps: int = 0
    """Consolidation ticks that ran (they are not counted in ``ticks``)."""

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> Usage:
        return cls(
            tokens=int(raw.get("tokens", 0)),
            ticks=int(raw.get("ticks", 0)),
            failures=int(raw.get("failures", 0)),
            idle=int(raw.get("idle", 0)),
            cost=int(raw.get("cost", 0)),
            unpriced=int(raw.get("unpriced", 0)),
            needed=int(raw.get("needed", 0)),
            sleeps=int(raw.get("sleeps", 0)),
        )


def exhausted(budget: Budget, usage: Usage) -> str | None:
    """Why ``usage`` has reached ``budget``, or ``None`` while there is budget left."""
    if budget.max_tokens is not None and usage.tokens >= budget.max_tokens:
        return f"{usage.tokens} tokens used of the budget of {budget.max_tokens}"
    if budget.max_ticks is not None and usage.ticks >= budget.max_ticks:
        return f"{usage.ticks} ticks run of the budget of {budget.max_ticks}"
    left = cost_left(budget, usage)
    if left is not None and left < max(usage.needed, 1):
        return f"${usd(usage.cost):.6f} spent of the budget of ${budget.max_cost_usd:g}"
    return None


def cost_left(budget: Budget, usage: Usage) -> int | None:
    """Nano-dollars the stack may still spend (``None``: no dollar budget)."""
    if budget.max_cost_usd is None:
        return None
    return max(0, nanos(budget.max_cost_usd) - usage.cost)
