"""From an input — sent to the read API, delivered to a webhook, or fired by a Kubernetes
Event — to the start of the tick it brings.

Run from the repository root::

    .venv/bin/python -m bench.input_latency              # quiet, then 1,000 stacks x 10 s
    .venv/bin/python -m bench.input_latency --quick      # quiet, then 100 stacks

What a person who sends a stack a message waits for before its agents act on it: the
API authorises and writes the input and a wake-up, the leading operator reads the
wake-up and dispatches an extra tick, a runner takes it and leases the stack. The
bench runs the fleet as deployed on this machine (control plane, ``redis-server``, the
operator, one runner on the offline scripted provider, one ``agentstack api``), and
sends inputs one at a time, each to one of a few target stacks that tick once an hour
on their own (so the tick that reads an input is the one it brought), from each source
in turn:

- ``api``: ``POST …/inputs`` (the moment before it);
- ``webhook``: a GitHub-signed ``POST …/webhooks/bench`` (the same path through the
  API, plus the signature check and the key read from a Secret, cached);
- ``a2a``: an A2A ``SendMessage`` (JSON-RPC, protocol 1.0, answered at once with the
  task) to ``POST …/a2a``;
- ``trigger``: a Kubernetes Event created through the API server (the moment before
  the ``create``), which the operator's one watch of Events delivers and the target's
  trigger (``involvedObjectKind`` names the target) turns into an input.

The background stacks each declare two triggers (an Event reason and a Pod state that
never occur), so every Event the bench creates is matched against a thousand stacks'
triggers, and the second table counts the watches the API server holds open for the
operator (goal: they grow with kinds, not with stacks) and the operator's CPU.

For each input:

- **→ tick start**: the tick's ``started_at`` (it holds the lease: the runner's
  clock) minus the moment before the send (this process's clock; same machine);
- **→ read**: when the agent's step that read it committed, minus the same.

The baseline, in the same command, sends the same inputs to a fleet of only the target
stacks; the loaded run adds background stacks ticking every ``--interval`` seconds, so
the wake-up competes with their dispatch, queue and runner. Absolute figures depend on
the machine; ``bench/RESULTS.md`` records them with the command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import redis
from a2a.utils.constants import PROTOCOL_VERSION_1_0, VERSION_HEADER
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_devkit.controlplane import bind_service_account
from bench.operator_scale import (
    BenchError,
    Processes,
    api_fleet,
    bench_main,
    create_stacks,
    http_get,
    ms,
    percentile,
    process_cpu_seconds,
    spread,
    stack_refs,
    ticked_in_redis,
    wait_for,
)

NAMESPACE = "input-bench"
TARGETS = 5
HOUR = 3600
READ_TIMEOUT = 30.0
SOURCES = ("api", "webhook", "a2a", "trigger")
HOOK_KEY = b"the input bench's webhook key"
WATCHER = "bench-watcher"


@dataclass(frozen=True)
class Sample:
    started: float
    """Send → tick start (seconds)."""
    read: float
    """Send → the step that read it committed (seconds)."""


@dataclass(frozen=True)
class Outcome:
    background: int
    source: str
    samples: list[Sample]


@dataclass(frozen=True)
class Census:
    """The watches held for triggers, and the operator's CPU, during one phase."""

    background: int
    trigger_watches: float
    """The operator's ``agentstack_operator_trigger_watches``."""
    apiserver_watches: dict[str, float]
    """Watch requests the API server holds open, by resource (every client's)."""
    operator_cores: float
    """The operator's CPU seconds per second over the phase."""


def background_spec(_ref: StackRef) -> dict[str, Any]:
    """Two triggers that never fire: Events of a reason nobody posts, Pods of no app."""
    pods = {"matchLabels": {"app": "no-such-app"}}
    return {
        "triggers": [
            {"name": "never", "serviceAccountName": WATCHER, "event": {"reasons": ["Never"]}},
            {
                "name": "no-pod",
                "serviceAccountName": WATCHER,
                "object": {"apiVersion": "v1", "kind": "Pod", "selector": pods},
            },
        ]
    }


def census(procs: Processes, background: int, cpu_before: float, since: float) -> Census:
    plane = procs.control_plane
    text = http_get(f"{plane.url}/metrics", token=plane.admin_token, ca=plane.ca_path)
    watches: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("apiserver_longrunning_requests{") and 'verb="WATCH"' in line:
            resource = line.split('resource="', 1)[1].split('"', 1)[0]
            if resource in ("events", "pods"):
                watches[resource] = watches.get(resource, 0.0) + float(line.rsplit(" ", 1)[1])
    ours = http_get(f"http://127.0.0.1:{procs.operator_port}/metrics")
    held = next(
        float(line.split()[1])
        for line in ours.splitlines()
        if line.startswith("agentstack_operator_trigger_watches ")
    )
    assert procs.operator.pid is not None
    spent = process_cpu_seconds(procs.operator.pid) - cpu_before
    return Census(background, held, watches, spent / (time.monotonic() - since))


