"""Tools: what one agent is offered, and the calls it makes within a step.

A stack declares tool servers (``spec.tools.servers``: MCP servers, or A2A agents whose
skills are the tools — :mod:`.peers` says how each is listed and called; a URL,
headers from the author's Secrets, an allow-list of tool names, the agents that may
call them, a per-call timeout). For one agent's step a :class:`Toolbox`:

- **offers** the allow-listed tools of the servers that serve the agent, with each
  tool's description and input schema as the server lists them (listings are cached
  per server for :data:`LISTING_TTL_SECONDS`); a server that cannot be listed offers
  nothing and is named in :attr:`Offer.problems` (the tick reports it, the stack's
  ``ToolsDegraded`` condition says so);
- **calls** a tool only if it was offered and its arguments validate against its
  input schema (else nothing is sent); each call, connecting included, is bounded by
  the server's ``timeoutSeconds``; its text result is cut to
  :data:`MAX_RESULT_CHARS`. A call never raises: failures are results the agent reads.

Every listing and call opens its own session (the ``mcp`` SDK's, or the ``a2a-sdk``'s
client): no connection outlives the step, so a server that hangs or dies holds nothing
of the runner. Calls are made at least once in effect — a step
interrupted after a call (its runner killed) calls it again when resumed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from agentstack_core import tracing
from agentstack_core.approvals import (
    CLAIMED,
    RESULT_CHARS,
    Approval,
    ApprovalState,
    approval_id,
    forgotten,
)
from agentstack_core.keys import StackRef
from agentstack_core.protocol import RedisClient
from agentstack_core.records import ToolUse
from agentstack_core.redis.approvals import claim_approval, read_approvals
from agentstack_core.spec import AgentSpec, SecretKeyRef, StackSpec, ToolServer
from agentstack_runner import metrics, spans
from agentstack_runner.peers import PEERS

MAX_RESULT_CHARS = 4_000
"""The most of one result an agent is shown (a tool can answer megabytes)."""
MAX_TOOL_ROUNDS = 3
"""Rounds of tool calls within one step (each round: calls, then the model again)."""
MAX_CALLS_PER_ROUND = 4
LISTING_TTL_SECONDS = 60.0
UNAVAILABLE = ("timeout", "unreachable")
"""Outcomes that say the server, not the tool, failed (the stack is ToolsDegraded)."""
CALL_OK = "ok"
NOT_MADE = ("refused", "invalid", "awaiting-approval")
"""Outcomes of calls never sent to a server (not offered, arguments refused by the
tool's schema, waiting for a person): no call's duration, and no call for an eval."""
ERROR_CHARS = 300


class SecretSource(Protocol):
    async def secret_value(self, namespace: str, ref: SecretKeyRef) -> str:
        """The value of a key of a Secret in ``namespace`` (raises if unreadable)."""
        ...

    def forget(self, namespace: str, name: str) -> None:
        """Read the Secret again next time (what was read was refused)."""
        ...


@dataclass(frozen=True)
class OfferedTool:
    ref: str
    """``server/tool``: how the agent names it."""
    server: ToolServer
    name: str
    description: str
    input_schema: dict[str, Any]

    def for_prompt(self) -> dict[str, Any]:
        return {
            "name": self.ref,
            "description": self.description,
            "input_schema": self.input_schema,
        }


@dataclass(frozen=True)
class Offer:
    tools: list[OfferedTool] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Servers that could not be listed, and why (no secret values)."""


@dataclass(frozen=True)
class ToolResult:
    use: ToolUse
    text: str
    """What the agent reads: the result (cut), or why there is none."""

    def for_prompt(self) -> dict[str, Any]:
        return {"tool": self.use.tool, "outcome": self.use.outcome, "result": self.text}


class ListingCache:
    """Tool listings per server (URL and headers), shared by a runner's steps."""

    def __init__(self, ttl: float = LISTING_TTL_SECONDS) -> None:
        self.ttl = ttl
        self._listings: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    def get(self, key: str) -> list[dict[str, Any]] | None:
        found = self._listings.get(key)
        return found[1] if found and found[0] > time.monotonic() else None

    def put(self, key: str, tools: list[dict[str, Any]]) -> None:
        if len(self._listings) > 1000:
            self._listings.clear()
        self._listings[key] = (time.monotonic() + self.ttl, tools)


class Toolbox:
    """The tools of one stack as one agent may use them."""

    def __init__(
        self,
        namespace: str,
        spec: StackSpec,
        agent: AgentSpec,
        secrets: SecretSource,
        listings: ListingCache,
    ) -> None:
        self.namespace = namespace
        self.servers = [s for s in spec.tool_servers if s.serves(agent.name)]
        self.secrets = secrets
        self.listings = listings
        self.offered: dict[str, OfferedTool] = {}
        self.agent = agent.name
        self.approval_timeout = spec.approval_timeout_seconds
        self.requested: list[Approval] = []
        """Approvals asked for in this step (committed with it)."""
        self.forgotten: list[str] = []
        """Decided approvals, told long ago, that the step's commit forgets."""
        self._waiting: dict[tuple[str, str], str] = {}
        """(tool, arguments JSON) → id of this agent's approval still waiting or approved."""

    @property
    def needs_approvals(self) -> bool:
        return any(server.asks_approval for server in self.servers)

    async def settle(
        self, client: RedisClient, stack: StackRef, *, token: str, tick: str, now: float
    ) -> tuple[list[dict[str, Any]], list[Approval], list[ToolUse]]:
        """This agent's approvals that moved since it last looked: what to tell it, the
        records to commit with the step, and the calls made.

        An approved call is claimed under the stack's lease and made now (once); one
        found claimed by an earlier attempt of a step is ``Interrupted``, never made
        again; decisions and expiries are told once.
        """
        told: list[dict[str, Any]] = []
        changed: list[Approval] = []
        uses: list[ToolUse] = []
        records = await read_approvals(client, stack)
        self.forgotten = forgotten(records)
        for record in records:
            if record.agent != self.agent or record.reported:
                continue
            if record.state == ApprovalState.PENDING and not record.expired(now):
                self._waiting[(record.tool, record.arguments)] = record.id
                told.append(_told(record))
                continue
            if record.state == ApprovalState.PENDING:
                record = record.told(ApprovalState.EXPIRED)
            elif record.state == ApprovalState.APPROVED and record.tool not in self.offered:
                told.append({**_told(record), "note": "approved; its server is not reachable"})
                continue  # not claimed: a later step makes it once the server answers
            elif record.state == ApprovalState.APPROVED:
                claimed = await claim_approval(client, stack, record.id, token=token, tick=tick)
                if claimed == CLAIMED:
                    result = await self.call(
                        record.tool, orjson.loads(record.arguments), approved=True, tick=tick
                    )
                    uses.append(result.use)
                    state = (
                        ApprovalState.EXECUTED
                        if result.use.outcome in ("ok", "error")
                        else ApprovalState.INTERRUPTED
                    )
                    record = record.told(state, run_tick=tick, result=result.text[:RESULT_CHARS])
                elif claimed == ApprovalState.RUNNING:
                    record = record.told(ApprovalState.INTERRUPTED)
                else:
                    continue  # moved meanwhile (another step): the next look tells it
            elif record.state == ApprovalState.RUNNING:
                record = record.told(ApprovalState.INTERRUPTED)
            else:
                record = record.told()
            changed.append(record)
            told.append(_told(record))
        return told, changed, uses

    async def offer(self) -> Offer:
        """The tools this agent may call now (each server listed at most once a minute)."""
        offer = Offer()
        for server in self.servers:
            try:
                async with asyncio.timeout(server.timeout_seconds):
                    listed = await self._listing(server)
            except Exception as exc:
                offer.problems.append(f"{server.name}: {_reason(exc)}")
                continue
            for tool in listed:
                if tool["name"] in server.allowed_tools:
                    offered = OfferedTool(
                        ref=f"{server.name}/{tool['name']}",
                        server=server,
                        name=tool["name"],
                        description=str(tool.get("description") or "")[:1000],
                        input_schema=tool.get("input_schema") or {"type": "object"},
                    )
                    offer.tools.append(offered)
                    self.offered[offered.ref] = offered
        return offer

    async def call(
        self, ref: str, arguments: dict[str, Any], *, approved: bool = False, tick: str = ""
    ) -> ToolResult:
        """Call ``ref`` with ``arguments``; every failure is a result, never raised. A
        tool that needs approval is not called: its request is kept (to be committed
        with the step) and the result says so — unless ``approved``."""
        started = time.monotonic()
        tool = self.offered.get(ref)
        if tool is None:
            return _result(ref, "refused", started, f"{ref} is not one of the tools offered")
        problem = _invalid(tool.input_schema, arguments)
        if problem is not None:
            return _result(ref, "invalid", started, f"arguments refused, not sent: {problem}")
        if tool.server.needs_approval(tool.name) and not approved:
            return self._ask(ref, arguments, tick, started)
        with tracing.span(
            f"execute_tool {ref}", attributes=spans.tool_attributes(ref, arguments)
        ) as current:
            result = await self._send(tool, arguments, ref, started, tick)
            spans.tool_done(current, result.use.outcome, result.text)
            return result

    async def _send(
        self, tool: OfferedTool, arguments: dict[str, Any], ref: str, started: float, tick: str
    ) -> ToolResult:
        """Make the call. Its id is deterministic per tick, agent and call (as an
        approval's): a resumed step makes it under the same id, which a peer that
        deduplicates (an agentstack stack does, by A2A message id) answers once."""
        server = tool.server
        text = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS).decode()
        call_id = approval_id(tick, self.agent, ref, text) if tick else uuid.uuid4().hex
        reread = False
        while True:
            try:
                async with asyncio.timeout(server.timeout_seconds):
                    headers = await self._headers(server)
                    answer = await PEERS[server.protocol].call(
                        server, headers, tool.name, arguments, call_id=call_id
                    )
            except TimeoutError:
                waited = f"no answer within {server.timeout_seconds:g}s"
                return _result(ref, "timeout", started, waited)
            except Exception as exc:
                # A refused header (a rotated token): read its Secrets again, and make
                # the call again once if they changed — the server did not run it.
                if not reread and _key_refused(exc):
                    reread = True
                    if await self._headers_changed(server, headers):
                        continue
                return _result(ref, "unreachable", started, _reason(exc))
            return _result(ref, "error" if answer.is_error else "ok", started, answer.text)

    async def _listing(self, server: ToolServer) -> list[dict[str, Any]]:
        headers = await self._headers(server)
        key = _listing_key(server, headers)
        cached = self.listings.get(key)
        if cached is not None:
            return cached
        tools = await PEERS[server.protocol].list_tools(server, headers)
        self.listings.put(key, tools)
        return tools

    async def _headers(self, server: ToolServer) -> dict[str, str]:
        return {
            header.name: await self.secrets.secret_value(self.namespace, header.secret_ref)
            for header in server.headers
        }

    async def _headers_changed(self, server: ToolServer, sent: dict[str, str]) -> bool:
        """Read the server's header Secrets again, past the cache; whether they changed."""
        for header in server.headers:
            self.secrets.forget(self.namespace, header.secret_ref.name)
        try:
            return await self._headers(server) != sent
        except Exception:  # unreadable now: the call's own failure is what to report
            return False

    def _ask(self, ref: str, arguments: dict[str, Any], tick: str, started: float) -> ToolResult:
        text = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS).decode()
        waiting = self._waiting.get((ref, text))
        if waiting is None:
            now = time.time()
            request = Approval(
                id=approval_id(tick, self.agent, ref, text),
                agent=self.agent,
                tool=ref,
                arguments=text,
                tick_id=tick,
                requested_at=now,
                expires_at=now + self.approval_timeout,
            )
            self.requested.append(request)
            self._waiting[(ref, text)] = waiting = request.id
        return _result(
            ref,
            "awaiting-approval",
            started,
            f"not called: this tool needs a person's approval; request {waiting} is waiting. "
            "You will see the decision (and, if approved, the result) on a later step.",
        )


