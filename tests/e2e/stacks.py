"""Helpers of the operator tests: create stacks, read their status, history and Events."""

from __future__ import annotations

from typing import Any

import redis
from kubernetes import client

from agentstack_core.keys import FleetKeys, StackKeys, StackRef
from agentstack_core.spec import Priority
from tests.helpers import eventually

GROUP, VERSION, PLURAL = "agentstack.dev", "v1alpha1", "agentstacks"


class Stacks:
    """AgentStacks of one namespace, through the real API server."""

    def __init__(self, api: client.ApiClient, namespace: str, reader: redis.Redis) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.redis = reader

    def create(self, name: str, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AgentStack",
            "metadata": {"name": name},
            "spec": {
                "goal": f"goal of {name}",
                **({} if "schedule" in spec else {"tickIntervalSeconds": 1}),
                **spec,
            },
        }
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return created

    def get(self, name: str) -> dict[str, Any]:
        got: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return got

    def patch_spec(self, name: str, **spec: Any) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        for condition in self.status(name).get("conditions") or []:
            if condition["type"] == kind:
                return dict(condition)
        return {}

    def wait_condition(
        self, name: str, kind: str, status: str, reason: str | None = None, timeout: float = 60
    ) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            found = self.condition(name, kind)
            ok = found.get("status") == status and (reason is None or found["reason"] == reason)
            return found if ok else None

        return eventually(matches, f"{name}: {kind}={status} ({reason})", timeout=timeout)

    def wait_ticks(self, name: str, at_least: int, timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            return status if int(status.get("ticks") or 0) >= at_least else None

        return eventually(reached, f"{name} to reach {at_least} ticks in status", timeout=timeout)

    def history(self, name: str) -> list[dict[str, str]]:
        """The finished ticks of the stack, as the runners recorded them in Redis."""
        key = StackKeys(StackRef(self.namespace, name)).history
        return [fields for _id, fields in self.redis.xrange(key)]

    def executed(self, name: str) -> list[dict[str, str]]:
        return [h for h in self.history(name) if h["outcome"] != "Dropped"]

    def dispatched(self, name: str) -> list[dict[str, str]]:
        """Every tick request dispatched for the stack (all lanes), oldest first."""
        stack = f"{self.namespace}/{name}"
        entries = []
        for lane in Priority:
            for _id, fields in self.redis.xrange(FleetKeys.lane(lane.value)):
                if fields.get("stack") == stack:
                    entries.append(fields)
        return sorted(entries, key=lambda fields: float(fields["dispatched_at"]))

    def events(self, name: str) -> list[str]:
        listed = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        ordered = sorted(listed.items, key=lambda e: e.metadata.creation_timestamp)
        return [event.reason for event in ordered]

    def wait_event(self, name: str, reason: str, timeout: float = 30) -> None:
        eventually(
            lambda: True if reason in self.events(name) else None,
            f"a {reason} event on {name}",
            timeout=timeout,
        )
