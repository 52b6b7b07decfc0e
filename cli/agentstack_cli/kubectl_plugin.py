"""``kubectl agentstack``: steer stacks from the command line (console script
``kubectl-agentstack``, which kubectl finds on the ``PATH`` as a plugin).

Every command acts with the caller's own credentials, so RBAC decides what each may
do, exactly as for ``kubectl patch``:

- ``pause``, ``resume``, ``stop`` patch ``spec.executionState`` through the API server
  (a merge patch: the same change as the README's ``kubectl patch``, audited the same);
- ``status`` reads the stack and its conditions from the API server;
- ``send`` (an input for an agent), ``inputs``, ``approvals``, ``approve`` and ``deny``
  (a tool call waiting for a person), ``trace`` (``-f`` follows it live), ``search``
  (the stack's archive: every finished task, artifact version, input, message and post),
  ``checkpoints`` (the state each recent tick left), ``rollback --to TICK`` (pause,
  restore one; ``resume`` when ready), ``fork STACK NEW`` (a shadowed copy from a
  checkpoint, with ``--set``/``--model`` changes) and ``compare A B`` (evals, tokens,
  dollars, time and failures of their recent ticks, with a bootstrap interval of each
  difference) go to the agentstack API, which holds what Redis
  knows; they need its URL (``--api`` or ``AGENTSTACK_API_URL``, e.g. after ``kubectl
  port-forward svc/…-api 8080:8080``) and send the kubeconfig's bearer token (or
  ``--token``), which the API checks with a TokenReview and a SubjectAccessReview. So
  does ``usage``: what the namespace's stacks spent by day, stack and model (a table,
  or ``--csv`` for a spreadsheet), which RBAC lets whoever may ``get`` the namespace's
  AgentBudgets read.

The namespace is ``-n``, else the kubeconfig context's, else ``default``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from agentstack_core import comparing
from agentstack_core.approvals import ApprovalState
from agentstack_core.records import ArchiveKind
from agentstack_core.resource import GROUP, PLURAL, VERSION
from agentstack_core.spec import ExecutionState

API_URL_ENV = "AGENTSTACK_API_URL"
TOKEN_ENV = "AGENTSTACK_TOKEN"  # noqa: S105 - the name of a variable, not a token
HTTP_TIMEOUT = 15.0


class PluginError(Exception):
    """What went wrong, in words for the person at the terminal (exit code 1)."""


class Session:
    """The caller's kubeconfig: an API-server client, a namespace and a bearer token."""

    def __init__(self, args: argparse.Namespace) -> None:
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=args.kubeconfig, context=args.context
            )
            contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=args.kubeconfig
            )
        except (config.ConfigException, OSError) as exc:
            raise PluginError(f"no usable kubeconfig: {exc}") from exc
        if args.context:
            active = next(c for c in contexts if c["name"] == args.context)
        self.namespace: str = (
            args.namespace or (active or {}).get("context", {}).get("namespace") or "default"
        )
        self.api_client = client.ApiClient()
        self.objects = client.CustomObjectsApi(self.api_client)
        self.args = args

    def stack(self, name: str) -> dict[str, Any]:
        try:
            found: Any = self.objects.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )
        except ApiException as exc:
            raise _kube_error(exc, f"get agentstack {self.namespace}/{name}") from exc
        stack: dict[str, Any] = found
        return stack

    def set_state(self, name: str, state: ExecutionState) -> None:
        try:
            self.objects.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                name,
                {"spec": {"executionState": state.value}},
            )
        except ApiException as exc:
            raise _kube_error(exc, f"patch agentstack {self.namespace}/{name}") from exc

    def token(self) -> str | None:
        """``--token``, ``AGENTSTACK_TOKEN``, or the kubeconfig's bearer token."""
        explicit = self.args.token or os.environ.get(TOKEN_ENV)
        if explicit:
            return str(explicit)
        header = self.api_client.configuration.get_api_key_with_prefix(
            "BearerToken", alias="authorization"
        )
        scheme, _, token = str(header).partition(" ")
        return token if scheme.lower() == "bearer" and token else None

    def api(self) -> httpx.Client:
        """A client of the agentstack API, with the caller's token."""
        url = self.args.api or os.environ.get(API_URL_ENV)
        if not url:
            raise PluginError(
                f"this command talks to the agentstack API: pass --api URL or set {API_URL_ENV} "
                "(e.g. kubectl port-forward -n NAMESPACE svc/RELEASE-agentstack-operator-api "
                "8080:8080, then --api http://127.0.0.1:8080)"
            )
        token = self.token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=HTTP_TIMEOUT)

    def stack_path(self, name: str) -> str:
        return f"/api/v1/namespaces/{self.namespace}/stacks/{name}"


