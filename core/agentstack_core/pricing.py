"""What LLM calls cost, in dollars: the price table, the unit, and the dollar budget's bound.

Money is counted in whole **nano-dollars** (1e-9 USD) everywhere it is stored or added
(the stack's usage hash, tick results, trace entries): Redis increments integers
atomically, and sums of floats would drift. :func:`usd` turns a count into dollars for
people (status, API, metrics); nothing else converts.

Prices are USD per million tokens, input (prompt) and output (completion) apart, per
provider and model. :data:`DEFAULT_PRICES` holds the published list prices of the common
Groq and OpenAI models as of :data:`PRICES_AS_OF`; a platform overrides or extends them
with ``AGENTSTACK_PRICES`` (YAML or JSON ``{provider: {model: {input, output}}}``, the
chart's ``pricing.models``). A model the table does not know has no price: its calls cost
*unknown* — counted apart (``unpriced``), never added as zero — and a stack with a dollar
budget refuses to call it, since it could not keep the budget.

The dollar budget is kept like the token budget, before a call rather than after it: a
call may start only if its worst case fits in what is left. The worst case counts one
token per byte of the prompt (byte-level BPE tokenizers, which these providers use,
never produce more tokens than bytes) plus a margin for the chat template, and the
answer at most ``max_tokens`` long; :func:`affordable_output` lowers ``max_tokens`` until
that fits, or says no call fits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from agentstack_core.spec import ModelRef

NANOS_PER_USD = 1_000_000_000
PRICES_AS_OF = "2025-08-01"
"""The date of :data:`DEFAULT_PRICES` (the providers' pricing pages then); override
them when the providers change their prices."""

TEMPLATE_TOKENS_PER_MESSAGE = 16
"""Upper bound of the tokens a chat template adds around one message (role markers,
separators); generous on purpose, since the bound must never be below the real count."""


def usd(nanos: int) -> float:
    """``nanos`` nano-dollars as dollars."""
    return nanos / NANOS_PER_USD


def format_usd(count: int) -> str:
    """``count`` nano-dollars as a decimal string of dollars (``"0.001234"``): what status
    shows, a string as Kubernetes API conventions ask of non-integer numbers."""
    return f"{usd(count):.6f}"


def known_usd(count: int, unpriced: int) -> float | None:
    """Dollars of ``count`` nano-dollars, or ``None`` (unknown) if any of the calls they
    add up had no price: a partial sum shown as the cost would understate it."""
    return None if unpriced else usd(count)


def nanos(dollars: float) -> int:
    """``dollars`` as whole nano-dollars (a budget's limit)."""
    return math.floor(dollars * NANOS_PER_USD)


@dataclass(frozen=True)
class Price:
    """USD per million tokens of one model."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Nano-dollars of one call: a token at ``p`` USD per million is ``p * 1000`` nanos."""
        return math.ceil(prompt_tokens * self.input * 1000 + completion_tokens * self.output * 1000)


DEFAULT_PRICES: Mapping[str, Mapping[str, Price]] = {
    "groq": {
        "llama-3.3-70b-versatile": Price(0.59, 0.79),
        "llama-3.1-8b-instant": Price(0.05, 0.08),
        "meta-llama/llama-4-scout-17b-16e-instruct": Price(0.11, 0.34),
        "meta-llama/llama-4-maverick-17b-128e-instruct": Price(0.20, 0.60),
        "openai/gpt-oss-120b": Price(0.15, 0.75),
        "openai/gpt-oss-20b": Price(0.10, 0.50),
        "qwen/qwen3-32b": Price(0.29, 0.59),
        "moonshotai/kimi-k2-instruct": Price(1.00, 3.00),
    },
    "openai": {
        "gpt-4o": Price(2.50, 10.00),
        "gpt-4o-mini": Price(0.15, 0.60),
        "gpt-4.1": Price(2.00, 8.00),
        "gpt-4.1-mini": Price(0.40, 1.60),
        "gpt-4.1-nano": Price(0.10, 0.40),
        "gpt-5": Price(1.25, 10.00),
        "gpt-5-mini": Price(0.25, 2.00),
        "gpt-5-nano": Price(0.05, 0.40),
        "o4-mini": Price(1.10, 4.40),
        # embeddings (semantic recall): input only
        "text-embedding-3-small": Price(0.02, 0.0),
        "text-embedding-3-large": Price(0.13, 0.0),
        "text-embedding-ada-002": Price(0.10, 0.0),
    },
    # The offline provider runs in the runner itself: known, and free.
    "scripted": {"scripted-v1": Price(0.0, 0.0)},
}


class PriceTableError(ValueError):
    """``AGENTSTACK_PRICES`` does not parse, or a price in it is not a number ≥ 0."""


@dataclass(frozen=True)
class PriceTable:
    """Prices by provider and model; :meth:`price` is ``None`` for a model it lacks."""

    prices: Mapping[str, Mapping[str, Price]]

    def price(self, model: ModelRef) -> Price | None:
        return self.prices.get(model.provider, {}).get(model.name)

    @classmethod
    def builtin(cls) -> PriceTable:
        """The defaults alone (what a runner without ``AGENTSTACK_PRICES`` prices with)."""
        return cls.with_overrides(None)

    @classmethod
    def with_overrides(cls, text: str | None) -> PriceTable:
        """The defaults, with the models of ``text`` (YAML or JSON) added or replaced."""
        merged = {provider: dict(models) for provider, models in DEFAULT_PRICES.items()}
        for provider, models in _parse_overrides(text).items():
            merged.setdefault(provider, {}).update(models)
        return cls(merged)


def _parse_overrides(text: str | None) -> dict[str, dict[str, Price]]:
    if text is None or not text.strip():
        return {}
    try:
        raw: Any = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise PriceTableError(f"AGENTSTACK_PRICES is not YAML or JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise PriceTableError("AGENTSTACK_PRICES must map providers to {model: {input, output}}")
    parsed: dict[str, dict[str, Price]] = {}
    for provider, models in raw.items():
        if not isinstance(models, dict):
            raise PriceTableError(f"AGENTSTACK_PRICES: {provider}: expected a map of models")
        for model, price in models.items():
            where = f"AGENTSTACK_PRICES: {provider}/{model}"
            if not isinstance(price, dict) or set(price) != {"input", "output"}:
                raise PriceTableError(f"{where}: expected exactly {{input, output}}")
            values = [price["input"], price["output"]]
            if not all(
                isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in values
            ):
                raise PriceTableError(f"{where}: prices are USD per million tokens, ≥ 0")
            parsed.setdefault(str(provider), {})[str(model)] = Price(*map(float, values))
    return parsed


def prompt_bound(messages: Iterable[Mapping[str, Any]]) -> int:
    """An upper bound of the prompt tokens of ``messages``: one per byte, plus templates."""
    total = TEMPLATE_TOKENS_PER_MESSAGE
    for message in messages:
        total += TEMPLATE_TOKENS_PER_MESSAGE + len(str(message.get("content", "")).encode())
    return total


class UnpricedError(Exception):
    """A model that may answer has no price, so a dollar budget cannot be kept."""

    def __init__(self, model: ModelRef) -> None:
        super().__init__(f"{model} has no price (add it to AGENTSTACK_PRICES)")
        self.model = model


def affordable_output(
    prices: Sequence[tuple[ModelRef, Price | None]], prompt: int, left: int, wanted: int
) -> int:
    """The largest ``max_tokens`` (≤ ``wanted``) whose worst case fits in ``left`` nanos,
    whichever of ``prices`` answers; 0 when none fits. :class:`UnpricedError` if one is unknown.

    ``prompt`` is :func:`prompt_bound` of the request. The worst case of a call is the
    whole bound at the input price plus ``max_tokens`` at the output price (rounded up,
    as :meth:`Price.cost` rounds).
    """
    best = wanted
    for model, price in prices:
        if price is None:
            raise UnpricedError(model)
        room = left - price.cost(prompt, 0)
        if room < 0:
            return 0
        per_token = price.output * 1000
        if per_token * best > room:  # (a division could overflow for tiny prices)
            best = math.floor(room / per_token)

    # The quotient and the rounded-up cost of the sum may disagree by a token or two
    # either way: settle on the exact answer of the rule itself.
    def fits(tokens: int) -> bool:
        return all(p is None or p.cost(prompt, tokens) <= left for _m, p in prices)

    while best < wanted and fits(best + 1):
        best += 1
    while best > 0 and not fits(best):
        best -= 1
    return max(best, 0)