def _told(record: Approval) -> dict[str, Any]:
    """An approval as the asking agent sees it."""
    told = {"id": record.id, "tool": record.tool, "arguments": record.arguments}
    told["state"] = record.state
    if record.reason:
        told["reason"] = record.reason
    if record.state in (ApprovalState.EXECUTED, ApprovalState.INTERRUPTED):
        told["result"] = record.result or "(the call was interrupted; it may not have run)"
    return told


def _listing_key(server: ToolServer, headers: dict[str, str]) -> str:
    digest = hashlib.sha256(repr(sorted(headers.items())).encode()).hexdigest()[:16]
    return f"{server.protocol}|{server.url}|{digest}"


def _invalid(schema: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    try:
        error = next(Draft202012Validator(schema).iter_errors(arguments), None)
    except SchemaError as exc:
        return f"the tool's input schema is invalid: {exc.message}"
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "arguments"
    return f"{where}: {error.message}"[:ERROR_CHARS]


def _leaf(exc: BaseException) -> BaseException:
    """What failed, out of the exception groups around it (their first leaf)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _key_refused(exc: BaseException) -> bool:
    """Whether a tool server answered 401 or 403 (httpx's errors carry the response,
    the A2A client's and :class:`~agentstack_runner.peers.RefusedError` the status)."""
    exc = _leaf(exc)
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    return status in (401, 403)


def _reason(exc: BaseException) -> str:
    """What failed, for people (an exception group: its first leaf)."""
    exc = _leaf(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]


def _result(ref: str, outcome: str, started: float, text: str) -> ToolResult:
    seconds = time.monotonic() - started
    shown = text
    if len(text) > MAX_RESULT_CHARS:
        shown = text[:MAX_RESULT_CHARS] + f"\n… (cut: {len(text)} characters in all)"
    metrics.TOOL_CALLS.labels(outcome).inc()
    if outcome not in NOT_MADE:
        metrics.TOOL_DURATION.observe(seconds)
    use = ToolUse(
        tool=ref,
        outcome=outcome,
        seconds=round(seconds, 3),
        chars=len(shown),
        error="" if outcome == CALL_OK else text[:ERROR_CHARS],
    )
    return ToolResult(use, shown)