def target_spec(ref: StackRef) -> dict[str, Any]:
    """What a target takes inputs through besides the API: a webhook, and a trigger on
    Events about an object of the kind named after it (so each Event is one target's)."""
    return {
        "inputs": {"maxPerMinute": 600},  # the bench sends faster than the default 30
        "webhooks": [{"name": "bench", "secretRef": {"name": "bench-hooks", "key": "key"}}],
        "triggers": [
            {
                "name": "bench",
                "serviceAccountName": WATCHER,
                "event": {"reasons": ["BenchPing"], "involvedObjectKind": ref.name},
            }
        ],
    }


def prepare(kube: client.ApiClient) -> None:
    """The webhook's key and the trigger's ServiceAccount (bound to ``view``)."""
    core = client.CoreV1Api(kube)
    core.create_namespaced_secret(
        NAMESPACE,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="bench-hooks"),
            string_data={"key": HOOK_KEY.decode()},
        ),
    )
    core.create_namespaced_service_account(
        NAMESPACE, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=WATCHER))
    )
    bind_service_account(kube, NAMESPACE, WATCHER, "view", kind="ClusterRole")


class Sender:
    """One input to a target from a source; :meth:`send` returns the moment before."""

    def __init__(self, http: httpx.Client, kube: client.ApiClient) -> None:
        self.http = http
        self.core = client.CoreV1Api(kube)

    def send(self, source: str, ref: StackRef, text: str) -> float:
        stack = f"/api/v1/namespaces/{ref.namespace}/stacks/{ref.name}"
        if source == "trigger":
            sent = time.time()
            self.core.create_namespaced_event(
                ref.namespace,
                client.CoreV1Event(
                    metadata=client.V1ObjectMeta(generate_name="ping."),
                    involved_object=client.V1ObjectReference(
                        kind=ref.name, name=text, namespace=ref.namespace, uid=str(uuid.uuid4())
                    ),
                    reason="BenchPing",
                    message=text,
                    type="Normal",
                    last_timestamp=dt.datetime.now(dt.UTC),
                ),
            )
            return sent
        if source == "a2a":
            message = {
                "role": "ROLE_USER",
                "messageId": str(uuid.uuid4()),
                "parts": [{"text": text}],
            }
            call = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "SendMessage",
                "params": {"message": message, "configuration": {"returnImmediately": True}},
            }
            sent = time.time()
            answer = self.http.post(
                f"{stack}/a2a", json=call, headers={VERSION_HEADER: PROTOCOL_VERSION_1_0}
            )
            if answer.status_code != 200 or "error" in answer.json():
                raise BenchError(f"a2a message refused: {answer.status_code} {answer.text}")
            return sent
        if source == "webhook":
            body = json.dumps({"text": text}).encode()
            signature = hmac.new(HOOK_KEY, body, hashlib.sha256).hexdigest()
            headers = {
                "X-Hub-Signature-256": f"sha256={signature}",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-GitHub-Event": "ping",
            }
            sent = time.time()
            answer = self.http.post(f"{stack}/webhooks/bench", content=body, headers=headers)
        else:
            sent = time.time()
            answer = self.http.post(f"{stack}/inputs", json={"agent": "planner", "content": text})
        if answer.status_code != 202:
            raise BenchError(f"{source} input refused: {answer.status_code} {answer.text}")
        return sent


def _history_start(reader: redis.Redis, ref: StackRef, tick: str) -> float | None:
    for _id, fields in reader.xrevrange(StackKeys(ref).history, count=20):
        if fields.get("tick_id") == tick:
            return float(fields["started_at"])
    return None


def _newest_input(reader: redis.Redis, ref: StackRef) -> int:
    """The number of the target's newest input (0: none yet)."""
    newest = reader.xrevrange(StackKeys(ref).inputs, count=1)
    return int(newest[0][1]["number"]) if newest else 0


def send_and_wait(
    sender: Sender,
    reader: redis.Redis,
    source: str,
    ref: StackRef,
    text: str,
    procs: Processes,
) -> Sample:
    """One input; waits until the tick it brought has read it and is recorded (inputs go
    one at a time, so the target's newest input is this one)."""
    before = _newest_input(reader, ref)
    sent = sender.send(source, ref, text)
    deadline = time.monotonic() + READ_TIMEOUT
    while time.monotonic() < deadline:
        number = _newest_input(reader, ref)
        raw = reader.hget(StackKeys(ref).input_outcomes, str(number)) if number > before else None
        if raw:
            outcome = json.loads(str(raw))
            start = _history_start(reader, ref, outcome["tickId"])
            if start is not None:
                return Sample(started=start - sent, read=float(outcome["at"]) - sent)
        procs.check_alive()
        time.sleep(0.01)
    raise BenchError(f"a {source} input to {ref} not read within {READ_TIMEOUT:g} s")


