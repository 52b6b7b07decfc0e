"""Fakes of the neighbours the operator's parts talk to (their Protocols), and stacks
to feed them: each part is tested alone, in memory, in milliseconds.

Every fake method is its real class's, with the same signature, and every Protocol
method the real class satisfies is on its fake: ``test_operator_fakes`` checks both."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any

import jsonpatch
from prometheus_client import REGISTRY

from agentstack_core.approvals import Approval
from agentstack_core.budget import Usage
from agentstack_core.keys import StackRef
from agentstack_core.kube.errors import InvalidError
from agentstack_core.kube.jobs import Job, Pod
from agentstack_core.kube.leases import Lease
from agentstack_core.protocol import TickRequest, TickResult, Wakeup
from agentstack_core.records import GoalRecord
from agentstack_core.redis.ledger import Spend
from agentstack_operator.folding import Progress
from agentstack_operator.index import StackIndex
from agentstack_operator.parts import OperatorParts
from agentstack_operator.scheduling import Cause
from agentstack_operator.stackstate import Event, StackRecord

GROQ_FROM_SECRET: dict[str, Any] = {
    "llm": {
        "model": {"provider": "groq", "name": "llama-3.3-70b-versatile"},
        "providers": {"groq": {"secretRef": {"name": "keys", "key": "groq"}}},
    }
}
"""Spec fields of a stack whose Groq key comes from the Secret ``keys``."""


def manifest(
    name: str = "demo",
    *,
    generation: int = 1,
    uid: str | None = None,
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """An AgentStack as a watch event carries it (namespace ``team``)."""
    return {
        "metadata": {
            "namespace": "team",
            "name": name,
            "uid": uid or f"uid-{name}",
            "generation": generation,
            "creationTimestamp": "2026-11-24T00:00:00Z",
        },
        "spec": {"goal": "g", "tickIntervalSeconds": 10, **spec},
        "status": status or {},
    }


def indexed(*names: str, **spec: Any) -> StackIndex:
    """An index holding one stack per name, each with the same spec."""
    index = StackIndex()
    for name in names:
        index.observe(manifest(name, **spec))
    return index


def sample(name: str, **labels: str) -> float:
    """A metric's current value (0 when it has not been touched)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class FakeLanes:
    """TickSink: keeps what was sent."""

    def __init__(self) -> None:
        self.batches: list[list[TickRequest]] = []
        self.waiting = 0
        self.error: Exception | None = None
        """Raised by ``send`` while set (Redis down)."""

    @property
    def sent(self) -> list[TickRequest]:
        return [request for batch in self.batches for request in batch]

    async def send(self, requests: Sequence[TickRequest]) -> None:
        if self.error is not None:
            raise self.error
        self.batches.append(list(requests))

    async def pending(self) -> int:
        return self.waiting

    async def waiting_work(self) -> int:
        return self.waiting


