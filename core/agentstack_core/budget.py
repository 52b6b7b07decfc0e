"""The budget rule, once: when has a stack spent what its spec allows?

The runner checks it before it starts a tick (so a spent budget drops the tick) and
the operator after it folds results (so the stack stops being scheduled and says why
in its ``BudgetExceeded`` condition). Both read the same counters — the stack's usage
hash in Redis, which only the atomic finish of a tick increments — and word the
answer the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> Usage:
        return cls(
            tokens=int(raw.get("tokens", 0)),
            ticks=int(raw.get("ticks", 0)),
            failures=int(raw.get("failures", 0)),
            idle=int(raw.get("idle", 0)),
        )


def exhausted(budget: Budget, usage: Usage) -> str | None:
    """Why ``usage`` has reached ``budget``, or ``None`` while there is budget left."""
    if budget.max_tokens is not None and usage.tokens >= budget.max_tokens:
        return f"{usage.tokens} tokens used of the budget of {budget.max_tokens}"
    if budget.max_ticks is not None and usage.ticks >= budget.max_ticks:
        return f"{usage.ticks} ticks run of the budget of {budget.max_ticks}"
    return None