def measure(
    procs: Processes,
    reader: redis.Redis,
    sender: Sender,
    targets: Sequence[StackRef],
    inputs: int,
    background: int,
) -> list[Outcome]:
    outcomes = []
    for source in SOURCES:
        print(
            f"sending {inputs} {source} inputs with {background} background stacks...",
            file=sys.stderr,
        )
        samples = []
        for index in range(inputs):
            ref = targets[index % len(targets)]
            samples.append(send_and_wait(sender, reader, source, ref, f"{source}-{index}", procs))
            time.sleep(0.2)  # the tick it brought finishes; the next finds the stack idle
        outcomes.append(Outcome(background, source, samples))
    return outcomes


def table(outcomes: Sequence[Outcome]) -> str:
    header = (
        "| source | background stacks | inputs | → tick start p50 | p90 | p99 | max "
        "| → read p50 | p99 | p99 vs quiet |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    quiet: dict[str, float] = {}
    for outcome in sorted(outcomes, key=lambda o: (SOURCES.index(o.source), o.background)):
        started = [s.started for s in outcome.samples]
        read = [s.read for s in outcome.samples]
        p99 = percentile(started, 0.99)
        base = quiet.setdefault(outcome.source, p99)
        rows.append(
            f"| {outcome.source} | {outcome.background} | {len(started)} | {spread(started)} "
            f"| {ms(percentile(read, 0.5))} | {ms(percentile(read, 0.99))} "
            f"| {p99 / base:.2f}x |"
        )
    return "\n".join([header, *rows])


def census_table(censuses: Sequence[Census]) -> str:
    header = (
        "| stacks with triggers | operator's trigger watches | API-server watches of events "
        "| of pods | operator CPU (cores) |\n|---|---|---|---|---|"
    )
    rows = [
        f"| {c.background + TARGETS} | {c.trigger_watches:.0f} "
        f"| {c.apiserver_watches.get('events', 0):.0f} | {c.apiserver_watches.get('pods', 0):.0f} "
        f"| {c.operator_cores:.2f} |"
        for c in censuses
    ]
    return "\n".join([header, *rows])


def run(args: argparse.Namespace) -> str:
    with api_fleet("agentstack-input-bench-", 1, NAMESPACE) as bench:
        procs, reader = bench.procs, bench.reader
        prepare(bench.kube)
        targets = [StackRef(NAMESPACE, f"target-{n}") for n in range(TARGETS)]
        create_stacks(bench.kube, targets, HOUR, target_spec)
        deadline = time.monotonic() + 120
        wait_for(
            "targets ticked", lambda: ticked_in_redis(reader, targets), TARGETS, deadline, procs
        )
        assert procs.operator.pid is not None
        with httpx.Client(base_url=bench.api_url, timeout=10) as http:
            sender = Sender(http, bench.kube)
            cpu, since = process_cpu_seconds(procs.operator.pid), time.monotonic()
            outcomes = measure(procs, reader, sender, targets, args.inputs, 0)
            censuses = [census(procs, 0, cpu, since)]
            background = stack_refs([NAMESPACE], 0, args.stacks)
            print(f"creating {args.stacks} background stacks...", file=sys.stderr)
            create_stacks(bench.kube, background, args.interval, background_spec)
            deadline = time.monotonic() + max(120.0, args.stacks / 10)
            wait_for(
                "stacks ticked",
                lambda: ticked_in_redis(reader, background),
                args.stacks,
                deadline,
                procs,
            )
            cpu, since = process_cpu_seconds(procs.operator.pid), time.monotonic()
            outcomes += measure(procs, reader, sender, targets, args.inputs, args.stacks)
            censuses.append(census(procs, args.stacks, cpu, since))
    return (
        f"\n{TARGETS} target stacks (hourly, scripted), one runner; background stacks every "
        f"{args.interval} s, each with two triggers that never fire.\n\n{table(outcomes)}"
        f"\n\n{census_table(censuses)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.input_latency", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--stacks", type=int, default=1000, help="background stacks (1000)")
    parser.add_argument("--interval", type=int, default=10, help="their tickIntervalSeconds")
    parser.add_argument("--inputs", type=int, default=100, help="inputs per source and run (100)")
    parser.add_argument("--quick", action="store_true", help="100 stacks, 40 inputs")
    args = parser.parse_args(argv)
    if args.quick:
        args.stacks, args.inputs = 100, 40
    return bench_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
