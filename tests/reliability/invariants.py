"""The invariant checker every fault case ends with: the README's guarantees, computed
from Redis and the API server after the run, never from what the processes say.

:func:`quiesce` first brings the fleet to rest (every stack paused, every dispatched
tick received and every result folded), so that what is checked is final. Then
:func:`check` verifies, stack by stack:

- **no tick id executed twice**: a tick id appears at most once in the stack's history,
  and no (tick, agent) step is committed twice (the trace has it at most once);
- **one tick of a stack at a time**: every executed tick started after the one before
  it finished (as the lease holders recorded them);
- **no input lost or doubled**: every input in the stack's inputs log is numbered
  without a gap and in its agent's inbox exactly once; one that was read was read after
  it was sent, by a tick the history recorded;
- **every due slot executed or dropped with a recorded reason**: every tick the
  operator dispatched for the stack's current incarnation (its uid) — on a lane, or as
  a tick Job — is in the history, run or dropped with a reason (ticks of an
  incarnation since deleted write nothing, by design, and are not expected);
- **every consolidation done once in effect**: the long-term memory was written as many
  times as sleep ticks consolidated (the history says so), each consolidation's note is
  in the archive at most once, and ``sleeps`` counts the sleep ticks that succeeded;
- **nothing archived twice**: no item of the archive (a closed task, an artifact
  version, a message, a post) appears twice for the same tick and agent;
- **status equals what Redis counted**: ``ticks``, ``tokensUsed``, ``costUSD`` and
  ``consecutiveFailures`` in the stack's status equal its usage counters;
- **budgets never overspent**: ticks run never exceed ``maxTicks``; no step with an LLM
  call started once the tokens used before it reached ``maxTokens``; neither the dollars
  the stack counted nor the sum of its steps' costs in the trace exceed ``maxCostUSD``;
- **nothing of a deleted stack left**: no Redis key with its hash tag, no Job of it;
- **no secret anywhere**: no secret value in a process log, a status, an Event, a Redis
  key or value, or a recorded API response.

The figures it returns (stacks, ticks and steps checked) go into docs/reliability.md.
"""

from __future__ import annotations

import collections
import itertools
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from kubernetes import client

from agentstack_core import protocol
from agentstack_core.keys import FleetKeys, StackKeys, StackRef
from agentstack_core.pricing import format_usd, nanos
from agentstack_core.protocol import LANES
from agentstack_core.retention import HISTORY_MAXLEN, TRACE_MAXLEN
from tests.helpers import eventually

GROUP, VERSION, PLURAL = "agentstack.dev", "v1alpha1", "agentstacks"


@dataclass
class Report:
    stacks: int = 0
    ticks: int = 0
    """History entries checked (run or dropped)."""
    executed: int = 0
    dropped: int = 0
    steps: int = 0
    dispatched: int = 0
    inputs: int = 0
    inputs_read: int = 0
    consolidations: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        inputs = f", {self.inputs} inputs ({self.inputs_read} read)" if self.inputs else ""
        sleeps = f", {self.consolidations} consolidations" if self.consolidations else ""
        return (
            f"{self.stacks} stacks, {self.dispatched} ticks dispatched, {self.ticks} recorded "
            f"({self.executed} run, {self.dropped} dropped), {self.steps} steps{inputs}{sleeps}"
        )


def _stacks(api: client.ApiClient, namespaces: Iterable[str]) -> list[dict[str, Any]]:
    custom = client.CustomObjectsApi(api)
    found: list[dict[str, Any]] = []
    for namespace in namespaces:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        found.extend(listed["items"])
    return found