def _kube_error(exc: ApiException, doing: str) -> PluginError:
    reason = {403: "forbidden by RBAC", 404: "not found"}.get(exc.status or 0, exc.reason)
    return PluginError(f"{doing}: {reason}")


def _api_answer(response: httpx.Response) -> Any:
    """The body of a 2xx answer, or :class:`PluginError` with the API's own message."""
    if response.is_success:
        return response.json()
    try:
        error = response.json()["error"]
        message = f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    retry = response.headers.get("retry-after")
    hint = f" (retry after {retry}s)" if retry else ""
    raise PluginError(f"the API answered {response.status_code}: {message}{hint}")


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


# -- commands ------------------------------------------------------------------------------


def _state_command(state: ExecutionState) -> Callable[[Session, argparse.Namespace], None]:
    def command(session: Session, args: argparse.Namespace) -> None:
        session.set_state(args.name, state)
        print(f"agentstack {session.namespace}/{args.name}: executionState={state.value}")

    return command


def _cost(state: dict[str, Any]) -> str:
    """The stack's dollars as status says them, and what they leave out."""
    dollars = f"${state.get('costUSD') or '0.000000'}"
    unpriced = int(state.get("unpricedCalls") or 0)
    return f"{dollars} (+ {unpriced} call(s) of models without a price)" if unpriced else dollars


def _wakes_on(spec: dict[str, Any]) -> list[str]:
    """What wakes the stack besides its schedule and people's inputs: its webhooks and
    its Kubernetes triggers (what each watches)."""
    found = [f"webhook {hook.get('name')}" for hook in spec.get("webhooks") or []]
    for trigger in spec.get("triggers") or []:
        if "event" in trigger:
            reasons = (trigger.get("event") or {}).get("reasons") or []
            watched = "Events" + (f" {'/'.join(reasons)}" if reasons else "")
        else:
            watched = str((trigger.get("object") or {}).get("kind"))
        found.append(f"trigger {trigger.get('name')} ({watched})")
    return found


def status(session: Session, args: argparse.Namespace) -> None:
    stack = session.stack(args.name)
    if args.output == "json":
        print(json.dumps({"spec": stack.get("spec"), "status": stack.get("status")}, indent=2))
        return
    spec, state = stack.get("spec") or {}, stack.get("status") or {}
    print(f"Stack:      {session.namespace}/{args.name}")
    print(f"State:      {spec.get('executionState', ExecutionState.RUNNING.value)}")
    print(f"Ticks:      {state.get('ticks', 0)}   Tokens: {state.get('tokensUsed', 0)}")
    print(f"Cost:       {_cost(state)}")
    last = state.get("lastTickResult")
    if last:
        print(
            f"Last tick:  {last} ({state.get('lastTickReason', '')}) at "
            f"{state.get('lastTickTime', '-')}"
        )
    schedule = spec.get("schedule") or {}
    if schedule:
        print(f"Schedule:   {schedule.get('cron', '')} ({schedule.get('timeZone', 'UTC')})")
    print(f"Next tick:  {state.get('nextTickTime', '-')}")
    wakes = _wakes_on(spec)
    if wakes:
        print(f"Wakes on:   {', '.join(wakes)}")
    print("Conditions:")
    for condition in state.get("conditions") or []:
        print(
            f"  {condition.get('type', ''):<15} {condition.get('status', ''):<6} "
            f"{condition.get('reason', ''):<20} {condition.get('message', '')}"
        )


def send(session: Session, args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"content": args.message}
    if args.agent:
        body["agent"] = args.agent
    with session.api() as http:
        accepted = _api_answer(http.post(f"{session.stack_path(args.name)}/inputs", json=body))
    wakes = "; the stack ticks for it now" if accepted["wakes"] else ""
    print(f"input #{accepted['number']} sent to {accepted['agent']} as {accepted['sender']}{wakes}")


def inputs(session: Session, args: argparse.Namespace) -> None:
    with session.api() as http:
        page = _api_answer(
            http.get(f"{session.stack_path(args.name)}/inputs", params={"limit": args.limit})
        )
    for item in reversed(page["items"]):
        read = f" by {item['readBy']} in {item['tickId']}" if item["state"] == "Read" else ""
        print(
            f"#{item['number']:<4} {_when(item['at'])} {item['sender']} -> {item['agent']}: "
            f"{item['state']}{read}"
        )


