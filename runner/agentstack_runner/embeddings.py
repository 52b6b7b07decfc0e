"""Embeddings of a stack's archive, when its spec asks for them (``spec.memory.embeddings``).

The runner asks the configured provider's embeddings endpoint (the SDK's
``embeddings.create``, resolved like chat: the stack's ``secretRef`` and ``baseURL``, the
platform's keys only for allow-listed endpoints — :mod:`.providers`) for

- the text of every item a step archives (one call per step, all its items at once),
  kept with the item as its :attr:`~agentstack_core.records.ArchiveRecord.vector`;
- the query of every recall, so that recall can rank by meaning (:mod:`.recall`).

A vector is stored as a unit vector of little-endian float32, base64: cosine similarity
is then a dot product, and a vector costs 16/3 bytes per dimension (set
``dimensions`` to bound it, for models that take it).

The step charges an embeddings call like a chat call — its tokens, and its price from
the table — and makes none when what is left of a budget could not pay its worst case
(a token per byte of the texts). An embeddings call never fails the step: an item
archived without a vector is still found lexically, a query that could not be embedded
is ranked lexically, and the trace says why. Pure but for :meth:`Embedder.embed`.
"""

from __future__ import annotations

import base64
import math
import operator
import sys
from array import array
from collections.abc import Sequence
from typing import TypeAlias

from agentstack_core.spec import EmbeddingsPolicy, ModelRef, StackSpec
from agentstack_runner.llm.base import EmbeddingProvider, EmbeddingRequest, Embeddings, LLMError
from agentstack_runner.llm.router import ProviderSource

Vector: TypeAlias = "array[float]"
"""A unit vector, float32 (``array("f")``)."""


def unit(values: Sequence[float]) -> Vector:
    """``values`` scaled to unit length (all zeros stay zeros), as float32."""
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    return array("f", (value / norm for value in values))


def encode_vector(vector: Vector) -> str:
    """``vector`` as base64 of little-endian float32 (what an archive item keeps)."""
    packed = array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def decode_vector(text: str) -> Vector:
    """A vector :func:`encode_vector` wrote (empty if ``text`` is not one)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return array("f")
    if len(raw) % 4:
        return array("f")
    vector = array("f")
    vector.frombytes(raw)
    if sys.byteorder == "big":
        vector.byteswap()
    return vector


def cosine(a: Vector, b: Vector) -> float:
    """The cosine of two unit vectors (0 if their dimensions differ: another model)."""
    if len(a) != len(b) or not a:
        return 0.0
    return float(sum(map(operator.mul, a, b)))


def worst_case_tokens(texts: Sequence[str]) -> int:
    """The most tokens embedding ``texts`` may cost: one per byte (byte-level tokenizers
    never make more), at least one per text."""
    return sum(max(1, len(text.encode())) for text in texts)


class Embedder:
    """One stack's embeddings endpoint (its ``spec.memory.embeddings``)."""

    def __init__(self, providers: ProviderSource, policy: EmbeddingsPolicy) -> None:
        self.providers = providers
        self.policy = policy
        self.model = ModelRef(policy.provider, policy.model)

    async def embed(
        self, texts: Sequence[str], *, seconds: float, headers: dict[str, str] | None = None
    ) -> Embeddings:
        """Vectors of ``texts`` (as the provider gives them) and the tokens they cost,
        within ``seconds``; :class:`~agentstack_runner.llm.base.LLMError` if the
        provider cannot."""
        provider = await self.providers.provider(self.policy.provider)
        if not isinstance(provider, EmbeddingProvider):
            raise LLMError(f"{self.policy.provider}: no embeddings endpoint")
        return await provider.embed(
            EmbeddingRequest(
                model=self.policy.model,
                texts=list(texts),
                dimensions=self.policy.dimensions,
                timeout=seconds,
                headers=headers,
            )
        )


def embedder_for(providers: ProviderSource, spec: StackSpec) -> Embedder | None:
    """The embeddings endpoint ``spec`` configures, reached through ``providers`` (the
    stack's own), or ``None``."""
    policy = spec.memory.embeddings
    return Embedder(providers, policy) if policy is not None else None
