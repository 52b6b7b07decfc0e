"""Provider-neutral types: one chat request, one completion, embeddings, and the error
taxonomy.

The router decides what to do by error *kind*, not by SDK exception class: a rate
limit is retried after its ``Retry-After``, a transient error is retried with back-off,
a permanent one (bad request, unknown model, bad key) moves on to the next model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from agentstack_core.reasons import StepReason

ChatMessage = dict[str, str]


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[ChatMessage]
    max_tokens: int = 1024
    temperature: float = 0.2
    timeout: float = 30.0
    json_mode: bool = True
    headers: dict[str, str] | None = None
    """Extra request headers (agent and tick ids), for tracing at proxies and in tests."""


@dataclass(frozen=True)
class Completion:
    content: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = ""
    """Why the model stopped (``stop``, ``length``…), as the provider says."""
    response_model: str = ""
    """The model that answered, as the provider names it (may carry a version)."""


class LLMError(Exception):
    """A provider call failed; subclasses say whether and when retrying makes sense."""

    retryable = False
    reason = StepReason.LLM_ERROR


class RateLimitedError(LLMError):
    retryable = True
    reason = StepReason.RATE_LIMITED

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientError(LLMError):
    """5xx, connection reset: the same call may succeed in a moment."""

    retryable = True
    reason = StepReason.SERVER_ERROR


class CallTimeoutError(TransientError):
    reason = StepReason.TIMEOUT


class PermanentError(LLMError):
    """4xx other than 429 (bad request, unknown model, rejected key): never retried."""

    reason = StepReason.REJECTED


class KeyRefusedError(PermanentError):
    """401 or 403: the provider refused the key (revoked, or rotated since it was read).
    The router reads the key again once and, if it changed, makes the call again."""


class UnavailableError(LLMError):
    """Not attempted: the provider's circuit is open, or it has no credentials."""

    reason = StepReason.UNAVAILABLE


class Provider(Protocol):
    """One LLM backend. Implementations raise only :class:`LLMError` subclasses."""

    name: str

    async def complete(self, request: ChatRequest) -> Completion: ...


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    texts: list[str]
    dimensions: int | None = None
    """Vectors this long, for models that take it (``None``: the model's own)."""
    timeout: float = 30.0
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    """One per text, in the request's order."""
    prompt_tokens: int


@runtime_checkable
class EmbeddingProvider(Protocol):
    """A backend with an embeddings endpoint. Implementations raise only
    :class:`LLMError` subclasses."""

    async def embed(self, request: EmbeddingRequest) -> Embeddings: ...