def approvals(session: Session, args: argparse.Namespace) -> None:
    with session.api() as http:
        page = _api_answer(http.get(f"{session.stack_path(args.name)}/approvals"))
    for item in page["items"]:
        decided = f" by {item['decidedBy']}" if item["decidedBy"] else ""
        print(
            f"{item['id']}  {item['state']:<11} {item['agent']} -> {item['tool']} "
            f"{item['arguments']}{decided}"
        )


def _decision(approved: bool) -> Callable[[Session, argparse.Namespace], None]:
    def command(session: Session, args: argparse.Namespace) -> None:
        body = {
            "decision": ApprovalState.APPROVED if approved else ApprovalState.DENIED,
            "reason": args.reason,
        }
        with session.api() as http:
            path = f"{session.stack_path(args.name)}/approvals/{args.approval}"
            decided = _api_answer(http.post(path, json=body))
        print(f"tool call {decided['id']}: {decided['state']} by {decided['decidedBy']}")

    return command


def _trace_line(entry: dict[str, Any]) -> str:
    actions = ", ".join(entry.get("actions") or []) or "-"
    line = (
        f"{_when(entry.get('at'))} {entry.get('tickId', '')} {entry.get('agent', ''):<12} "
        f"{entry.get('outcome', '')} {entry.get('model', '')} {entry.get('latencyMs', 0)}ms: "
        f"{actions}"
    )
    for use in entry.get("tools") or []:
        line += f" | {use['tool']} {use['outcome']} {use['seconds']}s"
    for recalled in entry.get("recalls") or []:
        line += f" | recall {recalled['query']!r}: {len(recalled['hits'])} hit(s)"
    if entry.get("error"):
        line += f" [{entry['reason']}: {entry['error']}]"
    return line


def _events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) of a Server-Sent Events stream."""
    kind, data = "message", ""
    for line in lines:
        if not line:
            if data:
                yield kind, data
            kind, data = "message", ""
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


def trace(session: Session, args: argparse.Namespace) -> None:
    path = f"{session.stack_path(args.name)}/traces"
    with session.api() as http:
        page = _api_answer(http.get(path, params={"limit": args.limit}))
        for entry in reversed(page["items"]):
            print(_trace_line(entry), flush=True)
        if not args.follow:
            return
        last = page["items"][0]["id"] if page["items"] else None
        headers = {"Last-Event-ID": last} if last else {}
        with http.stream("GET", f"{path}/stream", headers=headers, timeout=None) as stream:
            if not stream.is_success:
                stream.read()
                _api_answer(stream)
            for kind, data in _events(stream.iter_lines()):
                if kind == "trace":
                    print(_trace_line(json.loads(data)), flush=True)


SEARCH_TEXT_CHARS = 100


def search(session: Session, args: argparse.Namespace) -> None:
    params: dict[str, Any] = {"q": args.query, "limit": args.limit}
    if args.kind:
        params["kind"] = args.kind
    with session.api() as http:
        found = _api_answer(http.get(f"{session.stack_path(args.name)}/search", params=params))
    if not found["terms"]:
        raise PluginError(f"nothing to search for in {args.query!r} (only stopwords?)")
    for item in found["items"]:
        text = " ".join(item["text"].split())
        if len(text) > SEARCH_TEXT_CHARS:
            text = text[: SEARCH_TEXT_CHARS - 1] + "…"
        print(
            f"{item['id']:<16} {_when(item['at'])} {item['kind']:<8} {item['ref'] or '-':<12} "
            f"{item['agent'] or '-':<12} {item['score']:6.2f}  {text}"
        )
    print(
        f"{len(found['items'])} hit(s) for {' '.join(found['terms'])} among "
        f"{found['archived']} archived item(s)",
        file=sys.stderr,
    )


def checkpoints(session: Session, args: argparse.Namespace) -> None:
    with session.api() as http:
        kept = _api_answer(http.get(f"{session.stack_path(args.name)}/checkpoints"))
    for item in kept["items"]:
        print(f"{item['seq']:>6}  {item['tickId']}  {item['bytes']} bytes")
    print(
        f"{len(kept['items'])} checkpoint(s): the newest {kept['recent']} ticks each, then one "
        f"in {kept['every']}, at most {kept['maxBytes']} bytes",
        file=sys.stderr,
    )


def rollback(session: Session, args: argparse.Namespace) -> None:
    with session.api() as http:
        path = f"{session.stack_path(args.name)}/rollback"
        done = _api_answer(http.post(path, json={"to": args.to}))
    print(
        f"agentstack {session.namespace}/{args.name}: rolled back to {done['tickId']} "
        f"(checkpoint {done['seq']}; {done['inputsKept']} later input(s) kept unread); "
        f"executionState={done['executionState']} — kubectl agentstack resume {args.name}"
    )


def fork(session: Session, args: argparse.Namespace) -> None:
    overrides = list(args.set or [])
    if args.model:
        provider, sep, model = args.model.partition(":")
        if not sep or not provider or not model:
            raise PluginError(f"--model {args.model!r}: PROVIDER:NAME, e.g. groq:llama-3.3-70b")
        overrides.append(f'spec.llm.model={{"provider": "{provider}", "name": "{model}"}}')
    body: dict[str, Any] = {
        "name": args.new,
        "set": overrides,
        "mirror": args.mirror,
        "paused": args.paused,
    }
    if args.at:
        body["at"] = args.at
    if args.target_namespace:
        body["namespace"] = args.target_namespace
    with session.api() as http:
        made = _api_answer(http.post(f"{session.stack_path(args.name)}/fork", json=body))
    mirrored = "; it mirrors the source's inputs" if made["mirror"] else ""
    print(
        f"agentstack {made['namespace']}/{made['name']} forked from {made['forkedFrom']}: "
        f"tools wait for approval, no webhooks or triggers{mirrored}; "
        f"executionState={made['executionState']}"
    )


def _stack_arg(session: Session, text: str) -> str:
    """``NAME`` (in -n) or ``NAMESPACE/NAME`` as the API path of the stack."""
    namespace, sep, name = text.rpartition("/")
    return f"/api/v1/namespaces/{namespace if sep else session.namespace}/stacks/{name}"


def _ticks(http: httpx.Client, path: str, last: int) -> list[dict[str, Any]]:
    """The stack's newest ``last`` history entries (pages of at most 500)."""
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    while len(entries) < last:
        params: dict[str, Any] = {"limit": min(500, last - len(entries))}
        if cursor:
            params["cursor"] = cursor
        page = _api_answer(http.get(f"{path}/ticks", params=params))
        entries.extend(page["items"])
        cursor = page["nextCursor"]
        if not cursor:
            break
    return entries