class FakeKube:
    """JobCreator, StatusSink, EventSink, SecretReader, SecretStore and FinalizerKube, like the real
    ``Kube`` (every method with its signature: ``test_operator_fakes``), and a Lease no
    other replica contends for."""

    async def patch_budget_status(self, namespace: str, name: str, body: dict[str, Any]) -> bool:
        self.budget_writes += 1
        self.budget_status[(namespace, name)] = body
        return True

    async def keep_stack_quota(
        self, namespace: str, name: str, owner: tuple[str, str], max_stacks: int | None
    ) -> None:
        self.quota_writes += 1
        if max_stacks is None:
            self.quotas.pop((namespace, name), None)
        else:
            self.quotas[(namespace, name)] = (owner, max_stacks)

    async def post_budget_event(
        self, namespace: str, name: str, uid: str, reason: str, message: str, *, warning: bool
    ) -> None:
        self.budget_events.append((name, reason, message, warning))

    def __init__(self) -> None:
        self.jobs: list[tuple[str, dict[str, Any]]] = []
        self.job_error: Exception | None = None
        self.budget_status: dict[tuple[str, str], dict[str, Any]] = {}
        self.budget_writes = 0
        self.quotas: dict[tuple[str, str], tuple[tuple[str, str], int]] = {}
        self.quota_writes = 0
        self.budget_events: list[tuple[str, str, str, bool]] = []
        self.patches: list[tuple[StackRef, dict[str, Any]]] = []
        self.missing: set[StackRef] = set()
        """Stacks whose status patch answers 404."""
        self.patch_error: Exception | None = None
        self.events: list[tuple[StackRef, str, bool]] = []
        self.secrets: set[tuple[str, str, str]] = set()
        self.lease: Lease | None = None
        self.stacks: dict[StackRef, dict[str, Any]] = {}
        """The stacks as the API server holds them (for the finalizer's patches)."""
        self.stack_patches: list[tuple[StackRef, list[dict[str, Any]]]] = []
        self.stack_patch_error: Exception | None = None
        self.resources: dict[tuple[str, str], tuple[str, bool]] = {
            ("v1", "Event"): ("events", True),
            ("v1", "Pod"): ("pods", True),
            ("v1", "Node"): ("nodes", False),
            ("apps/v1", "Deployment"): ("deployments", True),
        }
        """What discovery finds: (apiVersion, kind) → (resource, namespaced)."""
        self.granted: set[tuple[str, str | None, str]] = set()
        """(namespace, user, resource) that may be listed and watched (user ``None``:
        the operator, which may watch everything unless :attr:`operator_denied`)."""
        self.operator_denied: set[str] = set()
        self.reviews = 0
        """Access reviews answered (each for list and watch)."""
        self.objects: dict[str, list[dict[str, Any]]] = {}
        """Collections by path, as lists answer them (watches bring nothing)."""
        self.kept_secrets: dict[tuple[str, str], dict[str, Any]] = {}
        """The Secrets the operator keeps (tick credentials), by (namespace, name)."""
        self.pods: dict[tuple[str, str], list[dict[str, Any]]] = {}
        """The pods of each Job, by (namespace, Job name)."""
        self.pods_error: Exception | None = None

    async def create_job(self, namespace: str, body: Any) -> bool:
        if self.job_error is not None:
            raise self.job_error
        if await self.read_job(namespace, body["metadata"]["name"]) is not None:
            return False  # 409: it exists already
        self.jobs.append((namespace, body))
        return True

    async def read_job(self, namespace: str, name: str) -> Job | None:
        return next(
            (
                Job.of(job)
                for ns, job in self.jobs
                if ns == namespace and job["metadata"]["name"] == name
            ),
            None,
        )

    async def patch_status(self, ref: StackRef, body: dict[str, Any]) -> bool:
        if self.patch_error is not None:
            raise self.patch_error
        self.patches.append((ref, body))
        return ref not in self.missing

    async def read_stack(self, ref: StackRef) -> dict[str, Any] | None:
        found = self.stacks.get(ref)
        return copy.deepcopy(found) if found is not None else None

    async def patch_stack(self, ref: StackRef, patch: list[dict[str, Any]]) -> bool:
        """A JSON patch as the API server applies it: all or nothing, 422 when a
        ``test`` fails, 404 (``False``) for a stack it does not hold."""
        if self.stack_patch_error is not None:
            raise self.stack_patch_error
        self.stack_patches.append((ref, patch))
        current = self.stacks.get(ref)
        if current is None:
            return False
        try:
            self.stacks[ref] = jsonpatch.apply_patch(current, patch)
        except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPatchTestFailed) as exc:
            raise InvalidError(422, "Invalid", str(exc)) from exc
        return True

    async def post_event(
        self, ref: StackRef, uid: str, reason: str, message: str, *, warning: bool = False
    ) -> None:
        self.events.append((ref, reason, warning))

    async def secret_has_key(self, namespace: str, name: str, key: str) -> bool:
        return (namespace, name, key) in self.secrets

    async def api_resource(self, api_version: str, kind: str) -> tuple[str, bool] | None:
        return self.resources.get((api_version, kind))

    async def may_list_and_watch(
        self, namespace: str, group: str, resource: str, *, user: str | None
    ) -> bool:
        self.reviews += 1
        if user is None:
            return resource not in self.operator_denied
        return (namespace, user, resource) in self.granted

    async def list_objects(self, path: str) -> dict[str, Any]:
        return {
            "kind": "List",
            "metadata": {"resourceVersion": "1"},
            "items": self.objects.get(path, []),
        }

    async def watch_objects(
        self, path: str, resource_version: str
    ) -> AsyncIterator[dict[str, Any]]:
        await asyncio.Event().wait()  # a watch on which nothing happens
        yield {}

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.kept_secrets.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> bool:
        key = (namespace, body["metadata"]["name"])
        if key in self.kept_secrets:
            return False
        self.kept_secrets[key] = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}
        return True

    async def replace_secret(self, namespace: str, body: dict[str, Any]) -> bool:
        key = (namespace, body["metadata"]["name"])
        current = self.kept_secrets.get(key)
        version = body["metadata"].get("resourceVersion")
        if current is None or current["metadata"]["resourceVersion"] != version:
            return False
        newer = str(int(version) + 1)
        self.kept_secrets[key] = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": newer},
        }
        return True

    async def job_pods(self, namespace: str, job: str) -> list[Pod]:
        if self.pods_error is not None:
            raise self.pods_error
        return [Pod.of(pod) for pod in self.pods.get((namespace, job), [])]

    async def read_lease(self, namespace: str, name: str) -> Lease | None:
        return self.lease

    async def create_lease(self, lease: Lease) -> bool:
        self.lease = lease
        return True

    async def replace_lease(self, lease: Lease) -> bool:
        self.lease = lease
        return True


