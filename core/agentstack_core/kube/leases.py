"""``coordination.k8s.io`` Leases: a typed view of the one leader election reads and
writes, and the manifest it sends back.

A Lease's times are ``MicroTime`` (RFC 3339 with microseconds). The view reads them as
aware datetimes, ``None`` when missing or unreadable, so the election's expiry rule is
plain arithmetic; :meth:`Lease.manifest` writes them back in the API server's form and
leaves out what is unset (a released Lease has no holder and no renew time).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from agentstack_core.kube.manifests import Manifest, ObjectMeta, count, mapping, text

API_VERSION = "coordination.k8s.io/v1"


def micro_time(value: dt.datetime) -> str:
    """``value`` as a ``MicroTime`` (UTC, microseconds, ``Z``)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_time(value: object) -> dt.datetime | None:
    """A ``Time`` or ``MicroTime`` field as an aware datetime (``None``: missing or not
    a time)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        found = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return found if found.tzinfo is not None else found.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class LeaseSpec:
    """Who holds the Lease, since when, for how long (``spec``)."""

    holder: str | None = None
    duration_seconds: int | None = None
    acquire_time: dt.datetime | None = None
    renew_time: dt.datetime | None = None
    transitions: int = 0

    @classmethod
    def of(cls, spec: Manifest) -> LeaseSpec:
        holder = text(spec.get("holderIdentity"))
        duration = count(spec.get("leaseDurationSeconds"))
        return cls(
            holder=holder or None,
            duration_seconds=duration or None,
            acquire_time=read_time(spec.get("acquireTime")),
            renew_time=read_time(spec.get("renewTime")),
            transitions=count(spec.get("leaseTransitions")),
        )

    def body(self) -> dict[str, Any]:
        """The ``spec`` as the API server takes it, unset fields left out."""
        found: dict[str, Any] = {"leaseTransitions": self.transitions}
        if self.holder is not None:
            found["holderIdentity"] = self.holder
        if self.duration_seconds is not None:
            found["leaseDurationSeconds"] = self.duration_seconds
        if self.acquire_time is not None:
            found["acquireTime"] = micro_time(self.acquire_time)
        if self.renew_time is not None:
            found["renewTime"] = micro_time(self.renew_time)
        return found


@dataclass(frozen=True)
class Lease:
    """A Lease: its name and version (a replace must carry the version it read) and its
    spec."""

    meta: ObjectMeta
    spec: LeaseSpec

    @classmethod
    def of(cls, manifest: Manifest) -> Lease:
        return cls(meta=ObjectMeta.of(manifest), spec=LeaseSpec.of(mapping(manifest.get("spec"))))

    def manifest(self) -> dict[str, Any]:
        """The Lease to create (no version) or to replace (the version read, and the
        labels and annotations read: a replace writes the whole object, and the chart's
        Lease carries Helm's, by which ``helm uninstall`` removes it)."""
        metadata: dict[str, Any] = {"name": self.meta.name, "namespace": self.meta.namespace}
        if self.meta.resource_version:
            metadata["resourceVersion"] = self.meta.resource_version
        if self.meta.labels:
            metadata["labels"] = dict(self.meta.labels)
        if self.meta.annotations:
            metadata["annotations"] = dict(self.meta.annotations)
        return {
            "apiVersion": API_VERSION,
            "kind": "Lease",
            "metadata": metadata,
            "spec": self.spec.body(),
        }
