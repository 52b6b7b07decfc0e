"""Dispatch lag and API-server writes of ONE operator driving 1,000 stacks, against 100.

Why this shape:

- Everything is real and started the way ``agentstack dev up`` and the end-to-end tests
  start it: a control plane (etcd, kube-apiserver, kube-controller-manager) from
  :class:`~agentstack_devkit.controlplane.ControlPlane`, a ``redis-server``,
  and through :class:`~agentstack_devkit.fleet.Fleet` one ``agentstack
  operator`` and a few ``agentstack runner`` processes. The operator runs with the
  product's defaults (no ``AGENTSTACK_STATUS_MIN_INTERVAL`` or write-rate tuning): the
  point is what a real fleet costs the API server as shipped. ``AGENTSTACK_*`` tuning
  variables found in the environment are dropped, and the run says so.
- Stacks are real ``AgentStack`` objects (the default four-agent team on the offline
  ``scripted`` provider, ``tickIntervalSeconds: 5``) created through the API server by
  the Kubernetes client from a thread pool, spread over a few namespaces. The operator
  schedules them from its one timing heap; runners execute the ticks; the operator
  folds the results into status. No tick is injected by the benchmark.
- The baseline is measured in the same command: first a small fleet (100 stacks), then
  more stacks join it up to the full size (1,000), and the same measurement runs again.
  Growing one fleet (rather than starting a second one) keeps the processes, their
  caches and the control plane identical; the 100 baseline stacks are a minute or two
  older in the second measurement, which costs the runners a little more per tick and
  nothing else.
- Each measurement starts after a warm-up: every stack must have executed a tick
  (its ``{ns/name}:usage`` counter in Redis) and show it in its status (``status.ticks``),
  so the creation burst — a started stack's first tick is due at once, its first status
  write is urgent — is over. Then a fixed window (60 s) is measured from counters read
  before and after it; nothing is sampled per tick:

  * ticks executed (``Succeeded`` + ``Failed``) and dropped (``StackBusy``,
    ``DeadlineExceeded``...): the runners' ``agentstack_runner_ticks_total`` deltas;
  * dispatch lag p50/p90/p99: deltas of the operator's
    ``agentstack_scheduler_dispatch_lag_seconds`` histogram buckets, turned into
    quantiles the way Prometheus' ``histogram_quantile`` does (linear interpolation
    within the bucket holding the rank; a rank in the ``+Inf`` bucket reads as the
    highest finite bound). The runners' ``agentstack_runner_queue_lag_seconds``
    (dispatch to start of execution) gets the same treatment;
  * API-server writes, counted twice: by the operator
    (``agentstack_operator_status_writes_total``, ``agentstack_operator_events_total``)
    and, independently, by kube-apiserver itself (``apiserver_request_total`` from its
    ``/metrics``, write verbs only) for ``agentstacks/status``, ``agentstacks`` (the
    finalizer's patches; Kopf's in the baseline), ``events``, ``leases`` and every
    resource together — per executed tick and per second; and the writes kube-apiserver
    passed on to etcd (``etcd_requests_total`` create/update/delete), which leave out the
    PATCHes that changed nothing (kube-apiserver skips etcd for a no-op update);
  * CPU of each process (``/proc/<pid>/stat``), of this driver, and of everything else
    on the machine ("other": on a shared machine, work that competed with the
    measurement), in % of one core; the operator's RSS at the start and end of it;
  * the tick queue: the runners' consumer-group lag (``XINFO GROUPS``, requests no
    runner has received) sampled every second (max) and at the end, to show whether
    the runners kept up;
  * a control for CPU contention: a thread of this benchmark sleeps 10 ms again and
    again and records how late it wakes (p99, max). The operator's dispatcher also
    wakes on a timer; a dispatch lag far above the control is the operator's own event
    loop being busy, not the machine.

Usage (from the repository root)::

    .venv/bin/python -m bench.operator_scale              # 100 then 1,000 stacks, ~3 min
    .venv/bin/python -m bench.operator_scale --quick      # 10 then 100 stacks, ~1 min
    .venv/bin/python -m bench.operator_scale --stacks 500
    .venv/bin/python -m bench.operator_scale --interval 10   # half the tick rate
    .venv/bin/python -m bench.operator_scale --operator-env AGENTSTACK_STATUS_WRITES_PER_SECOND=10

``--interval`` changes every stack's ``tickIntervalSeconds`` (5 by default): with 10, a
1,000-stack fleet asks for 100 ticks/s instead of 200, which separates the cost of
*stacks* (index, heap, status writes) from the cost of *ticks* (the runners' CPU).
``--operator-env`` sets an operator variable for an experiment (the setup line above the
tables says which); without it the operator runs with the product's defaults.

Against the operator a Kopf user writes first, and at 10,000 stacks (issue 10)::

    .venv/bin/python -m bench.operator_scale --compare --stacks 1000 --interval 10 \
        --consumer ack --runners 1
    .venv/bin/python -m bench.operator_scale --stacks 10000 --baseline 1000 --interval 10 \
        --consumer ack --runners 1 --no-status-warmup

``--compare`` measures ours at ``--stacks``, then stops it and measures
``bench.naive_operator`` (under ``kopf run``) on the same stacks, control plane, Redis
and consumers; the tables then compare the two. ``--consumer ack`` replaces the
runners by ``bench.ack_consumer`` (no agent work) so that the operator is measured
alone. ``--no-status-warmup`` starts a window once every stack has ticked in Redis and
carries the operator's finalizer, without waiting for every status to show a tick.

The Markdown tables go to stdout, progress to stderr. A measurement that fails (warm-up
timed out, a process exited) gets a row saying why, the other still runs, and the exit
code is 1. Every process it starts is stopped on the way out, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import re
import shutil
import ssl
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from agentstack_core.keys import FleetKeys, StackKeys, StackRef
from agentstack_core.protocol import LANES, RUNNERS_GROUP
from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.processes import LOOPBACK, DevEnvError, ManagedProcess, free_port
from agentstack_devkit.redisserver import RedisServer
from agentstack_devkit.toolchain import controlplane_binaries, find_repo_root
from agentstack_operator.finalizing import FINALIZER

GROUP, VERSION, PLURAL = "agentstack.dev", "v1alpha1", "agentstacks"
CRD_NAME = f"{PLURAL}.{GROUP}"
TICK_INTERVAL = 5
"""``tickIntervalSeconds`` of every stack, unless ``--interval`` says otherwise."""
CREATE_WORKERS = 16
LEADER_TIMEOUT = 60.0
WRITE_VERBS = frozenset(
    {"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY", "CREATE", "UPDATE"}
)
"""``apiserver_request_total`` verbs that change state (CREATE/UPDATE are audit spellings
of POST/PUT; listed so that no spelling is missed)."""
ETCD_WRITES = frozenset({"create", "update", "delete"})
"""``etcd_requests_total`` operations that write (``update`` is counted only when the
object changed: kube-apiserver skips the etcd transaction of a no-op update)."""
KEPT_ENV = frozenset({"AGENTSTACK_CACHE_DIR", "AGENTSTACK_REPO", "AGENTSTACK_STATE_DIR"})
"""``AGENTSTACK_*`` variables that locate things rather than tune the operator or runner."""
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_LOG_ISSUE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The benchmark could not measure (warm-up timed out, a process exited...)."""


