"""A scripted, OpenAI-compatible chat-completions server on loopback, for tests and benchmarks.

The suite may not reach the network, yet the runner must be tested through the *real*
``groq`` and ``openai`` SDKs: their request building, response parsing, error classes,
``Retry-After`` handling and timeouts are exactly what a mock of our own client code would
skip. :class:`FakeLLMServer` stands in for both providers on ``127.0.0.1``:

- ``groq.AsyncGroq(base_url=server.groq_base_url)`` posts to
  ``/openai/v1/chat/completions``, ``openai.AsyncOpenAI(base_url=server.openai_base_url)``
  to ``/v1/chat/completions``; any ``POST`` path ending in ``/chat/completions`` is served,
  and the ``/openai/`` prefix tells which provider a request came from;
- tests script the answers with rules (:meth:`FakeLLMServer.add_rule`): a match on
  provider, model and request headers, and a sequence of behaviours (:class:`Reply`,
  :class:`Fail`, :class:`Delay`, :class:`Held`, :class:`Hang`) consumed one per
  matching request;
  whatever no rule claims goes to a default responder;
- ``POST …/embeddings`` (``/v1/embeddings``, ``/openai/v1/embeddings``) answers with
  deterministic embeddings (:func:`hashed_embedding`: a hashed bag of words, so texts
  that share words are near), as floats or base64 as the request asks; rules that name
  ``endpoint="embeddings"`` script these requests (a :class:`Reply` among their
  behaviours answers with the embeddings, the others fail or wait as for chat);
- every request is recorded (:class:`RecordedRequest`, with the secret headers redacted)
  and :meth:`FakeLLMServer.wait_for_requests` lets a test wait for traffic instead of
  sleeping;
- ``latency=(low, high)`` delays every answer by a seeded uniform random time, so that
  benchmarks see LLM-like response times without an LLM.

The server runs ``aiohttp.web`` on its own event loop in a daemon thread, so sync tests
and async tests (whose loop the server must never share or block) use it alike. Stopping
it cancels answers still waiting (a :class:`Delay`, :class:`Held` or :class:`Hang`,
simulated latency): their clients see the connection close, as they would if the real
provider went away.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import itertools
import json
import logging
import math
import random
import re
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from aiohttp import web

from agentstack_devkit.processes import LOOPBACK, DevEnvError, Service, free_port

Provider = Literal["groq", "openai"]
Endpoint = Literal["chat", "embeddings"]

DEFAULT_CONTENT = '{"actions": []}'
"""What the default responder answers: a valid, empty agent decision."""
EMBEDDING_DIMENSIONS = 64
"""The length of an embedding when the request does not ask for one (``dimensions``)."""
_WORD = re.compile(r"[a-z0-9]+")

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
HANG_CAP = 3600.0
"""How long a :class:`Hang` (or a :class:`Held` never released) waits at most before
answering 504, should nobody stop it."""
HELD_POLL_SECONDS = 0.01
"""How often a :class:`Held` answer looks whether it was released."""

REDACTED = "<redacted>"
_SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key"})
_GROQ_PREFIX = "/openai/"
_BIND_ATTEMPTS = 3

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_exceeded",
}

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedRequest:
    """One request (chat completions or embeddings) as the server received it.

    ``headers`` has lower-cased names, and secret headers (``authorization``,
    ``api-key``, ``x-api-key``) hold :data:`REDACTED` instead of their value: a recording
    says *that* a key was sent, never which. ``status`` is the HTTP status of the answer,
    ``None`` while it is pending or when none was sent (the client or the server went away
    first). A request whose body is not a valid chat-completions body is recorded too, with
    what could be read of it (``body`` is ``{}`` when it was not a JSON object).
    """

    provider: Provider
    path: str
    model: str
    messages: list[dict[str, Any]]
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float
    status: int | None = None
    credential: str | None = None
    """:func:`credential_digest` of the ``Authorization`` header: which key was sent,
    comparable in tests, without keeping the key."""

    @property
    def endpoint(self) -> Endpoint:
        return "embeddings" if self.path.endswith("/embeddings") else "chat"


Responder = Callable[[RecordedRequest], str]
"""Computes a reply's content from the request it answers."""