def compare(session: Session, args: argparse.Namespace) -> None:
    with session.api() as http:
        a = _ticks(http, _stack_arg(session, args.name), args.last)
        b = _ticks(http, _stack_arg(session, args.other), args.last)
    rows = comparing.compare(a, b)
    if not rows:
        raise PluginError("no work ticks to compare yet")
    table = [["MEASURE", "A", "B", "B-A", "95% INTERVAL", "N (A/B)", "VERDICT"]]
    for row in rows:
        table.append(
            [
                row.measure,
                f"{row.a:.4g}",
                f"{row.b:.4g}",
                f"{row.difference:+.4g}",
                f"[{row.low:+.4g}, {row.high:+.4g}]",
                f"{row.n_a}/{row.n_b}",
                row.verdict,
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for line in table:
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        print("  ".join(cells).rstrip())
    print(
        f"A = {args.name}, B = {args.other}: their last {args.last} ticks each (work ticks that "
        f"ran); intervals by bootstrap ({comparing.RESAMPLES} resamples)",
        file=sys.stderr,
    )


USAGE_COLUMNS = ("day", "stack", "model", "cost_usd", "tokens", "calls", "unpriced_calls")
"""The CSV header of ``usage --csv`` (and the table's columns, upper-cased)."""
_USAGE_FIELDS = ("day", "stack", "model", "costUSD", "tokens", "calls", "unpricedCalls")
"""The API's name of each of :data:`USAGE_COLUMNS`."""


def usage(session: Session, args: argparse.Namespace) -> None:
    params = {name: day for name, day in (("from", args.since), ("to", args.until)) if day}
    with session.api() as http:
        path = f"/api/v1/namespaces/{session.namespace}/usage"
        report = _api_answer(http.get(path, params=params))
    rows = [[str(item[field]) for field in _USAGE_FIELDS] for item in report["items"]]
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(USAGE_COLUMNS)
        writer.writerows(rows)
        return
    totals = report["totals"]
    total = ["TOTAL", "", "", *(str(totals[field]) for field in _USAGE_FIELDS[3:])]
    table = [[column.upper() for column in USAGE_COLUMNS], *rows, total]
    widths = [max(len(row[i]) for row in table) for i in range(len(USAGE_COLUMNS))]
    for row in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    print(
        f"{session.namespace}, {report['from']} to {report['to']} (UTC); costs in US dollars, "
        "calls of models without a price left out of them",
        file=sys.stderr,
    )


# -- the command line ---------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kubectl agentstack",
        description="Steer AgentStacks: pause, resume, stop, status, send an input, approve "
        "or deny a tool call, trace, search the archive, list checkpoints, roll back to one "
        "or fork from one, compare two stacks; a namespace's usage.",
    )
    top.add_argument("-n", "--namespace", help="the stack's namespace (default: the context's)")
    top.add_argument("--kubeconfig", help="the kubeconfig to use (default: $KUBECONFIG)")
    top.add_argument("--context", help="the kubeconfig context to use")
    top.add_argument("--api", help=f"URL of the agentstack API (default: ${API_URL_ENV})")
    top.add_argument("--token", help=f"bearer token for the agentstack API (default: ${TOKEN_ENV})")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, run: Callable[[Session, argparse.Namespace], None], summary: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary)
        sub.add_argument("name", help="the AgentStack's name")
        sub.set_defaults(run=run)
        return sub

    command("pause", _state_command(ExecutionState.PAUSED), "stop dispatching; keep memory")
    command("resume", _state_command(ExecutionState.RUNNING), "tick again")
    command("stop", _state_command(ExecutionState.STOPPED), "end the run (memory kept)")
    command("status", status, "state, counters and conditions").add_argument(
        "-o", "--output", choices=["text", "json"], default="text"
    )
    sender = command("send", send, "send an input to one of the stack's agents")
    sender.add_argument("message", help="what to tell the agent")
    sender.add_argument("--agent", help="the agent (default: the stack's first)")
    command("inputs", inputs, "the inputs sent and what became of them").add_argument(
        "--limit", type=int, default=20
    )
    command("approvals", approvals, "tool calls waiting for (or past) a decision")
    for verb, approved in (("approve", True), ("deny", False)):
        decider = command(verb, _decision(approved), f"{verb} a tool call that waits")
        decider.add_argument("approval", help="the approval's id (kubectl agentstack approvals)")
        decider.add_argument("--reason", default="", help="why (kept with the decision)")
    tracer = command("trace", trace, "the agents' steps, oldest first")
    tracer.add_argument("-f", "--follow", action="store_true", help="keep printing new steps")
    tracer.add_argument("--limit", type=int, default=20, help="steps shown before following")
    searcher = command("search", search, "search the stack's archive, best match first")
    searcher.add_argument("query", help="the words to look for")
    searcher.add_argument("--kind", choices=[kind.value for kind in ArchiveKind])
    searcher.add_argument("--limit", type=int, default=10, help="hits shown (at most 100)")
    command("checkpoints", checkpoints, "the checkpoints kept: the state each tick left")
    roller = command("rollback", rollback, "pause the stack and restore a checkpoint")
    roller.add_argument(
        "--to", required=True, help="the tick whose state to restore: its id or slot number"
    )
    forker = command("fork", fork, "a new stack from a checkpoint: shadowed, with changes")
    forker.add_argument("new", help="the fork's name")
    forker.add_argument("--at", help="the tick whose state it starts from (default: the newest)")
    forker.add_argument("--model", help="the fork's default model, PROVIDER:NAME")
    forker.add_argument(
        "--set",
        action="append",
        metavar="spec.PATH=VALUE",
        help="change the spec (repeatable): spec.agents[1].systemPrompt=…; VALUE as JSON, "
        "else as text",
    )
    forker.add_argument("--mirror", action="store_true", help="send it the source's inputs")
    forker.add_argument("--paused", action="store_true", help="leave it paused once seeded")
    forker.add_argument(
        "--to-namespace", dest="target_namespace", help="create it there (default: -n)"
    )
    comparer = command("compare", compare, "two stacks side by side: evals, tokens, $, time")
    comparer.add_argument("other", help="the other stack: NAME, or NAMESPACE/NAME")
    comparer.add_argument("--last", type=int, default=200, help="ticks of each (default 200)")
    summary = "what the namespace's stacks spent, by day, stack and model"
    charged = commands.add_parser("usage", help=summary, description=summary)
    charged.set_defaults(run=usage)
    charged.add_argument("--from", dest="since", help="first UTC day, YYYY-MM-DD")
    charged.add_argument(
        "--to", dest="until", help="last UTC day, YYYY-MM-DD (default: the last 30 days)"
    )
    charged.add_argument("--csv", action="store_true", help=f"CSV: {','.join(USAGE_COLUMNS)}")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(Session(args), args)
    except PluginError as exc:
        print(f"kubectl agentstack {args.command}: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"kubectl agentstack {args.command}: the API is unreachable: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