# -- Prometheus text ---------------------------------------------------------------------


@dataclass(frozen=True)
class Metrics:
    """Samples of one ``/metrics`` scrape: metric name → [(labels, value)]."""

    samples: dict[str, list[tuple[dict[str, str], float]]]

    @classmethod
    def parse(cls, text: str, prefix: str | tuple[str, ...] = "") -> Metrics:
        """Parse the text format; only names starting with ``prefix`` (one of) are kept."""
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for line in text.splitlines():
            if not line.startswith(prefix) or line.startswith("#"):
                continue
            match = _SAMPLE.match(line)
            if match is None:
                continue
            name, labels, value = match.groups()
            parsed = dict(_LABEL.findall(labels or ""))
            samples.setdefault(name, []).append((parsed, float(value)))
        return cls(samples)

    def total(self, name: str, where: Callable[[dict[str, str]], bool] | None = None) -> float:
        """Sum of ``name`` over every label set (that ``where`` accepts)."""
        return sum(
            value for labels, value in self.samples.get(name, []) if where is None or where(labels)
        )

    def by(self, name: str, *keys: str) -> Counter[tuple[str, ...]]:
        """``name`` summed per combination of the label values ``keys``."""
        counts: Counter[tuple[str, ...]] = Counter()
        for labels, value in self.samples.get(name, []):
            counts[tuple(labels.get(key, "") for key in keys)] += round(value)
        return counts

    def buckets(self, name: str) -> dict[float, float]:
        """Cumulative bucket counts of histogram ``name`` (label sets summed), by ``le``."""
        counts: dict[float, float] = {}
        for labels, value in self.samples.get(f"{name}_bucket", []):
            bound = float(labels["le"])  # "+Inf" parses as inf
            counts[bound] = counts.get(bound, 0.0) + value
        return counts


def bucket_delta(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def histogram_quantile(fraction: float, buckets: dict[float, float]) -> float:
    """Quantile from cumulative bucket counts, as Prometheus' ``histogram_quantile``.

    The rank ``fraction * count`` falls into the first bucket whose cumulative count
    reaches it; the value is interpolated linearly between that bucket's lower and upper
    bound (the lowest bucket starts at 0). A rank in the ``+Inf`` bucket returns the
    highest finite bound: the histogram cannot say more.
    """
    ordered = sorted(buckets.items())
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]) or ordered[-1][1] <= 0:
        return math.nan
    rank = fraction * ordered[-1][1]
    lower, below = 0.0, 0.0
    for index, (upper, count) in enumerate(ordered):
        if count >= rank:
            if math.isinf(upper):
                return ordered[-2][0]
            if index == 0 and upper <= 0:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return ordered[-2][0]