@dataclass(frozen=True)
class Reply:
    """Answer 200 with ``content`` (or what ``content(request)`` returns) as the message."""

    content: str | Responder
    prompt_tokens: int = 10
    completion_tokens: int = 5
    worst_case: bool = False
    """Report the most the request could have used instead: a prompt token per byte of
    its messages and ``max_tokens`` completion tokens — a provider at its dearest, for
    tests of the budgets."""
    estimated: bool = False
    """Report what the request and the answer would cost at four characters a token
    (the estimate the offline provider counts with), instead of the fixed counts: for
    benchmarks whose token figures must follow the prompts' sizes."""


@dataclass(frozen=True)
class Fail:
    """Answer ``status`` with an OpenAI-style error body, and ``Retry-After`` when given."""

    status: int
    message: str = "simulated failure"
    retry_after: float | None = None

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError(f"Fail status must be an HTTP error (400-599), not {self.status}")


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds``, then behave as ``then``: makes a client with a shorter timeout give up."""

    seconds: float
    then: Reply | Fail

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"Delay seconds must not be negative, not {self.seconds}")


@dataclass(frozen=True)
class Held:
    """Behave as ``then`` once ``release`` is set (by the test, from any thread).

    A call that lasts exactly until the test has seen what it waits for — a renewal, a
    heartbeat — however slow the machine, where a :class:`Delay` would have to guess.
    """

    release: threading.Event
    then: Reply | Fail


@dataclass(frozen=True)
class Hang:
    """Never answer: the connection stays open until the server stops (or :data:`HANG_CAP`).

    Simulates an LLM call that is stuck, e.g. while the runner process making it is killed.
    """


@dataclass(frozen=True)
class Garbage:
    """Answer 200 with a body that is not a completion: ``body`` as it is (malformed
    JSON, an HTML error page), or — with ``truncate`` — a valid completion cut off after
    that many bytes while ``Content-Length`` promises the whole (a proxy that died)."""

    body: str = '{"id": "chatcmpl-broken", "choices": [{"message": '
    truncate: int | None = None


Behaviour = Reply | Fail | Delay | Held | Hang | Garbage


@dataclass
class _Rule:
    """A scripted rule; mutable, and only touched under the server's lock."""

    behaviours: tuple[Behaviour, ...]
    provider: Provider | None
    model: str | None
    headers: dict[str, str]
    repeat_last: bool
    endpoint: Endpoint = "chat"
    used: int = 0

    def take(self, request: RecordedRequest) -> Behaviour | None:
        """The next behaviour if this rule matches ``request`` and is not used up."""
        if request.endpoint != self.endpoint:
            return None
        if self.provider is not None and request.provider != self.provider:
            return None
        if self.model is not None and request.model != self.model:
            return None
        if any(request.headers.get(name) != value for name, value in self.headers.items()):
            return None
        if self.used < len(self.behaviours):
            self.used += 1
            return self.behaviours[self.used - 1]
        return self.behaviours[-1] if self.repeat_last else None


@dataclass
class _Exchange:
    """A recorded request and, once answered, its status (set under the server's lock)."""

    request: RecordedRequest
    status: int | None = None


def _default_responder(request: RecordedRequest) -> str:
    return DEFAULT_CONTENT


def _error_response(status: int, message: str, *, retry_after: float | None = None) -> web.Response:
    """An error in the shape both SDKs parse into their exception's ``body``."""
    error_type = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error")
    headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
    return web.json_response(
        {"error": {"message": message, "type": error_type, "param": None, "code": error_type}},
        status=status,
        headers=headers,
    )


def credential_digest(authorization: str) -> str:
    """A short digest of an ``Authorization`` value, e.g. ``"Bearer sk-…"``."""
    return hashlib.sha256(authorization.encode()).hexdigest()[:16]


def _recorded_headers(headers: Mapping[str, str]) -> dict[str, str]:
    recorded: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        shown = REDACTED if key in _SECRET_HEADERS else value
        recorded[key] = f"{recorded[key]}, {shown}" if key in recorded else shown
    return recorded