def quiesce(
    api: client.ApiClient, reader: redis.Redis, namespaces: Sequence[str], timeout: float = 120
) -> None:
    """Pause every stack of ``namespaces`` and wait until the fleet is at rest: no tick
    request waiting or in a runner's hands, no result left unfolded."""
    custom = client.CustomObjectsApi(api)
    for stack in _stacks(api, namespaces):
        meta = stack["metadata"]
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            meta["namespace"],
            PLURAL,
            meta["name"],
            {"spec": {"executionState": "Paused"}},
        )

    busy: list[str] = []

    def at_rest() -> bool | None:
        busy.clear()
        for stream, group in [
            *((FleetKeys.lane(lane), protocol.RUNNERS_GROUP) for lane in LANES),
            (FleetKeys.results, protocol.OPERATOR_GROUP),
        ]:
            for info in reader.xinfo_groups(stream):  # type: ignore[union-attr]
                if info["name"] == group and (info["pending"] or info.get("lag")):
                    held = reader.xpending_range(stream, group, "-", "+", 10)
                    busy.append(f"{stream}: {info}; pending: {held}")
                    busy.extend(_diagnose(reader, stream, held))
        busy.extend(_jobs_unrecorded(api, reader, namespaces))
        return None if busy else True

    # The operator needs a moment to see the pause; a tick dispatched just before it
    # is received and dropped (NotRunning) or run, then folded.
    try:
        eventually(at_rest, "the fleet to come to rest", timeout=timeout)
    except Exception as exc:
        raise AssertionError(f"{exc}; still busy: {busy}") from exc