# -- processes and counters ---------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 onwards
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def process_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def machine_cpu_seconds() -> float:
    """Busy CPU time of all cores since boot, from the first line of ``/proc/stat``."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


def http_get(url: str, *, token: str | None = None, ca: Path | None = None) -> str:
    request = urllib.request.Request(url)  # noqa: S310 - loopback http(s) only
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
    with urllib.request.urlopen(request, timeout=30, context=context) as response:  # noqa: S310
        return str(response.read().decode())


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def log_lines(path: Path, start: int = 0, end: int | None = None) -> list[str]:
    """The lines of a log between two byte offsets (the whole log by default)."""
    try:
        with path.open("rb") as log:
            log.seek(start)
            text = log.read(-1 if end is None else max(0, end - start))
    except OSError:
        return []
    return text.decode(errors="replace").splitlines()


def log_issues(lines: Sequence[str], limit: int = 5) -> tuple[int, list[str]]:
    """Warning/error lines of a log: how many, and the first ``limit`` distinct ones."""
    hits = [line[:300] for line in lines if _LOG_ISSUE.search(line)]
    distinct = list(dict.fromkeys(hits))
    return len(hits), distinct[:limit]


@dataclass
class Processes:
    """Everything the benchmark started, by the label its CPU column carries."""

    control_plane: ControlPlane
    redis: RedisServer
    operator: ManagedProcess
    operator_port: int
    runners: list[tuple[ManagedProcess, int]]

    def by_label(self) -> dict[str, ManagedProcess]:
        found = {"operator": self.operator}
        found.update({process.name: process for process, _port in self.runners})
        found.update({process.name: process for process in self.control_plane.processes})
        found["redis-server"] = self.redis.process
        return found

    @property
    def ours(self) -> list[str]:
        """Labels of the agentstack processes (their logs are checked for warnings)."""
        return ["operator", *[process.name for process, _port in self.runners]]

    def check_alive(self) -> None:
        for process in self.by_label().values():
            process.check_alive()


@dataclass(frozen=True)
class Snapshot:
    """Counters read at one instant; a window is the difference of two."""

    at: float
    operator: Metrics
    runners: list[Metrics]
    apiserver: Metrics
    cpu: dict[str, float]
    """CPU seconds per process label, plus ``driver`` (this process)."""
    machine_cpu: float


def snapshot(procs: Processes) -> Snapshot:
    cp = procs.control_plane
    apiserver = http_get(f"{cp.url}/metrics", token=cp.admin_token, ca=cp.ca_path)
    cpu = {}
    for label, process in procs.by_label().items():
        assert process.pid is not None
        cpu[label] = process_cpu_seconds(process.pid)
    cpu["driver"] = time.process_time()
    return Snapshot(
        at=time.monotonic(),
        operator=Metrics.parse(
            http_get(f"http://{LOOPBACK}:{procs.operator_port}/metrics"), "agentstack_"
        ),
        runners=[
            Metrics.parse(http_get(f"http://{LOOPBACK}:{port}/metrics"), "agentstack_")
            for _process, port in procs.runners
        ],
        apiserver=Metrics.parse(apiserver, ("apiserver_request_total", "etcd_requests_total")),
        cpu=cpu,
        machine_cpu=machine_cpu_seconds(),
    )


def queue_depth(reader: redis.Redis) -> tuple[int, int]:
    """Requests no runner has received yet (lag) and received but unacknowledged."""
    lag = pending = 0
    for lane in LANES:
        with contextlib.suppress(redis.ResponseError):  # no lane stream yet
            for group in reader.xinfo_groups(FleetKeys.lane(lane)):
                if group["name"] == RUNNERS_GROUP:
                    lag += int(group.get("lag") or 0)
                    pending += int(group.get("pending") or 0)
    return lag, pending


class WakeUps:
    """A control for scheduling delay: how late a thread of this (idle) process wakes up.

    A thread sleeps 10 ms again and again during the window and records how much later
    than asked it woke. It shares the machine's cores with everything measured but has
    no work of its own, so its lateness is what CPU contention alone costs a process
    that wakes on a timer, as the operator's dispatcher does. A dispatch lag far above
    it is the operator's own event loop being busy, not the machine.
    """

    PERIOD = 0.01

    def __init__(self) -> None:
        self.late: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wakeups", daemon=True)

    def __enter__(self) -> WakeUps:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            asked = time.perf_counter()
            time.sleep(self.PERIOD)
            self.late.append(max(0.0, time.perf_counter() - asked - self.PERIOD))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (an observed value)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


# -- the fleet of stacks ------------------------------------------------------------------


def stack_refs(namespaces: Sequence[str], start: int, stop: int) -> list[StackRef]:
    return [StackRef(namespaces[i % len(namespaces)], f"s{i:04d}") for i in range(start, stop)]


def stack_body(
    ref: StackRef, interval: int, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The default four-agent team on the offline scripted provider, every ``interval`` s
    (and ``extra`` spec fields)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AgentStack",
        "metadata": {"name": ref.name, "namespace": ref.namespace},
        "spec": {
            "goal": f"Write the release notes of component {ref.name}",
            "tickIntervalSeconds": interval,
            "llm": {"model": {"provider": "scripted"}},
            **(extra or {}),
        },
    }


def create_stacks(
    api: client.ApiClient,
    refs: Sequence[StackRef],
    interval: int,
    extra: Callable[[StackRef], Mapping[str, Any]] | None = None,
) -> float:
    """Create the stacks concurrently (each with ``extra(ref)`` spec fields); returns the
    seconds it took."""
    custom = client.CustomObjectsApi(api)
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=CREATE_WORKERS, thread_name_prefix="create")
    try:
        futures = [
            pool.submit(
                custom.create_namespaced_custom_object,
                GROUP,
                VERSION,
                ref.namespace,
                PLURAL,
                stack_body(ref, interval, extra(ref) if extra else None),
            )
            for ref in refs
        ]
        for future in futures:
            try:
                future.result()
            except ApiException as exc:
                raise BenchError(f"creating a stack failed: {exc.status} {exc.reason}") from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: drop what has not started
    return time.monotonic() - started


def ticked_in_redis(reader: redis.Redis, refs: Sequence[StackRef]) -> int:
    """Stacks with at least one executed tick (the runners' usage counter)."""
    pipe = reader.pipeline(transaction=False)
    for ref in refs:
        pipe.hget(StackKeys(ref).usage, "ticks")
    values: list[str | None] = pipe.execute()
    return len([value for value in values if value and int(value) >= 1])


def _listed(api: client.ApiClient, refs: Sequence[StackRef]) -> list[dict[str, Any]]:
    wanted = {str(ref) for ref in refs}
    listed = cast(
        dict[str, Any],
        client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, PLURAL),
    )
    return [
        item
        for item in listed["items"]
        if f"{item['metadata']['namespace']}/{item['metadata']['name']}" in wanted
    ]


def ticked_in_status(api: client.ApiClient, refs: Sequence[StackRef]) -> int:
    """Stacks whose status (written by the operator) shows at least one tick."""
    items = _listed(api, refs)
    return sum(1 for item in items if int((item.get("status") or {}).get("ticks") or 0) >= 1)


def onboarded(api: client.ApiClient, refs: Sequence[StackRef]) -> int:
    """Stacks the operator has taken on: they carry its finalizer (one patch each)."""
    items = _listed(api, refs)
    return sum(1 for item in items if FINALIZER in (item["metadata"].get("finalizers") or []))


def wait_for(
    what: str,
    count: Callable[[], int],
    target: int,
    deadline: float,
    procs: Processes,
) -> None:
    """Poll ``count`` once a second until it reaches ``target``, or fail at ``deadline``."""
    last_report = time.monotonic()
    while True:
        procs.check_alive()
        done = count()
        if done >= target:
            return
        now = time.monotonic()
        if now >= deadline:
            raise BenchError(f"warm-up: {done} of {target} {what} in time")
        if now - last_report >= 10:
            _progress(f"  {done} of {target} {what}...")
            last_report = now
        time.sleep(1.0)


# -- one measurement ----------------------------------------------------------------------


