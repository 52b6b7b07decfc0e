"""Walk an agent's model chain until one model answers, within the tick's deadline.

For each model in order (primary, then fallbacks): skip it if its provider's circuit
is open or it has no credentials; otherwise call it, retrying retryable failures per
the :class:`~.resilience.RetryPolicy` (honouring ``Retry-After``) while time remains;
on a permanent failure or when retries run out, fall back to the next model. Every
attempt is recorded, so the trace can say exactly what happened.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from opentelemetry.trace import SpanKind

from agentstack_core import tracing
from agentstack_core.reasons import StepReason
from agentstack_core.spec import ModelRef
from agentstack_runner import metrics, spans
from agentstack_runner.llm.base import (
    ChatRequest,
    Completion,
    KeyRefusedError,
    LLMError,
    Provider,
    RateLimitedError,
    UnavailableError,
)
from agentstack_runner.llm.resilience import CircuitBreaker, ConcurrencyLimiter, RetryPolicy

MIN_CALL_SECONDS = 0.5
"""Do not start a call with less time than this left before the deadline."""


class ProviderSource(Protocol):
    """Resolves a provider name to a ready provider for the stack being run."""

    async def provider(self, name: str) -> Provider: ...

    async def refresh(self, name: str) -> bool:
        """The provider refused the key: read it again (not from a cache); ``True`` if
        it changed, so that the refused call is worth making again with it."""
        ...


@dataclass(frozen=True)
class Attempt:
    model: ModelRef
    outcome: str
    """``Succeeded`` or the error reason (``RateLimited``, ``Timeout``, ``Rejected``…)."""
    seconds: float
    message: str = ""


@dataclass(frozen=True)
class Routed:
    completion: Completion
    model: ModelRef
    attempts: tuple[Attempt, ...]


class ExhaustedError(LLMError):
    """No model of the chain produced an answer."""

    reason = StepReason.LLM_UNAVAILABLE

    def __init__(self, message: str, attempts: Sequence[Attempt]) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)


@dataclass
class Router:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    limiters: dict[str, ConcurrencyLimiter] = field(default_factory=dict)
    breaker_factory: Callable[[], CircuitBreaker] = CircuitBreaker
    rng: random.Random = field(default_factory=random.Random)
    _breakers: dict[str, CircuitBreaker] = field(default_factory=dict)

    def breaker(self, provider: str) -> CircuitBreaker:
        if provider not in self._breakers:
            self._breakers[provider] = self.breaker_factory()
        return self._breakers[provider]

    async def complete(
        self,
        source: ProviderSource,
        models: Sequence[ModelRef],
        request: ChatRequest,
        *,
        deadline: float,
    ) -> Routed:
        """Answer ``request`` with the first model of ``models`` that succeeds.

        ``deadline`` is a ``time.monotonic()`` instant; the request's ``model`` and
        ``timeout`` are replaced per attempt.
        """
        attempts: list[Attempt] = []
        for index, model in enumerate(models):
            try:
                completion = await self._try_model(
                    source, model, request, deadline=deadline, attempts=attempts
                )
            except LLMError:
                if index + 1 < len(models):
                    metrics.LLM_FALLBACKS.labels(model.provider, models[index + 1].provider).inc()
                continue
            return Routed(completion, model, tuple(attempts))
        summary = "; ".join(f"{a.model}: {a.outcome} {a.message}".strip() for a in attempts)
        raise ExhaustedError(f"no model answered ({summary or 'no attempts'})", attempts)

    async def _try_model(
        self,
        source: ProviderSource,
        model: ModelRef,
        request: ChatRequest,
        *,
        deadline: float,
        attempts: list[Attempt],
    ) -> Completion:
        breaker = self.breaker(model.provider)
        permit = breaker.allow()
        if permit is None:
            attempts.append(Attempt(model, "CircuitOpen", 0.0))
            raise UnavailableError(f"{model.provider}: circuit open")
        try:
            return await self._call_with_retries(
                source, model, request, breaker, deadline=deadline, attempts=attempts
            )
        finally:
            breaker.release(permit)  # a trial that ended without a verdict frees its slot

    async def _call_with_retries(
        self,
        source: ProviderSource,
        model: ModelRef,
        request: ChatRequest,
        breaker: CircuitBreaker,
        *,
        deadline: float,
        attempts: list[Attempt],
    ) -> Completion:
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining < MIN_CALL_SECONDS:
                attempts.append(Attempt(model, StepReason.DEADLINE_EXCEEDED, 0.0))
                raise LLMError("tick deadline reached")
            started = time.monotonic()
            try:
                provider = await source.provider(model.provider)
                call = replace(request, model=model.name, timeout=min(request.timeout, remaining))
                limiter = self.limiters.get(model.provider)
                with tracing.span(
                    f"chat {model.name}",
                    kind=SpanKind.CLIENT,
                    attributes=spans.chat_attributes(model, call),
                ) as current:
                    try:
                        if limiter is None:
                            completion = await provider.complete(call)
                        else:
                            async with limiter.slot(wait_seconds=remaining):
                                completion = await provider.complete(call)
                    except LLMError as exc:
                        tracing.failed(current, exc.reason, str(exc))
                        raise
                    spans.chat_done(current, completion)
            except LLMError as exc:
                elapsed = time.monotonic() - started
                self._observe(model, exc.reason, elapsed)
                attempts.append(Attempt(model, exc.reason, elapsed, str(exc)))
                if isinstance(exc, UnavailableError):
                    raise
                if isinstance(exc, KeyRefusedError) and not refreshed:
                    # A rotated key: at most this one call is refused with the old one.
                    refreshed = True
                    if await source.refresh(model.provider):
                        continue
                retry_after = exc.retry_after if isinstance(exc, RateLimitedError) else None
                if exc.retryable:
                    # Only the provider's health counts against its circuit: a rejected
                    # request (unknown model, bad key) is one stack's problem, and must
                    # not cut off every other stack that uses the provider.
                    breaker.record_failure(open_for=retry_after)
                    metrics.LLM_BREAKER_OPEN.labels(model.provider).set(
                        1 if breaker.state == "open" else 0
                    )
                wait = self.policy.delay(attempt, retry_after, self.rng) if exc.retryable else None
                if wait is None or time.monotonic() + wait + MIN_CALL_SECONDS > deadline:
                    raise
                metrics.LLM_RETRIES.labels(model.provider, exc.reason).inc()
                await asyncio.sleep(wait)
                continue
            elapsed = time.monotonic() - started
            breaker.record_success()
            metrics.LLM_BREAKER_OPEN.labels(model.provider).set(0)
            self._observe(model, StepReason.SUCCEEDED, elapsed)
            metrics.LLM_TOKENS.labels(
                model.provider, metrics.model_label(model.name), "prompt"
            ).inc(completion.prompt_tokens)
            metrics.LLM_TOKENS.labels(
                model.provider, metrics.model_label(model.name), "completion"
            ).inc(completion.completion_tokens)
            attempts.append(Attempt(model, StepReason.SUCCEEDED, elapsed))
            return completion

    @staticmethod
    def _observe(model: ModelRef, outcome: str, seconds: float) -> None:
        name = metrics.model_label(model.name)
        metrics.LLM_REQUESTS.labels(model.provider, name, outcome).inc()
        metrics.LLM_DURATION.labels(model.provider, name, outcome).observe(seconds)