def _tick_jobs(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    listed = client.BatchV1Api(api).list_namespaced_job(
        namespace, label_selector="agentstack.dev/stack"
    )
    return [api.sanitize_for_serialization(job) for job in listed.items]


def _jobs_unrecorded(
    api: client.ApiClient, reader: redis.Redis, namespaces: Sequence[str]
) -> list[str]:
    """Tick Jobs still running, or finished without their tick in the history (a Job
    whose pod was killed mid-tick is recorded once its runner's lease has expired)."""
    busy = []
    for namespace in namespaces:
        for job in _tick_jobs(api, namespace):
            meta = job["metadata"]
            tick = meta["annotations"]["agentstack.dev/tick-id"]
            finished = any(
                c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                for c in (job.get("status") or {}).get("conditions") or []
            )
            history = StackKeys(StackRef(namespace, meta["labels"]["agentstack.dev/stack"])).history
            if not finished or tick not in {e["tick_id"] for e in _stream(reader, history)}:
                busy.append(f"Job {meta['name']} of {tick}: finished={finished}, not recorded")
    return busy


def _diagnose(reader: redis.Redis, stream: str, held: list[dict[str, Any]]) -> list[str]:
    """What the ticks still held are doing (for the failure message)."""
    found = []
    for entry in held:
        (request,) = reader.xrange(stream, entry["message_id"], entry["message_id"]) or [(0, {})]  # type: ignore[misc]
        fields = request[1]
        if "stack" not in fields:
            continue
        keys = StackKeys(StackRef.parse(fields["stack"]))
        tick = fields["tick_id"]
        trace = [f["agent"] for f in _stream(reader, keys.trace) if f["tick_id"] == tick]
        found.append(
            f"{tick}: lease={reader.get(keys.lease)} ttl={reader.pttl(keys.lease)} "
            f"steps={reader.hgetall(keys.steps(tick))} trace={trace} "
            f"at {time.time():.3f}"
        )
    return found


def _stream(reader: redis.Redis, key: str) -> list[dict[str, str]]:
    return [fields for _id, fields in reader.xrange(key)]  # type: ignore[union-attr]


def _dispatched(reader: redis.Redis) -> dict[str, list[dict[str, str]]]:
    by_stack: dict[str, list[dict[str, str]]] = collections.defaultdict(list)
    for lane in LANES:
        for fields in _stream(reader, FleetKeys.lane(lane)):
            by_stack[fields.get("stack", "")].append(fields)
    return by_stack


def check(
    api: client.ApiClient,
    reader: redis.Redis,
    namespaces: Sequence[str],
    *,
    deleted: Sequence[StackRef] = (),
    secrets: Sequence[str] = (),
    logs: Sequence[Path] = (),
    responses: Sequence[str] = (),
    status_timeout: float = 60,
) -> Report:
    report = Report()
    dispatched = _dispatched(reader)
    stacks = _stacks(api, namespaces)
    for stack in stacks:
        meta = stack["metadata"]
        ref = StackRef(meta["namespace"], meta["name"])
        report.stacks += 1
        _check_stack(api, reader, ref, stack, dispatched.get(str(ref), []), report)
    _check_status(api, reader, namespaces, report, status_timeout)
    for ref in deleted:
        _check_gone(api, reader, ref, report)
    _check_secrets(api, reader, namespaces, stacks, secrets, logs, responses, report)
    return report


def _check_stack(
    api: client.ApiClient,
    reader: redis.Redis,
    ref: StackRef,
    stack: dict[str, Any],
    requests: list[dict[str, str]],
    report: Report,
) -> None:
    keys = StackKeys(ref)
    history = _stream(reader, keys.history)
    trace = _stream(reader, keys.trace)
    report.ticks += len(history)
    report.steps += len(trace)
    recorded = collections.Counter(entry["tick_id"] for entry in history)
    twice = [tick for tick, count in recorded.items() if count > 1]
    if twice:
        report.problems.append(f"{ref}: tick(s) recorded twice: {twice[:5]}")
    for entry in history:
        if entry["outcome"] == "Dropped":
            report.dropped += 1
            if not entry.get("reason"):
                report.problems.append(f"{ref}: tick {entry['tick_id']} dropped without reason")
        else:
            report.executed += 1
    _check_one_at_a_time(ref, history, report)
    _check_inputs(reader, ref, keys, history, report)
    _check_consolidations(reader, ref, keys, history, report)
    _check_archive(reader, ref, keys, report)
    steps = collections.Counter((entry["tick_id"], entry["agent"]) for entry in trace)
    doubled = [step for step, count in steps.items() if count > 1]
    if doubled:
        report.problems.append(f"{ref}: step(s) committed twice: {doubled[:5]}")

    uid = stack["metadata"]["uid"]
    mine = {r["tick_id"] for r in requests if r.get("uid", uid) == uid}
    mine |= {  # the stack's tick Jobs: each tick recorded too
        job["metadata"]["annotations"]["agentstack.dev/tick-id"]
        for job in _tick_jobs(api, ref.namespace)
        if job["metadata"]["labels"]["agentstack.dev/stack"] == ref.name
        and any(o["uid"] == uid for o in job["metadata"].get("ownerReferences") or [])
    }
    report.dispatched += len(mine)
    window = {entry["tick_id"] for entry in history}
    lost = sorted(mine - window)
    # The history is capped: only ticks dispatched after its oldest entry can be judged.
    if len(history) >= 1000:
        oldest = min(float(e.get("started_at") or 0) for e in history)
        lost = [t for t in lost if _dispatched_at(requests, t) >= oldest]
    if lost:
        report.problems.append(f"{ref}: {len(lost)} dispatched tick(s) never recorded: {lost[:5]}")

    budget = (stack.get("spec") or {}).get("budget") or {}
    usage = reader.hgetall(keys.usage)
    if "maxTicks" in budget and int(usage.get("ticks", 0)) > budget["maxTicks"]:  # type: ignore[union-attr]
        report.problems.append(f"{ref}: {usage.get('ticks')} ticks run of {budget['maxTicks']}")  # type: ignore[union-attr]
    if "maxTokens" in budget:
        used = 0
        for entry in trace:
            tokens = int(entry.get("prompt_tokens") or 0) + int(entry.get("completion_tokens") or 0)
            if tokens and used >= budget["maxTokens"]:
                report.problems.append(
                    f"{ref}: a step of {entry['tick_id']} called the LLM with {used} tokens "
                    f"used of a budget of {budget['maxTokens']}"
                )
                break
            used += tokens
    if "maxCostUSD" in budget:
        spent = int(usage.get("cost", 0))  # type: ignore[union-attr]
        if spent > nanos(float(budget["maxCostUSD"])):  # type: ignore[arg-type]
            report.problems.append(
                f"{ref}: ${spent / 1e9:.9f} spent of a budget of ${budget['maxCostUSD']}"
            )
        # What the calls really cost, step by step — committed steps of a tick still
        # running or never finished included — is kept under the budget too.
        stepped = sum(int(entry.get("cost") or 0) for entry in trace)
        if stepped > nanos(float(budget["maxCostUSD"])) and len(trace) < TRACE_MAXLEN:  # type: ignore[arg-type]
            report.problems.append(
                f"{ref}: the trace's steps cost ${stepped / 1e9:.9f}, over the budget of "
                f"${budget['maxCostUSD']}"
            )


def _check_one_at_a_time(ref: StackRef, history: list[dict[str, str]], report: Report) -> None:
    """No two ticks of the stack ran at once: each executed tick (as the runner that
    held the lease recorded it) started after the one before it finished. A failed
    Job's tick is left out: the operator records its end when it notices."""
    runs = sorted(
        (float(e["started_at"]), float(e["finished_at"]), e["tick_id"])
        for e in history
        if e["outcome"] != "Dropped" and e.get("runner") != "job" and e.get("started_at")
    )
    for (_start, finished, first), (started, _end, second) in itertools.pairwise(runs):
        if started < finished:
            report.problems.append(f"{ref}: ticks {first} and {second} ran at once")
            return


def _check_inputs(
    reader: redis.Redis,
    ref: StackRef,
    keys: StackKeys,
    history: list[dict[str, str]],
    report: Report,
) -> None:
    """Every input is in its agent's inbox exactly once, numbered without a gap, and one
    that was read was read after it was sent, by a tick the history recorded."""
    logged = _stream(reader, keys.inputs)
    if not logged:
        return
    report.inputs += len(logged)
    numbers = [int(entry["number"]) for entry in logged]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        report.problems.append(f"{ref}: inputs numbered with gaps or twice: {numbers[:10]}")
    outcomes = reader.hgetall(keys.input_outcomes)
    ticks = {entry["tick_id"] for entry in history}
    for entry in logged:
        delivered = [
            m
            for m in _stream(reader, keys.inbox(entry["agent"]))
            if m.get("input") == entry["number"]
        ]
        if len(delivered) != 1:
            report.problems.append(
                f"{ref}: input #{entry['number']} is in {entry['agent']}'s inbox "
                f"{len(delivered)} times"
            )
        raw = outcomes.get(entry["number"])  # type: ignore[union-attr]
        if raw is None:
            continue
        outcome = json.loads(raw)
        report.inputs_read += 1
        if float(outcome["at"]) < float(entry["at"]):
            report.problems.append(f"{ref}: input #{entry['number']} read before it was sent")
        if outcome["tickId"] not in ticks and len(history) < HISTORY_MAXLEN:
            report.problems.append(
                f"{ref}: input #{entry['number']} read by {outcome['tickId']}, "
                "a tick never recorded"
            )


def _check_consolidations(
    reader: redis.Redis,
    ref: StackRef,
    keys: StackKeys,
    history: list[dict[str, str]],
    report: Report,
) -> None:
    """The long-term memory was written once per sleep tick that consolidated (its step
    progressed — in a tick that succeeded, or one dropped after its step committed,
    resumed past its deadline), each consolidation's note is archived once, and
    ``sleeps`` counts the sleep ticks that succeeded: a consolidation interrupted and
    resumed is neither doubled nor lost."""
    asleep = [e for e in history if e.get("kind") == "Sleep"]
    sleeps = [e for e in asleep if e["outcome"] == "Succeeded"]
    consolidated = [e for e in asleep if e.get("progressed") == "true"]
    longterm = reader.hgetall(keys.longterm)
    written = int(longterm.get("consolidations", 0))  # type: ignore[union-attr]
    report.consolidations += written
    complete = len(history) < HISTORY_MAXLEN
    if complete and written != len(consolidated):
        report.problems.append(
            f"{ref}: long-term memory written {written} times by "
            f"{len(consolidated)} consolidating sleep tick(s)"
        )
    counted = int(reader.hget(keys.usage, "sleeps") or 0)  # type: ignore[arg-type]
    if complete and counted != len(sleeps):
        report.problems.append(f"{ref}: sleeps={counted} but {len(sleeps)} sleep ticks succeeded")
    notes = collections.Counter(
        fields["ref"] for fields in _stream(reader, keys.archive) if fields.get("kind") == "note"
    )
    doubled = [note for note, count in notes.items() if count > 1]
    if doubled:
        report.problems.append(f"{ref}: consolidation note(s) archived twice: {doubled[:5]}")


def _check_archive(reader: redis.Redis, ref: StackRef, keys: StackKeys, report: Report) -> None:
    """Each archived item once: the same kind, ref, text from the same agent in the same
    tick twice would be an effect committed twice."""
    items = collections.Counter(
        (f.get("kind"), f.get("ref"), f.get("tick_id"), f.get("agent"), f.get("text"))
        for f in _stream(reader, keys.archive)
        if f.get("kind") in ("task", "artifact", "message", "post")
    )
    doubled = [item[:4] for item, count in items.items() if count > 1]
    if doubled:
        report.problems.append(f"{ref}: archived twice: {doubled[:5]}")


def _dispatched_at(requests: list[dict[str, str]], tick: str) -> float:
    return min(float(r.get("dispatched_at") or 0) for r in requests if r["tick_id"] == tick)


def _check_status(
    api: client.ApiClient,
    reader: redis.Redis,
    namespaces: Sequence[str],
    report: Report,
    timeout: float,
) -> None:
    """Status converges to the counters in Redis (the operator writes at its cadence)."""

    def mismatches() -> list[str]:
        found = []
        for stack in _stacks(api, namespaces):
            meta, status = stack["metadata"], stack.get("status") or {}
            usage: dict[str, str] = reader.hgetall(  # type: ignore[assignment]
                StackKeys(StackRef(meta["namespace"], meta["name"])).usage
            )
            pairs = (
                ("ticks", "ticks"),
                ("tokensUsed", "tokens"),
                ("consecutiveFailures", "failures"),
            )
            for in_status, in_redis in pairs:
                if int(status.get(in_status) or 0) != int(usage.get(in_redis, 0)):
                    found.append(
                        f"{meta['namespace']}/{meta['name']}: status {in_status}="
                        f"{status.get(in_status)} but Redis counted {usage.get(in_redis, 0)}"
                    )
            counted = format_usd(int(usage.get("cost", 0)))
            if (status.get("costUSD") or format_usd(0)) != counted:
                found.append(
                    f"{meta['namespace']}/{meta['name']}: status costUSD="
                    f"{status.get('costUSD')} but Redis counted {counted}"
                )
        return found

    deadline = time.monotonic() + timeout
    while (found := mismatches()) and time.monotonic() < deadline:
        time.sleep(0.5)
    report.problems.extend(found)


def _check_gone(api: client.ApiClient, reader: redis.Redis, ref: StackRef, report: Report) -> None:
    left = list(reader.scan_iter(match=f"{StackKeys(ref).prefix}*", count=1000))
    if left:
        report.problems.append(f"{ref} was deleted but {len(left)} key(s) remain: {left[:5]}")
    jobs = client.BatchV1Api(api).list_namespaced_job(
        ref.namespace, label_selector=f"agentstack.dev/stack={ref.name}"
    )
    live = [job for job in jobs.items if not job.metadata.deletion_timestamp]
    if live:
        report.problems.append(f"{ref} was deleted but {len(live)} Job(s) remain")


def _check_secrets(
    api: client.ApiClient,
    reader: redis.Redis,
    namespaces: Sequence[str],
    stacks: list[dict[str, Any]],
    secrets: Sequence[str],
    logs: Sequence[Path],
    responses: Sequence[str],
    report: Report,
) -> None:
    if not secrets:
        return
    places: dict[str, str] = {}
    for path in logs:
        places[f"log {path.name}"] = path.read_text(errors="replace")
    places["statuses"] = json.dumps([stack.get("status") for stack in stacks])
    core = client.CoreV1Api(api)
    places["events"] = json.dumps(
        [
            (event.reason, event.message)
            for namespace in namespaces
            for event in core.list_namespaced_event(namespace).items
        ]
    )
    places["redis"] = _dump(reader)
    places["api responses"] = "\n".join(responses)
    for secret in secrets:
        for where, text in places.items():
            if secret in text:
                report.problems.append(f"a secret value appears in {where}")


def _dump(reader: redis.Redis) -> str:
    parts = []
    for key in reader.scan_iter(count=1000):
        kind = reader.type(key)
        if kind == "stream":
            value: object = reader.xrange(key)
        elif kind == "hash":
            value = reader.hgetall(key)
        elif kind == "zset":
            value = reader.zrange(key, 0, -1)
        elif kind == "set":
            value = reader.smembers(key)
        elif kind == "string":
            value = reader.get(key)
        else:
            value = kind
        parts.append(f"{key}={value!r}")
    return "\n".join(parts)
