"""Typed views of the Kubernetes manifests the product reads.

A manifest arrives as parsed JSON, where any field may be missing or ``null``; each
view reads what its callers use, once, with the defaults the API server implies (a
missing list is empty, a missing count is 0), so no caller walks ``.get() or {}``
chains. The views are frozen: they describe one answer of the API server.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Manifest = Mapping[str, Any]
"""An object as the API server sends it (parsed JSON)."""


def mapping(value: object) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else an empty one (a missing or null field)."""
    return value if isinstance(value, Mapping) else {}


def text(value: object, default: str = "") -> str:
    """``value`` if it is a string, else ``default``."""
    return value if isinstance(value, str) else default


def count(value: object) -> int:
    """``value`` as a whole number (0 when missing or not a number)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return 0


def strings(value: object) -> dict[str, str]:
    """A JSON object of strings (labels, annotations), entries of other types left out."""
    return {k: v for k, v in mapping(value).items() if isinstance(v, str)}


@dataclass(frozen=True)
class ObjectMeta:
    """The ``metadata`` of an object."""

    name: str
    namespace: str = ""
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    creation_timestamp: str = ""
    deletion_timestamp: str = ""
    """Set once the object is being deleted (its finalizers hold it until then)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    finalizers: tuple[str, ...] | None = None
    """``None`` when the object has no list at all (not the same as an empty one to a
    JSON patch, which must add the list before it can add to it)."""

    @classmethod
    def of(cls, manifest: Manifest) -> ObjectMeta:
        meta = mapping(manifest.get("metadata"))
        finalizers = meta.get("finalizers")
        return cls(
            name=text(meta.get("name")),
            namespace=text(meta.get("namespace")),
            uid=text(meta.get("uid")),
            generation=count(meta.get("generation")),
            resource_version=text(meta.get("resourceVersion")),
            creation_timestamp=text(meta.get("creationTimestamp")),
            deletion_timestamp=text(meta.get("deletionTimestamp")),
            labels=strings(meta.get("labels")),
            annotations=strings(meta.get("annotations")),
            finalizers=tuple(str(name) for name in finalizers)
            if isinstance(finalizers, list)
            else None,
        )


@dataclass(frozen=True)
class Listing:
    """A list's items, and the resourceVersion to watch from."""

    items: tuple[Manifest, ...]
    resource_version: str
    kind: str = "List"

    @classmethod
    def of(cls, manifest: Manifest) -> Listing:
        items = manifest.get("items")
        return cls(
            items=tuple(mapping(i) for i in items) if isinstance(items, list) else (),
            resource_version=text(mapping(manifest.get("metadata")).get("resourceVersion")),
            kind=text(manifest.get("kind"), "List"),
        )


BOOKMARK = "BOOKMARK"
ERROR = "ERROR"


@dataclass(frozen=True)
class WatchEvent:
    """One line of a watch: ``ADDED``, ``MODIFIED``, ``DELETED`` or ``BOOKMARK`` (an
    ``ERROR`` is raised by the client, never handed on)."""

    type: str
    object: Manifest

    @property
    def resource_version(self) -> str:
        """The version to watch from after this event (empty if it carries none)."""
        return ObjectMeta.of(self.object).resource_version

    @classmethod
    def of(cls, line: Manifest) -> WatchEvent:
        return cls(type=text(line.get("type")), object=mapping(line.get("object")))


@dataclass(frozen=True)
class Secret:
    """A Secret's keys, decoded (``data`` is base64 on the wire). A value that is not
    base64 is left out: it cannot be a key anyone stored through the API server."""

    meta: ObjectMeta
    data: Mapping[str, bytes]

    def __repr__(self) -> str:  # values never reach a log line
        return f"Secret({self.meta.namespace}/{self.meta.name}, keys={sorted(self.data)})"

    @classmethod
    def of(cls, manifest: Manifest) -> Secret:
        data: dict[str, bytes] = {}
        for key, value in mapping(manifest.get("data")).items():
            if isinstance(value, str):
                try:
                    data[key] = base64.b64decode(value, validate=True)
                except binascii.Error:
                    continue
        return cls(meta=ObjectMeta.of(manifest), data=data)
