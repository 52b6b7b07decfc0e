"""Kubernetes Events (``core/v1``) about an object, as the body that creates one."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

MESSAGE_LIMIT = 1024
"""Characters of a message kept (the API server refuses longer ones past its own
limit; an Event is a line to read, not a log)."""


@dataclass(frozen=True)
class InvolvedObject:
    """What an Event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str


def event_body(
    about: InvolvedObject,
    reason: str,
    message: str,
    *,
    component: str,
    warning: bool,
    now: dt.datetime,
) -> dict[str, Any]:
    """A new Event (a generated name under the object's), seen once at ``now``, reported
    by ``component``."""
    time = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{about.name}.", "namespace": about.namespace},
        "involvedObject": {
            "apiVersion": about.api_version,
            "kind": about.kind,
            "name": about.name,
            "namespace": about.namespace,
            "uid": about.uid,
        },
        "reason": reason,
        "message": message[:MESSAGE_LIMIT],
        "type": "Warning" if warning else "Normal",
        "source": {"component": component},
        "firstTimestamp": time,
        "lastTimestamp": time,
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": component,
    }