def _parse_body(raw: bytes, endpoint: Endpoint) -> tuple[dict[str, Any], str | None]:
    """The request body as a dict (``{}`` if it is not one) and what is wrong with it,
    as a chat completions or an embeddings request."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        return {}, f"request body is not valid JSON: {exc}"
    if not isinstance(body, dict):
        return {}, "request body must be a JSON object"
    if not isinstance(body.get("model"), str):
        return body, "'model' is required and must be a string"
    return body, (_embeddings_problem if endpoint == "embeddings" else _chat_problem)(body)


def _chat_problem(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("messages"), list):
        return "'messages' is required and must be a list"
    if body.get("stream"):
        return "stream=true is not supported by FakeLLMServer"
    return None


def _embeddings_problem(body: dict[str, Any]) -> str | None:
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return "'input' must be a string or a non-empty list of strings"
    if not all(texts):
        return "'input' must not contain an empty string"
    dimensions = body.get("dimensions", EMBEDDING_DIMENSIONS)
    if not isinstance(dimensions, int) or not 1 <= dimensions <= 8192:
        return "'dimensions' must be an integer from 1 to 8192"
    return None


def hashed_embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit vector of ``text``: each lower-cased word adds ±1 at a place
    its hash picks (feature hashing), so texts that share words have a high cosine."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        index = int.from_bytes(digest[:4], "little") % dimensions
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [value / norm for value in vector]


def _embeddings_response(recorded: RecordedRequest) -> web.Response:
    texts = recorded.body["input"]
    texts = [texts] if isinstance(texts, str) else texts
    dimensions = int(recorded.body.get("dimensions", EMBEDDING_DIMENSIONS))
    base64_wanted = recorded.body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = hashed_embedding(text, dimensions)
        embedding: Any = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            if base64_wanted
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(max(1, len(text) // 4) for text in texts)
    return web.json_response(
        {
            "object": "list",
            "data": data,
            "model": recorded.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


class FakeLLMServer(Service):
    """The scripted chat-completions server; use as a context manager or start()/stop().

    Rules, recordings and the default responder may be used from any thread while the
    server runs. ``latency=(low, high)`` waits ``random.uniform(low, high)`` seconds before
    every scripted or default answer (drawn from ``random.Random(seed)``), on top of any
    :class:`Delay`; a request with an invalid body is answered 400 at once.
    """

    def __init__(
        self,
        *,
        default: Responder = _default_responder,
        latency: tuple[float, float] | None = None,
        seed: int | None = None,
        host: str = LOOPBACK,
    ) -> None:
        """``host``: the address to listen on — loopback, or the dev node's bridge
        address so that pods can reach it."""
        if latency is not None and not 0 <= latency[0] <= latency[1]:
            raise ValueError(f"latency must be (low, high) with 0 <= low <= high, not {latency}")
        self.port = 0
        self.host = host
        self._default = Reply(default)
        self._latency = latency
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._received = threading.Condition(self._lock)
        self._rules: list[_Rule] = []
        self._accepted: set[str] | None = None
        """Digests of the only keys accepted (:meth:`accept_keys`); ``None``: any."""
        self._exchanges: list[_Exchange] = []
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._waiting: set[asyncio.Task[Any]] = set()

    # -- addresses ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``openai.OpenAI``/``AsyncOpenAI``."""
        return f"{self.url}/v1"

    @property
    def groq_base_url(self) -> str:
        """``base_url`` for ``groq.Groq``/``AsyncGroq`` (the SDK appends ``/openai/v1``)."""
        return self.url

    # -- scripting and recordings (any thread) -----------------------------------------

    def add_rule(
        self,
        *behaviours: Behaviour,
        provider: Provider | None = None,
        model: str | None = None,
        headers: Mapping[str, str] | None = None,
        repeat_last: bool = False,
        endpoint: Endpoint = "chat",
    ) -> None:
        """Answer matching requests with ``behaviours``, one per request, in order.

        A request matches when every given criterion holds: its endpoint (chat
        completions unless ``endpoint="embeddings"``), its provider, its model, and
        each of ``headers`` (names case-insensitive, values exact). Once the behaviours are
        used up the rule no longer matches, unless ``repeat_last``. Rules are tried in the
        order they were added; the first that matches answers.
        """
        if not behaviours:
            raise ValueError("a rule needs at least one behaviour")
        rule = _Rule(
            behaviours=behaviours,
            provider=provider,
            model=model,
            headers={name.lower(): value for name, value in (headers or {}).items()},
            repeat_last=repeat_last,
            endpoint=endpoint,
        )
        with self._lock:
            self._rules.append(rule)

    def accept_keys(self, *keys: str) -> None:
        """Answer 401 to every request whose bearer key is none of ``keys`` (a provider
        that rotated its keys); no keys: accept any again."""
        accepted = {credential_digest(f"Bearer {key}") for key in keys}
        with self._lock:
            self._accepted = accepted or None

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received since the start (or the last :meth:`clear`), oldest first."""
        with self._lock:
            return self._snapshot()

    def clear(self) -> None:
        """Forget the recorded requests (rules stay)."""
        with self._lock:
            self._exchanges.clear()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests were received; return them all.

        Counts from the start or the last :meth:`clear`. Raises :class:`DevEnvError`
        after ``timeout`` seconds, saying what did arrive.
        """
        with self._received:
            if not self._received.wait_for(lambda: len(self._exchanges) >= count, timeout):
                seen = [f"{r.provider} {r.model!r} {r.path}" for r in self._snapshot()]
                raise DevEnvError(
                    f"timed out after {timeout:g}s waiting for {count} LLM request(s) at "
                    f"{self.url}; received {len(seen)}: {seen}"
                )
            return self._snapshot()

    def _snapshot(self) -> list[RecordedRequest]:
        return [replace(exchange.request, status=exchange.status) for exchange in self._exchanges]

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start serving in a background thread; return once the port accepts connections."""
        if self._thread is not None:
            raise DevEnvError("FakeLLMServer was already started")
        self._loop = asyncio.new_event_loop()
        self._stop_requested = asyncio.Event()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._loop, ready), name="fakellm", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout):
            self.stop()
            raise DevEnvError(f"FakeLLMServer did not start serving within {timeout:g}s")
        if self._startup_error is not None:
            error = self._startup_error
            self.stop()  # joins the thread, which has ended
            raise DevEnvError(f"FakeLLMServer could not start: {error}") from error

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop serving, dropping answers still waiting, and join the thread."""
        thread, loop, stop_requested = self._thread, self._loop, self._stop_requested
        if thread is None or loop is None or stop_requested is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended (failed start)
            loop.call_soon_threadsafe(stop_requested.set)
        thread.join(timeout)
        if thread.is_alive():
            raise DevEnvError(f"FakeLLMServer did not stop within {timeout:g}s")
        self._thread = self._loop = self._stop_requested = None
        self._startup_error = None

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:
            if ready.is_set():  # start() has returned: nobody else will see this
                _log.exception("FakeLLMServer stopped with an error")
            else:  # start() waits on `ready` and raises this
                self._startup_error = exc
                ready.set()
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        assert self._stop_requested is not None
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        # handler_cancellation: an answer whose client went away (timed out) is not sent.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=STOP_TIMEOUT / 2
        )
        await runner.setup()
        try:
            self.port = await self._bind(runner)
            ready.set()
            await self._stop_requested.wait()
            for task in list(self._waiting):
                task.cancel()
        finally:
            await runner.cleanup()

    async def _bind(self, runner: web.AppRunner) -> int:
        """Listen on a free port of ``host``, trying again if another process takes it first."""
        attempt = 1
        while True:
            port = free_port(self.host)
            try:
                await web.TCPSite(runner, self.host, port).start()
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == _BIND_ATTEMPTS:
                    raise
                attempt += 1
            else:
                return port

    # -- serving (the server's event loop) ---------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith(("/chat/completions", "/embeddings")):
            if request.method != "POST":
                return _error_response(405, f"use POST for {request.path}")
            return await self._chat_completions(request)
        if request.path.endswith("/models") and request.method == "GET":
            return web.json_response({"object": "list", "data": []})
        return _error_response(404, f"no route for {request.method} {request.path}")

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        """A chat completion or embeddings request: recorded, then answered as the first
        rule that claims it (or the default) says."""
        endpoint: Endpoint = "embeddings" if request.path.endswith("/embeddings") else "chat"
        body, problem = _parse_body(await request.read(), endpoint)
        model, messages = body.get("model"), body.get("messages")
        recorded = RecordedRequest(
            provider="groq" if request.path.startswith(_GROQ_PREFIX) else "openai",
            path=request.path,
            model=model if isinstance(model, str) else "",
            messages=messages if isinstance(messages, list) else [],
            headers=_recorded_headers(request.headers),
            body=body,
            received_at=time.monotonic(),
            credential=(
                credential_digest(request.headers["Authorization"])
                if "Authorization" in request.headers
                else None
            ),
        )
        exchange = _Exchange(recorded)
        with self._received:
            self._exchanges.append(exchange)
            behaviour = self._pick(recorded) if problem is None else None
            self._received.notify_all()
        response: web.StreamResponse
        if behaviour is None:
            response = _error_response(400, str(problem))
        else:
            response = await self._behave(request, recorded, behaviour)
        with self._lock:
            exchange.status = response.status
        return response

    def _pick(self, recorded: RecordedRequest) -> Behaviour:
        """The first matching rule's next behaviour, else the default; holds the lock.
        A key :meth:`accept_keys` does not accept is refused before any rule."""
        if self._accepted is not None and recorded.credential not in self._accepted:
            return Fail(401, "Incorrect API key provided")
        for rule in self._rules:
            behaviour = rule.take(recorded)
            if behaviour is not None:
                return behaviour
        return self._default

    async def _behave(
        self, request: web.Request, recorded: RecordedRequest, behaviour: Behaviour
    ) -> web.StreamResponse:
        if self._latency is not None:
            await self._wait(self._random.uniform(*self._latency))
        if isinstance(behaviour, Delay):
            await self._wait(behaviour.seconds)
            behaviour = behaviour.then
        if isinstance(behaviour, Held):
            deadline = time.monotonic() + HANG_CAP
            while not behaviour.release.is_set():
                if time.monotonic() >= deadline:
                    return _error_response(504, "FakeLLMServer: Held() was never released")
                await self._wait(HELD_POLL_SECONDS)
            behaviour = behaviour.then
        if isinstance(behaviour, Hang):
            await self._wait(HANG_CAP)
            return _error_response(504, f"FakeLLMServer: Hang() reached its cap of {HANG_CAP:g}s")
        if isinstance(behaviour, Fail):
            return _error_response(
                behaviour.status, behaviour.message, retry_after=behaviour.retry_after
            )
        if isinstance(behaviour, Garbage):
            return await self._garbage(request, recorded, behaviour)
        if recorded.endpoint == "embeddings":
            return _embeddings_response(recorded)
        return self._completion(recorded, behaviour)

    async def _garbage(
        self, request: web.Request, recorded: RecordedRequest, garbage: Garbage
    ) -> web.StreamResponse:
        if garbage.truncate is None:
            return web.Response(body=garbage.body.encode(), content_type="application/json")
        whole = self._completion(recorded, Reply(DEFAULT_CONTENT)).body
        assert isinstance(whole, bytes)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(whole)
        await response.prepare(request)
        await response.write(whole[: garbage.truncate])
        transport = request.transport
        if transport is not None:
            transport.close()  # the connection dies mid-body
        return response

    async def _wait(self, seconds: float) -> None:
        """Sleep, cancellable by :meth:`stop` so that it never waits for a scripted pause."""
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        try:
            await asyncio.sleep(seconds)
        finally:
            self._waiting.discard(task)

    def _completion(self, recorded: RecordedRequest, reply: Reply) -> web.Response:
        try:
            content = reply.content if isinstance(reply.content, str) else reply.content(recorded)
        except Exception as exc:
            _log.exception("FakeLLMServer: the scripted responder raised")
            return _error_response(500, f"FakeLLMServer: the scripted responder raised {exc!r}")
        completion_id = f"chatcmpl-fake-{next(self._ids)}"
        prompt_tokens, completion_tokens = reply.prompt_tokens, reply.completion_tokens
        messages = recorded.body.get("messages") or []
        if reply.worst_case:
            prompt_tokens = sum(len(str(m.get("content", "")).encode()) for m in messages)
            completion_tokens = int(recorded.body.get("max_tokens") or 0)
        elif reply.estimated:
            prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
            completion_tokens = len(content) // 4 + 1
        return web.json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": recorded.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
            headers={"x-request-id": completion_id},
        )