class FakeScheduler:
    """Scheduler: remembers why each stack was (un)scheduled."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Cause | None]] = []
        """``(key, cause)``; ``None`` for an unschedule."""
        self.woken: list[str] = []
        """Keys of the stacks woken (a tick at once), in order."""
        self.consolidations: list[str] = []
        """Keys of the stacks a consolidation tick was owed to, in order."""
        self.ended_ticks: list[str] = []
        """Ids of the ticks whose results were folded, in order."""

    def reschedule(self, record: StackRecord, cause: Cause, after: float | None = None) -> None:
        self.calls.append((record.key, cause))

    def unschedule(self, record: StackRecord) -> None:
        self.calls.append((record.key, None))

    def wake(self, record: StackRecord) -> None:
        self.woken.append(record.key)

    def consolidate(self, record: StackRecord) -> None:
        if record.consolidation_due:
            self.consolidations.append(record.key)

    def ended(self, result: TickResult) -> None:
        self.ended_ticks.append(result.tick_id)


class FakeStatus:
    """StatusMarks: remembers every mark."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, bool]] = []

    def mark(self, record: StackRecord, *, urgent: bool) -> None:
        record.mark_dirty(urgent=urgent)
        self.marks.append((record.key, urgent))


class FakeEvents:
    """EventPoster: remembers every Event, by reason."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str]] = []

    async def post(self, record: StackRecord, events: Sequence[Event]) -> None:
        self.posted.extend((record.key, event.reason) for event in events)


class FakeResults:
    """ResultStream, UsageCounters, TickLedger and ApprovalReader, as Redis would
    answer them."""

    def __init__(self) -> None:
        self.approval_records: dict[str, list[Approval]] = {}
        self.pending: list[tuple[str, TickResult]] = []
        self.acked: list[str] = []
        self.usage: dict[str, dict[str, str]] = {}
        self.goals: dict[str, GoalRecord] = {}
        self.recorded: dict[str, TickResult] = {}
        self.held: set[str] = set()
        """Ticks whose (dead) runner's lease has not expired: not recorded yet."""

    async def receive(self) -> list[tuple[str, TickResult]]:
        batch, self.pending = self.pending, []
        return batch

    async def acknowledge(self, entry_ids: Sequence[str]) -> None:
        self.acked.extend(entry_ids)

    async def read(self, refs: Sequence[StackRef]) -> list[Progress]:
        return [
            Progress(Usage.from_hash(self.usage.get(str(ref), {})), self.goals.get(str(ref)))
            for ref in refs
        ]

    async def approvals(self, ref: StackRef) -> list[Approval]:
        return list(self.approval_records.get(str(ref), []))

    async def outcome(self, ref: StackRef, tick_id: str) -> TickResult | None:
        return self.recorded.get(tick_id)

    async def record_failure(self, result: TickResult) -> bool:
        if result.tick_id in self.recorded or result.tick_id in self.held:
            return False
        self.recorded[result.tick_id] = result
        return True