@dataclass
class Measurement:
    stacks: int
    values: dict[str, float]
    notes: list[str] = field(default_factory=list)
    name: str = ""
    """The row's label when it is not just the fleet size (``--compare``)."""


@dataclass(frozen=True)
class Failure:
    stacks: int
    error: str
    notes: list[str]
    name: str = ""


def _is_write(labels: dict[str, str]) -> bool:
    return labels.get("verb", "").upper() in WRITE_VERBS


def _writes(
    after: Metrics, before: Metrics, resource: str | None, subresource: str | None = None
) -> float:
    def match(labels: dict[str, str]) -> bool:
        return (
            _is_write(labels)
            and (resource is None or labels.get("resource") == resource)
            and (subresource is None or labels.get("subresource", "") == subresource)
        )

    name = "apiserver_request_total"
    return after.total(name, match) - before.total(name, match)


def _etcd_writes(after: Metrics, before: Metrics, resource: str | None) -> float:
    """Writes kube-apiserver sent to etcd: a PATCH that changes nothing sends none."""

    def match(labels: dict[str, str]) -> bool:
        return labels.get("operation") in ETCD_WRITES and (
            resource is None or labels.get("resource") == resource
        )

    name = "etcd_requests_total"
    return after.total(name, match) - before.total(name, match)


def _runner_ticks(snap: Snapshot) -> Counter[tuple[str, ...]]:
    total: Counter[tuple[str, ...]] = Counter()
    for metrics in snap.runners:
        total.update(metrics.by("agentstack_runner_ticks_total", "outcome", "reason"))
    return total


def _runner_buckets(snap: Snapshot, name: str) -> dict[float, float]:
    total: dict[float, float] = {}
    for metrics in snap.runners:
        for bound, count in metrics.buckets(name).items():
            total[bound] = total.get(bound, 0.0) + count
    return total


def evaluate(stacks: int, interval: int, before: Snapshot, after: Snapshot) -> Measurement:
    """Turn two snapshots into the table's values and notes."""
    seconds = after.at - before.at
    ticks = _runner_ticks(after)
    ticks.subtract(_runner_ticks(before))
    executed = sum(n for (outcome, _r), n in ticks.items() if outcome in ("Succeeded", "Failed"))
    failed = sum(n for (outcome, _r), n in ticks.items() if outcome == "Failed")
    dropped = sum(n for (outcome, _r), n in ticks.items() if outcome == "Dropped")
    per_tick = 1 / executed if executed else math.nan
    lag = bucket_delta(
        after.operator.buckets("agentstack_scheduler_dispatch_lag_seconds"),
        before.operator.buckets("agentstack_scheduler_dispatch_lag_seconds"),
    )
    queue_lag = bucket_delta(
        _runner_buckets(after, "agentstack_runner_queue_lag_seconds"),
        _runner_buckets(before, "agentstack_runner_queue_lag_seconds"),
    )
    op_after, op_before = after.operator, before.operator
    status = op_after.total("agentstack_operator_status_writes_total") - op_before.total(
        "agentstack_operator_status_writes_total"
    )
    events = op_after.total("agentstack_operator_events_total") - op_before.total(
        "agentstack_operator_events_total"
    )
    dispatched = op_after.total("agentstack_scheduler_ticks_dispatched_total") - op_before.total(
        "agentstack_scheduler_ticks_dispatched_total"
    )
    api_a, api_b = after.apiserver, before.apiserver
    api_total = _writes(api_a, api_b, None)
    cpu = {label: after.cpu[label] - before.cpu[label] for label in after.cpu}
    machine = after.machine_cpu - before.machine_cpu
    values = {
        "seconds": seconds,
        "expected": stacks * seconds / interval,
        "dispatched": dispatched,
        "executed": executed,
        "ticks_per_second": executed / seconds,
        "failed": failed,
        "dropped": dropped,
        "lag_p50": histogram_quantile(0.5, lag),
        "lag_p90": histogram_quantile(0.9, lag),
        "lag_p99": histogram_quantile(0.99, lag),
        "queue_lag_p50": histogram_quantile(0.5, queue_lag),
        "queue_lag_p99": histogram_quantile(0.99, queue_lag),
        "status_writes": status,
        "status_per_second": status / seconds,
        "status_per_tick": status * per_tick,
        "events_per_tick": events * per_tick,
        "api_status_per_tick": _writes(api_a, api_b, PLURAL, "status") * per_tick,
        "api_stack_per_tick": _writes(api_a, api_b, PLURAL, "") * per_tick,
        "api_events_per_tick": _writes(api_a, api_b, "events") * per_tick,
        "api_leases_per_tick": _writes(api_a, api_b, "leases") * per_tick,
        "api_total_per_tick": api_total * per_tick,
        "api_total_per_second": api_total / seconds,
        "etcd_stack_per_tick": _etcd_writes(api_a, api_b, PLURAL) * per_tick,
        "etcd_total_per_tick": _etcd_writes(api_a, api_b, None) * per_tick,
        "cpu_other": 100 * (machine - sum(cpu.values())) / seconds,
        "cpu_machine": 100 * machine / seconds,
    }
    values.update({f"cpu_{label}": 100 * used / seconds for label, used in cpu.items()})
    values["operator_cpu_per_1000"] = cpu["operator"] * 1000 * per_tick
    values["apiserver_cpu_per_tick"] = cpu["kube-apiserver"] * per_tick
    notes = _window_notes(ticks, after, before, events)
    return Measurement(stacks=stacks, values=values, notes=notes)


