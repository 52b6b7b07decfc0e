"""Jobs (``batch/v1``) and their pods, as far as a controller of Jobs reads them: a
Job's identity and terminal conditions, and how each container of a pod ended or why
it never started."""

from __future__ import annotations

from dataclasses import dataclass

from agentstack_core.kube.manifests import Manifest, ObjectMeta, count, mapping, text


@dataclass(frozen=True)
class Condition:
    """One of ``status.conditions`` (a Job's ``Complete``, ``Failed``…)."""

    type: str
    status: str
    reason: str = ""
    message: str = ""

    @property
    def true(self) -> bool:
        return self.status == "True"

    @classmethod
    def of(cls, condition: Manifest) -> Condition:
        return cls(
            type=text(condition.get("type")),
            status=text(condition.get("status")),
            reason=text(condition.get("reason")),
            message=text(condition.get("message")),
        )


def conditions(status: Manifest) -> tuple[Condition, ...]:
    """The conditions of a ``status`` (none if the list is missing)."""
    found = status.get("conditions")
    return tuple(Condition.of(mapping(c)) for c in found) if isinstance(found, list) else ()


@dataclass(frozen=True)
class Job:
    meta: ObjectMeta
    conditions: tuple[Condition, ...] = ()
    start_time: str = ""
    """When its pod was first started (empty until then)."""

    def holds(self, kind: str) -> Condition | None:
        """The condition of type ``kind`` if it is true (``None`` otherwise)."""
        return next((c for c in self.conditions if c.type == kind and c.true), None)

    @classmethod
    def of(cls, manifest: Manifest) -> Job:
        status = mapping(manifest.get("status"))
        return cls(
            meta=ObjectMeta.of(manifest),
            conditions=conditions(status),
            start_time=text(status.get("startTime")),
        )


@dataclass(frozen=True)
class Terminated:
    """A container that ended."""

    reason: str
    exit_code: int | None
    message: str

    @classmethod
    def of(cls, state: Manifest) -> Terminated | None:
        ended = mapping(state.get("terminated"))
        if not ended:
            return None
        code = ended.get("exitCode")
        return cls(
            reason=text(ended.get("reason")),
            exit_code=count(code) if code is not None else None,
            message=text(ended.get("message")),
        )


@dataclass(frozen=True)
class Waiting:
    """A container that has not started (yet)."""

    reason: str
    message: str

    @classmethod
    def of(cls, state: Manifest) -> Waiting | None:
        waiting = mapping(state.get("waiting"))
        if not waiting:
            return None
        return cls(reason=text(waiting.get("reason")), message=text(waiting.get("message")))


@dataclass(frozen=True)
class ContainerStatus:
    """How a container is, and how its previous run ended (``lastState``)."""

    terminated: Terminated | None = None
    waiting: Waiting | None = None
    last_terminated: Terminated | None = None

    @classmethod
    def of(cls, status: Manifest) -> ContainerStatus:
        state = mapping(status.get("state"))
        return cls(
            terminated=Terminated.of(state),
            waiting=Waiting.of(state),
            last_terminated=Terminated.of(mapping(status.get("lastState"))),
        )


@dataclass(frozen=True)
class Pod:
    meta: ObjectMeta
    containers: tuple[ContainerStatus, ...] = ()
    """``status.containerStatuses``, in order."""

    @classmethod
    def of(cls, manifest: Manifest) -> Pod:
        found = mapping(manifest.get("status")).get("containerStatuses")
        return cls(
            meta=ObjectMeta.of(manifest),
            containers=tuple(ContainerStatus.of(mapping(s)) for s in found)
            if isinstance(found, list)
            else (),
        )