class FakeFleet:
    """The specs published to Redis, its marker (present: Redis kept its data) and its
    publications counter (set it lower: Redis went back in time)."""

    def __init__(self) -> None:
        self.published: dict[str, int] = {}
        self.marker: str | None = None
        self.publications = 0
        self.groups = 0

    async def publish(self, record: StackRecord) -> int:
        self.published[record.key] = record.generation
        self.publications += 1
        return self.publications

    async def delete(self, ref: StackRef) -> int:
        return 1 if self.published.pop(str(ref), None) is not None else 0

    async def check(self, identity: str) -> tuple[bool, int]:
        claimed = self.marker is None
        self.marker = self.marker or identity
        return claimed, self.publications

    async def raise_publications(self, at_least: int) -> None:
        self.publications = max(self.publications, at_least)

    async def ensure_groups(self) -> None:
        self.groups += 1


class FakeWakeups:
    """A wake-up stream nobody writes to."""

    async def read(self, after: str, *, count: int, block_ms: int) -> tuple[str, list[Wakeup]]:
        return after, []


class FakeTriggers:
    """Stacks without triggers: nothing to check or watch."""

    async def check(self, record: StackRecord) -> list[Event]:
        return []

    def unsubscribe(self, key: str) -> None:
        pass

    async def step(self) -> None:
        pass

    def stop(self) -> None:
        pass


class FakeCredentials:
    """Tick-pod credentials that are always ready; which namespaces were refreshed."""

    def __init__(self) -> None:
        self.refreshed: list[set[str]] = []

    async def ensure(self, namespace: str, *, refresh: bool = False) -> None:
        pass

    async def refresh(self, namespaces: set[str]) -> None:
        self.refreshed.append(namespaces)


class FakeLedgers:
    """Ledgers whose spend a test sets; what was published and pruned."""

    def __init__(self) -> None:
        self.published: dict[str, dict[str, dict[str, str]]] = {}
        self.publications = 0
        self.spend: dict[tuple[str, str], Spend] = {}
        """(namespace, budget) → the spend of its current window."""

    async def publish(self, namespace: str, budgets: Mapping[str, Mapping[str, str]]) -> None:
        self.publications += 1
        self.published[namespace] = {k: dict(v) for k, v in budgets.items()}

    async def spent(
        self, namespace: str, windows: Mapping[str, str], *, now: float
    ) -> dict[str, Spend]:
        return {
            name: self.spend.get((namespace, name), Spend(0, 0, 0, 0, 0, 0)) for name in windows
        }

    async def prune(self, namespace: str, keep: Mapping[str, Collection[str]]) -> int:
        return 0


def fake_parts(kube: FakeKube, results: FakeResults | None = None) -> OperatorParts:
    """An operator's outside world, all fakes."""
    return OperatorParts(
        kube=kube,  # a fake of the parts of Kube the operator calls
        lanes=FakeLanes(),
        results=results or FakeResults(),
        fleet=FakeFleet(),
        wakeups=FakeWakeups(),
        triggers=FakeTriggers(),
        credentials=FakeCredentials(),
        ledgers=FakeLedgers(),
    )