def _window_notes(
    ticks: Counter[tuple[str, ...]], after: Snapshot, before: Snapshot, events: float
) -> list[str]:
    notes: list[str] = []
    unusual = {key: n for key, n in ticks.items() if n and key[0] != "Succeeded"}
    if unusual:
        text = ", ".join(f"{o}/{r}: {n:g}" for (o, r), n in sorted(unusual.items()))
        notes.append(f"ticks not succeeded in the window: {text}")
    if events:
        reasons = after.operator.by("agentstack_operator_events_total", "reason")
        reasons.subtract(before.operator.by("agentstack_operator_events_total", "reason"))
        text = ", ".join(f"{r[0]}: {n:g}" for r, n in reasons.items() if n)
        notes.append(f"Events posted in the window: {text}")
    writes = after.apiserver.by(
        "apiserver_request_total", "verb", "resource", "subresource", "code"
    )
    writes.subtract(
        before.apiserver.by("apiserver_request_total", "verb", "resource", "subresource", "code")
    )
    top = [
        f"{verb} {resource}{'/' + sub if sub else ''} {code}: {n:g}"
        for (verb, resource, sub, code), n in writes.most_common()
        if n > 0 and verb.upper() in WRITE_VERBS
    ]
    notes.append("API-server writes in the window (verb resource code: count): " + "; ".join(top))
    return notes


def measure(
    procs: Processes,
    reader: redis.Redis,
    api: client.ApiClient,
    refs: Sequence[StackRef],
    new: Sequence[StackRef],
    window: float,
    interval: int,
    status_warmup: bool = True,
) -> Measurement:
    """Create ``new`` (joining the stacks already there), warm up, measure one window."""
    notes: list[str] = []
    _progress(f"creating {len(new)} stacks ({len(refs)} in all)...")
    took = create_stacks(api, new, interval)
    notes.append(f"created {len(new)} stacks in {took:.1f} s ({len(new) / took:.0f}/s)")
    warm_from = time.monotonic()
    deadline = warm_from + max(120.0, 0.3 * len(refs))
    wait_for(
        "stacks ticked (Redis)", lambda: ticked_in_redis(reader, refs), len(refs), deadline, procs
    )
    in_redis = time.monotonic() - warm_from
    if status_warmup:
        wait_for(
            "stacks ticked (status)",
            lambda: ticked_in_status(api, refs),
            len(refs),
            deadline,
            procs,
        )
    else:  # at least the operator's onboarding of the new stacks is over
        wait_for("stacks onboarded", lambda: onboarded(api, refs), len(refs), deadline, procs)
    warm = time.monotonic() - warm_from
    notes.append(
        f"warm-up: every stack ticked {in_redis:.0f} s after creation (Redis), "
        + (
            f"and showed it in status after {warm:.0f} s"
            if status_warmup
            else f"and {ticked_in_status(api, refs)} of them showed it in status (not waited for)"
        )
    )
    _progress(f"  warm after {warm:.0f} s; measuring {window:g} s...")
    return measure_window(procs, reader, len(refs), window, interval, notes)


def measure_naive(
    procs: Processes, reader: redis.Redis, stacks: int, window: float, interval: int
) -> Measurement:
    """The naive operator on the stacks already there: warm once every stack's timer
    has fired twice (Kopf starts them one by one), then one window."""
    url = f"http://{LOOPBACK}:{procs.operator_port}/metrics"
    name = "agentstack_scheduler_ticks_dispatched_total"
    warm_from = time.monotonic()
    wait_for(
        "timer firings (two per stack)",
        lambda: int(Metrics.parse(http_get(url), name).total(name)),
        2 * stacks,
        warm_from + max(120.0, 0.3 * stacks) + 2 * interval,
        procs,
    )
    warm = time.monotonic() - warm_from
    _progress(f"  warm after {warm:.0f} s; measuring {window:g} s...")
    notes = [f"warm-up: every timer fired twice (on average) {warm:.0f} s after the start"]
    return measure_window(procs, reader, stacks, window, interval, notes)


def measure_window(
    procs: Processes,
    reader: redis.Redis,
    stacks: int,
    window: float,
    interval: int,
    notes: list[str],
) -> Measurement:
    """One measured window over a warm fleet of ``stacks``."""
    logs = {label: p.log_path for label, p in procs.by_label().items() if label in procs.ours}
    offsets = {label: log_size(path) for label, path in logs.items()}
    assert procs.operator.pid is not None
    rss_start = process_rss_mib(procs.operator.pid)
    before = snapshot(procs)
    queue_max = 0
    end = before.at + window
    with WakeUps() as wakeups:
        while (now := time.monotonic()) < end:
            procs.check_alive()
            queue_max = max(queue_max, queue_depth(reader)[0])
            time.sleep(min(1.0, end - now))
    after = snapshot(procs)
    lag, pending = queue_depth(reader)
    result = evaluate(stacks, interval, before, after)
    result.values.update(
        {
            "queue_max": max(queue_max, lag),
            "queue_end": lag,
            "in_flight_end": pending,
            "operator_rss_start": rss_start,
            "operator_rss": process_rss_mib(procs.operator.pid),
            "wakeup_p99": percentile(wakeups.late, 0.99),
            "wakeup_max": max(wakeups.late, default=math.nan),
        }
    )
    result.notes[:0] = notes
    for label, path in logs.items():
        lines = log_lines(path, offsets[label], log_size(path))
        count, first = log_issues(lines)
        result.notes.append(
            f"{label} log, during the window: {len(lines)} lines "
            f"({len(lines) / result.values['seconds']:.1f}/s), {count} warnings/errors"
            + (":" if count else "")
        )
        result.notes.extend(f"    {line}" for line in first)
    _progress(
        f"  {result.values['executed']:g} ticks executed of "
        f"{result.values['expected']:.0f} due; dispatch lag p99 "
        f"{_seconds(result.values['lag_p99'])}; "
        f"{result.values['status_per_tick']:.2f} status writes per tick"
    )
    return result


# -- reporting ----------------------------------------------------------------------------


