"""The ``groq`` and ``openai`` SDKs behind the :class:`~.base.Provider` protocol (and
:class:`~.base.EmbeddingProvider`'s, for semantic recall).

Both SDKs share one shape (``client.chat.completions.create``,
``client.embeddings.create`` and the same exception names), so one adapter serves both;
it differs only in the SDK module it is given, and maps their failures one way.
The SDKs' own retries are switched off (``max_retries=0``): the router owns retries,
so that it can honour ``Retry-After``, respect the tick's deadline and fall back to
another provider instead of retrying blindly.

Clients are cached per (base URL, key) so connections are pooled across ticks. They
send through aiohttp (the SDKs' ``DefaultAioHttpClient``) rather than their default
httpx transport, whose connection pool walks every connection (a socket check each) for
every request: with hundreds of calls in flight that walk was a third of the runner's
CPU (bench.runner_throughput, latency scenario). The API key is held only by the SDK
client; it never appears in errors or traces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from types import ModuleType
from typing import Any

import groq
import openai

from agentstack_runner.llm.base import (
    CallTimeoutError,
    ChatRequest,
    Completion,
    EmbeddingRequest,
    Embeddings,
    KeyRefusedError,
    LLMError,
    PermanentError,
    RateLimitedError,
    TransientError,
)

_SDKS: dict[str, tuple[ModuleType, str]] = {
    "groq": (groq, "AsyncGroq"),
    "openai": (openai, "AsyncOpenAI"),
}


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from LLM APIs; fall back to our own back-off


class SdkProvider:
    """A provider backed by an OpenAI-compatible SDK (``groq`` or ``openai``)."""

    def __init__(self, name: str, *, api_key: str, base_url: str | None = None) -> None:
        module, client_class = _SDKS[name]
        self.name = name
        self._sdk = module
        self._client: Any = getattr(module, client_class)(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            http_client=module.DefaultAioHttpClient(),
        )

    async def complete(self, request: ChatRequest) -> Completion:
        extra: dict[str, Any] = {}
        if request.json_mode:
            extra["response_format"] = {"type": "json_object"}
        response = await self._call(
            request.timeout,
            self._client.chat.completions.create(
                model=request.model,
                messages=request.messages,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                timeout=request.timeout,
                extra_headers=request.headers,
                **extra,
            ),
        )
        try:
            choices = response.choices or []
            content = (choices[0].message.content or "") if choices else ""
            usage = response.usage
            return Completion(
                content=str(content),
                prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                finish_reason=str((choices[0].finish_reason if choices else "") or ""),
                response_model=str(getattr(response, "model", "") or ""),
            )
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise TransientError(f"{self.name}: malformed response ({exc})") from exc

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """Vectors of ``request.texts`` from the provider's embeddings endpoint (the
        ``dimensions`` parameter sent only when set: not every model takes it)."""
        response = await self._call(
            request.timeout,
            self._client.embeddings.create(
                model=request.model,
                input=request.texts,
                timeout=request.timeout,
                extra_headers=request.headers,
                extra_body=(
                    {"dimensions": request.dimensions} if request.dimensions is not None else None
                ),
            ),
        )
        try:
            data = sorted(response.data, key=lambda item: int(item.index))
            vectors = [[float(value) for value in item.embedding] for item in data]
            tokens = int(getattr(response.usage, "prompt_tokens", 0) or 0)
        except (AttributeError, TypeError, ValueError) as exc:
            raise TransientError(f"{self.name}: malformed embeddings ({exc})") from exc
        if len(vectors) != len(request.texts):
            raise TransientError(
                f"{self.name}: {len(vectors)} embeddings for {len(request.texts)} texts"
            )
        return Embeddings(vectors, tokens)

    async def _call(self, seconds: float, call: Awaitable[Any]) -> Any:
        """``call``'s response (made with a timeout of ``seconds``), its SDK's failures
        mapped onto the error taxonomy."""
        sdk = self._sdk
        try:
            return await call
        except sdk.APITimeoutError as exc:
            raise CallTimeoutError(f"{self.name}: no answer within {seconds:g}s") from exc
        except sdk.RateLimitError as exc:
            raise RateLimitedError(
                f"{self.name}: rate limited (429)", _retry_after(exc.response.headers)
            ) from exc
        except sdk.APIStatusError as exc:
            status = exc.status_code
            message = f"{self.name}: HTTP {status}: {_short(exc.message)}"
            if status >= 500 or status in (408, 409):
                raise TransientError(message) from exc
            if status in (401, 403):
                raise KeyRefusedError(message) from exc
            raise PermanentError(message) from exc
        except sdk.APIConnectionError as exc:
            raise TransientError(f"{self.name}: connection failed") from exc
        except sdk.APIError as exc:  # response that does not parse, and the like
            raise LLMError(f"{self.name}: {_short(str(exc))}") from exc
        except Exception as exc:  # a truncated or malformed body the SDK did not wrap
            raise TransientError(
                f"{self.name}: unreadable response ({type(exc).__name__})"
            ) from exc

    async def close(self) -> None:
        await self._client.close()


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def client_key(name: str, api_key: str, base_url: str | None) -> tuple[str, str, str]:
    """Cache key of a provider client: the key enters only as a digest."""
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return name, base_url or "", digest