def _seconds(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _count(value: float) -> str:
    return f"{value:.0f}"


def _rate(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def _per_tick(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _cpu(value: float) -> str:
    return f"{max(0.0, value):.0f} %"  # "other" can come out a hair below 0: clock skew


def _mib(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f} MiB"


Column = tuple[str, str, Callable[[float], str]]
"""(value key, header, formatter)."""


def tables(outcomes: Sequence[Measurement | Failure], runner_labels: Sequence[str]) -> str:
    """Three Markdown tables (ticks and lag, API writes, CPU), with a ratio row each."""
    ticks: list[Column] = [
        ("seconds", "window", lambda v: f"{v:.0f} s"),
        ("expected", "ticks due", _count),
        ("dispatched", "dispatched", _count),
        ("executed", "executed", _count),
        ("ticks_per_second", "ticks/s", _rate),
        ("dropped", "dropped", _count),
        ("failed", "failed", _count),
        ("lag_p50", "dispatch lag p50", _seconds),
        ("lag_p90", "dispatch lag p90", _seconds),
        ("lag_p99", "dispatch lag p99", _seconds),
        ("queue_lag_p50", "runner queue lag p50", _seconds),
        ("queue_lag_p99", "runner queue lag p99", _seconds),
        ("queue_max", "queue max", _count),
        ("queue_end", "queue end", _count),
        ("in_flight_end", "in flight end", _count),
        ("wakeup_p99", "control wake-up p99", _seconds),
        ("wakeup_max", "control wake-up max", _seconds),
    ]
    writes: list[Column] = [
        ("executed", "executed ticks", _count),
        ("status_writes", "status writes (operator)", _count),
        ("status_per_second", "status writes/s", _rate),
        ("status_per_tick", "status writes/tick", _per_tick),
        ("events_per_tick", "Events/tick (operator)", _per_tick),
        ("api_status_per_tick", "API agentstacks/status /tick", _per_tick),
        ("api_stack_per_tick", "API agentstacks /tick", _per_tick),
        ("api_events_per_tick", "API events /tick", _per_tick),
        ("api_leases_per_tick", "API leases /tick", _per_tick),
        ("api_total_per_tick", "API all writes /tick", _per_tick),
        ("api_total_per_second", "API all writes/s", _rate),
        ("etcd_stack_per_tick", "etcd agentstacks writes /tick", _per_tick),
        ("etcd_total_per_tick", "etcd all writes /tick", _per_tick),
    ]
    cpu: list[Column] = [
        ("cpu_operator", "operator", _cpu),
        *[(f"cpu_{label}", label, _cpu) for label in runner_labels],
        ("cpu_kube-apiserver", "kube-apiserver", _cpu),
        ("cpu_etcd", "etcd", _cpu),
        ("cpu_kube-controller-manager", "kube-controller-manager", _cpu),
        ("cpu_redis-server", "redis-server", _cpu),
        ("cpu_driver", "driver", _cpu),
        ("cpu_other", "other", _cpu),
        ("cpu_machine", "machine (of 200 %)", _cpu),
        ("operator_cpu_per_1000", "operator CPU per 1,000 ticks", _seconds),
        ("apiserver_cpu_per_tick", "kube-apiserver CPU per tick", _seconds),
        ("operator_rss_start", "operator RSS at start", _mib),
        ("operator_rss", "operator RSS at end", _mib),
    ]
    return "\n\n".join(
        [
            "Ticks and dispatch lag:\n\n" + _table(outcomes, ticks),
            "API-server writes (per executed tick unless marked /s):\n\n"
            + _table(outcomes, writes),
            "CPU over the window, % of one core (2 cores = 200 %), and the operator's "
            "memory:\n\n" + _table(outcomes, cpu),
        ]
    )


def _table(outcomes: Sequence[Measurement | Failure], columns: Sequence[Column]) -> str:
    header = "| stacks | " + " | ".join(title for _key, title, _fmt in columns) + " |"
    rows = [header, "|" + "---|" * (len(columns) + 1)]
    measured = [m for m in outcomes if isinstance(m, Measurement)]
    for m in outcomes:
        if isinstance(m, Failure):
            cells = [f"**failed**: {m.error}"] + [""] * (len(columns) - 1)
        else:
            cells = [fmt(m.values.get(key, math.nan)) for key, _title, fmt in columns]
        rows.append(f"| {m.name or m.stacks} | " + " | ".join(cells) + " |")
    if len(measured) >= 2:
        base, top = measured[0], measured[-1]
        cells = []
        for key, _title, _fmt in columns:
            a, b = base.values.get(key, math.nan), top.values.get(key, math.nan)
            ok = not (math.isnan(a) or math.isnan(b)) and a > 0
            cells.append(f"{b / a:.2f}x" if ok else "-")
        title = f"{top.name or top.stacks} vs {base.name or base.stacks}"
        rows.append(f"| **{title}** | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def notes(outcomes: Sequence[Measurement | Failure], log_notes: Sequence[str]) -> str:
    lines: list[str] = []
    for m in outcomes:
        lines.append(f"- {m.name or m.stacks} stacks:")
        lines.extend(f"    - {note}" for note in m.notes)
    lines.extend(log_notes)
    return "\n".join(lines)


def _logs_report(procs: Processes) -> list[str]:
    lines: list[str] = []
    processes = procs.by_label()
    for label in procs.ours:  # the control plane's logs have formats of their own
        count, first = log_issues(log_lines(processes[label].log_path))
        if count:
            lines.append(f"- {label} log, whole run: {count} warning/error lines, first ones:")
            lines.extend(f"    {line}" for line in first)
        else:
            lines.append(f"- {label} log: no warnings or errors")
    return lines


# -- running ------------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _drop_tuning_env() -> None:
    """The operator and runners inherit this environment: measure the defaults."""
    for name in sorted(os.environ):
        if name.startswith("AGENTSTACK_") and name not in KEPT_ENV:
            _progress(f"ignoring {name}={os.environ[name]}: the benchmark measures defaults")
            del os.environ[name]


def kube_client(kubeconfig: Path) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = CREATE_WORKERS
    return client.ApiClient(configuration)


def _apply_crd(control_plane: ControlPlane) -> None:
    crd = find_repo_root() / "crds" / "agentstack.dev_agentstacks.yaml"
    for args in (
        ("apply", "--server-side", "-f", str(crd)),
        ("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}"),
    ):
        done = control_plane.kubectl(*args)
        if done.returncode != 0:
            raise BenchError(f"kubectl {args[0]} failed: {done.stderr.strip()}")


def _wait_leader(procs: Processes) -> None:
    deadline = time.monotonic() + LEADER_TIMEOUT
    url = f"http://{LOOPBACK}:{procs.operator_port}/metrics"
    name = "agentstack_operator_leader"
    while Metrics.parse(http_get(url), name).total(name) < 1:
        procs.operator.check_alive()
        if time.monotonic() >= deadline:
            raise BenchError(f"the operator did not become leader within {LEADER_TIMEOUT:g}s")
        time.sleep(0.5)


def _bench_process(
    fleet: Fleet,
    name: str,
    module: str,
    port_variable: str,
    metric: str,
    *,
    command: Sequence[str] = (),
    **env: str,
) -> tuple[ManagedProcess, int]:
    """``python -m bench.<module>`` (or ``command``) configured like the product's
    processes, ready once its metrics page shows ``metric``."""
    port = free_port()
    process = ManagedProcess(
        name,
        list(command) or [sys.executable, "-m", f"bench.{module}"],
        log_path=fleet.logs_dir / f"{name}-{module}.log",
        env={
            **os.environ,
            "KUBECONFIG": str(fleet.kubeconfig),
            "REDIS_URL": fleet.redis_url,
            port_variable: str(port),
            "PYTHONUNBUFFERED": "1",
            **env,
        },
        cwd=Path(__file__).resolve().parents[1],
    )
    process.start()
    fleet.processes.append(process)

    def ready() -> bool | None:
        with contextlib.suppress(OSError):
            return True if metric in http_get(f"http://{LOOPBACK}:{port}/metrics") else None
        return None

    process.wait_ready(ready, timeout=60)
    return process, port


def _naive_operator(fleet: Fleet, interval: int) -> tuple[ManagedProcess, int]:
    """The baseline (``bench.naive_operator``), run the way a Kopf user runs it: by
    Kopf's command line (which puts it on uvloop, as ours runs)."""
    return _bench_process(
        fleet,
        "operator",
        "naive_operator",
        "AGENTSTACK_METRICS_PORT",
        "agentstack_scheduler",
        command=[
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--quiet",
            "--standalone",
            "--all-namespaces",
            "-m",
            "bench.naive_operator",
        ],
        NAIVE_TICK_INTERVAL=str(interval),
    )


def _consumer(fleet: Fleet, name: str) -> tuple[ManagedProcess, int]:
    """A minimal tick consumer instead of a runner (``bench.ack_consumer``)."""
    return _bench_process(
        fleet,
        name,
        "ack_consumer",
        "AGENTSTACK_RUNNER_METRICS_PORT",
        "agentstack_runner_queue_lag",
        AGENTSTACK_RUNNER_ID=name,
    )


@dataclass(frozen=True)
class ApiFleet:
    """A fleet with one read API: what the latency benches drive."""

    procs: Processes
    kube: client.ApiClient
    reader: redis.Redis
    api_url: str


@contextlib.contextmanager
def api_fleet(prefix: str, runners: int, namespace: str) -> Iterator[ApiFleet]:
    """:func:`environment` (runners at concurrency 64) plus one ``agentstack api``, a
    client of the API server and of Redis, and ``namespace`` created."""
    log_dir = Path(tempfile.mkdtemp(prefix=prefix))
    with environment(log_dir, runners, 64, {}) as (procs, plane, server, fleet):
        _api, port = fleet.api()
        kube = kube_client(plane.kubeconfig_path)
        reader = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            client.CoreV1Api(kube).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
            )
            yield ApiFleet(procs, kube, reader, f"http://127.0.0.1:{port}")
        finally:
            reader.close()
            kube.close()  # type: ignore[no-untyped-call]


def ms(value: float) -> str:
    return f"{value * 1000:.0f} ms"


def spread(values: Sequence[float]) -> str:
    """``p50 | p90 | p99 | max`` of latencies, as table cells."""
    return " | ".join(
        ms(v) for v in (*(percentile(values, f) for f in (0.5, 0.9, 0.99)), max(values))
    )


def bench_main(run: Callable[[], str]) -> int:
    """Run a bench that prints its table last: its failure said in one line (1), an
    interruption after every process was stopped (130)."""
    try:
        report = run()
    except (BenchError, DevEnvError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; every process started was stopped", file=sys.stderr)
        return 130
    print(report)
    return 0


@contextlib.contextmanager
def environment(
    log_dir: Path,
    runners: int,
    concurrency: int,
    operator_env: dict[str, str],
    naive_interval: int | None = None,
    consumer: str = "runners",
) -> Iterator[tuple[Processes, ControlPlane, RedisServer, Fleet]]:
    """Control plane, Redis, CRD, one operator (ours, or the naive baseline when
    ``naive_interval`` is given) and the runners (or minimal consumers); all stopped
    on exit."""
    with contextlib.ExitStack() as stack:
        _progress("starting the control plane (binaries are built on first use)...")
        control_plane = stack.enter_context(
            ControlPlane(controlplane_binaries(), data_dir=log_dir / "controlplane")
        )
        redis_server = stack.enter_context(RedisServer(data_dir=log_dir / "redis"))
        _apply_crd(control_plane)
        fleet = Fleet(
            kubeconfig=control_plane.kubeconfig_path,
            redis_url=redis_server.url,
            logs_dir=log_dir / "fleet",
        )
        stack.callback(fleet.stop)
        which = "the naive baseline operator" if naive_interval else "the operator"
        _progress(f"starting {which} and {runners} {consumer}...")
        if naive_interval:
            operator, port = _naive_operator(fleet, naive_interval)
        else:
            operator, port = fleet.operator(**operator_env)
        if consumer == "ack":
            started = [_consumer(fleet, f"ack-{index}") for index in range(runners)]
        else:
            started = [
                fleet.runner(f"runner-{index}", AGENTSTACK_RUNNER_CONCURRENCY=str(concurrency))
                for index in range(runners)
            ]
        procs = Processes(control_plane, redis_server, operator, port, started)
        if not naive_interval:
            _wait_leader(procs)
        yield procs, control_plane, redis_server, fleet


def _measure_naive_after(
    procs: Processes, fleet: Fleet, reader: redis.Redis, args: argparse.Namespace
) -> Measurement | Failure:
    """``--compare``: stop ours, start the naive operator on the same stacks, control
    plane, Redis and consumers, and measure it the same way."""
    _progress("stopping our operator; starting the naive Kopf operator on the same stacks...")
    procs.operator.stop(timeout=20)
    fleet.processes.remove(procs.operator)
    procs.operator, procs.operator_port = _naive_operator(fleet, args.interval)
    name = f"{args.stacks}, naive"
    try:
        result = measure_naive(procs, reader, args.stacks, args.window, args.interval)
    except (BenchError, DevEnvError) as exc:
        error = str(exc).splitlines()[0]
        _progress(f"  failed: {error}")
        return Failure(args.stacks, error, [], name=name)
    result.name = name
    return result


def run(args: argparse.Namespace, log_dir: Path) -> tuple[list[Measurement | Failure], str]:
    compare = args.compare
    sizes = (
        [args.baseline, args.stacks]
        if args.baseline < args.stacks and not compare
        else [args.stacks]
    )
    namespaces = [f"bench-{index}" for index in range(args.namespaces)]
    outcomes: list[Measurement | Failure] = []
    operator_env = dict(setting.split("=", 1) for setting in args.operator_env)
    naive = args.interval if args.operator == "naive" and not compare else None
    with environment(
        log_dir, args.runners, args.concurrency, operator_env, naive, args.consumer
    ) as started:
        procs, control_plane, server, fleet = started
        api = kube_client(control_plane.kubeconfig_path)
        reader = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            core = client.CoreV1Api(api)
            for namespace in namespaces:
                core.create_namespace(
                    client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
                )
            existing = 0
            for size in sizes:
                refs = stack_refs(namespaces, 0, size)
                new = refs[existing:]
                existing = size
                try:
                    outcomes.append(
                        measure(
                            procs,
                            reader,
                            api,
                            refs,
                            new,
                            args.window,
                            args.interval,
                            status_warmup=not args.no_status_warmup,
                        )
                    )
                except (BenchError, DevEnvError) as exc:
                    error = str(exc).splitlines()[0]
                    _progress(f"  failed: {error}")
                    outcomes.append(Failure(size, error, []))
                    procs.check_alive()  # a dead process ends the run; a slow warm-up not
            if compare:
                outcomes[-1] = dataclasses.replace(outcomes[-1], name=f"{args.stacks}, ours")
                outcomes.append(_measure_naive_after(procs, fleet, reader, args))
            log_notes = _logs_report(procs)
        finally:
            reader.close()
            api.close()  # type: ignore[no-untyped-call]
    runner_labels = [process.name for process, _port in procs.runners]
    settings = ", ".join(args.operator_env) or "default settings"
    which = "the naive Kopf baseline (bench.naive_operator)" if naive else f"ours ({settings})"
    if compare:
        which += ", then on the same stacks the naive Kopf baseline (bench.naive_operator)"
    consumers = (
        f"{args.runners} minimal consumer(s) (bench.ack_consumer)"
        if args.consumer == "ack"
        else f"{args.runners} runner(s) at concurrency {args.concurrency}"
    )
    setup = (
        f"Stacks at tickIntervalSeconds {args.interval} in {args.namespaces} namespaces; one "
        f"operator: {which}; {consumers}; measured window {args.window:g} s after warm-up."
    )
    report = tables(outcomes, runner_labels) + "\n\n" + notes(outcomes, log_notes)
    return outcomes, f"{setup}\n\n{report}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.operator_scale", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--stacks", type=int, help="stacks of the full fleet (default 1000)")
    parser.add_argument("--baseline", type=int, help="stacks of the baseline (default 100)")
    parser.add_argument("--window", type=float, help="seconds measured (default 60)")
    parser.add_argument("--quick", action="store_true", help="10 then 100 stacks, 20 s")
    parser.add_argument(
        "--interval",
        type=int,
        default=TICK_INTERVAL,
        help=f"tickIntervalSeconds of every stack (default {TICK_INTERVAL})",
    )
    parser.add_argument("--runners", type=int, default=2, help="runner processes (default 2)")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="AGENTSTACK_RUNNER_CONCURRENCY (default 64)"
    )
    parser.add_argument("--namespaces", type=int, default=4, help="namespaces (default 4)")
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an operator setting for an experiment (repeatable); the recorded runs use none",
    )
    parser.add_argument(
        "--operator",
        choices=("ours", "naive"),
        default="ours",
        help="the operator measured: ours, or the naive Kopf baseline (bench.naive_operator)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="measure ours at --stacks, then the naive Kopf operator on the same stacks",
    )
    parser.add_argument(
        "--consumer",
        choices=("runners", "ack"),
        default="runners",
        help="what executes ticks: real runners, or minimal consumers that only record "
        "and acknowledge them (bench.ack_consumer), to measure the operator alone",
    )
    parser.add_argument(
        "--no-status-warmup",
        action="store_true",
        help="start the window once every stack has ticked in Redis and carries the "
        "operator's finalizer, without waiting for every status to show "
        "a tick (a big fleet's first status writes take stacks / budget seconds)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the logs, print where")
    args = parser.parse_args(argv)
    if any("=" not in setting for setting in args.operator_env):
        parser.error("--operator-env takes NAME=VALUE")
    args.stacks = args.stacks or (100 if args.quick else 1000)
    args.baseline = args.baseline or (10 if args.quick else 100)
    args.window = args.window or (20.0 if args.quick else 60.0)
    _drop_tuning_env()
    log_dir = Path(tempfile.mkdtemp(prefix="agentstack-bench-scale-"))
    try:
        outcomes, report = run(args, log_dir)
    except KeyboardInterrupt:
        _progress("interrupted; every process started was stopped")
        return 130
    except (BenchError, DevEnvError) as exc:
        _progress(f"benchmark failed: {exc}")
        return 1
    finally:
        if args.keep_logs:
            _progress(f"logs: {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    print(f"\n{report}")
    return 1 if any(isinstance(outcome, Failure) for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
