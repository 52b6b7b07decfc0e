"""``agentstack uninstall``: leave no stack with a finalizer nobody will remove.

Every stack carries the ``agentstack.dev/cleanup`` finalizer while the operator runs
(:mod:`agentstack_operator.finalizing`). Remove the operator with stacks still there,
and deleting a stack — or its namespace — waits forever for an operator that is gone.
The chart runs this command as its ``pre-delete`` hook, while the operator still runs,
in one of two ways (``uninstall.stacks``):

- ``release`` (the default): stop the operator first (its Deployment scaled to 0, its
  pods gone: a running one would put the finalizer back), then take the finalizer off
  every stack. The stacks stay, and a later install adopts them; their Redis keys stay
  in an external Redis (an in-chart Redis goes with the release).
- ``delete``: delete every stack while the operator runs, and wait for its cleanup (each
  stack's Redis keys and Jobs). Stacks still there after ``--timeout`` are released as
  above, and named.

Without ``--operator-deployment`` nothing is stopped: the way for a cluster whose
operator is already gone (README "Uninstalling").

The command line stays synchronous: it is a short-lived tool, not a process with a loop.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agentstack_cli.kubeapi import api_client
from agentstack_core.keys import StackRef
from agentstack_core.resource import GROUP, PLURAL, VERSION
from agentstack_operator.finalizing import FINALIZER, releasing

MODES = ("release", "delete")
POLL_SECONDS = 1.0
EDIT_ATTEMPTS = 5
"""Finalizer edits lost to concurrent writers before a stack is reported as left."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stacks",
        choices=MODES,
        default="release",
        help="release: stop the operator, then take its finalizer off every stack (they "
        "stay); delete: delete every stack and wait for the operator's cleanup",
    )
    parser.add_argument(
        "--namespaces",
        default="",
        help="comma-separated namespaces whose stacks to handle (default: every namespace)",
    )
    parser.add_argument(
        "--operator-deployment",
        default="",
        help="the operator's Deployment, stopped before stacks are released (default: "
        "none, for an operator already gone)",
    )
    parser.add_argument(
        "--operator-namespace", default="default", help="the namespace of that Deployment"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the operator to stop or finish its cleanups (300)",
    )


class Uninstall:
    """The steps, over the API server; each one waits on what it observes."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        timeout: float,
        say: Callable[[str], None],
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.timeout = timeout
        self.say = say
        self.monotonic = monotonic
        self.sleep = sleep

    def stacks(self, namespaces: Sequence[str]) -> list[dict[str, Any]]:
        if not namespaces:
            return _items(self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL))
        found: list[dict[str, Any]] = []
        for namespace in namespaces:
            found.extend(
                _items(self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL))
            )
        return found

    def stop_operator(self, namespace: str, deployment: str) -> None:
        """Scale the operator to 0 and wait until none of its pods is left."""
        try:
            found = self.apps.read_namespaced_deployment(deployment, namespace)
        except ApiException as exc:
            if exc.status == 404:
                self.say(f"no Deployment {namespace}/{deployment}: nothing to stop")
                return
            raise
        labels = found.spec.selector.match_labels or {}
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        self.apps.patch_namespaced_deployment_scale(
            deployment, namespace, {"spec": {"replicas": 0}}
        )
        self._wait(
            lambda: not self.core.list_namespaced_pod(namespace, label_selector=selector).items,
            f"the pods of {namespace}/{deployment} to end",
        )
        self.say(f"stopped the operator ({namespace}/{deployment})")

    def release(self, stacks: Sequence[dict[str, Any]]) -> list[StackRef]:
        """Take the finalizer off each stack; the stacks it could not release."""
        left = []
        for body in stacks:
            ref = _ref(body)
            if not self._release(ref, body):
                left.append(ref)
        return left

    def _release(self, ref: StackRef, body: dict[str, Any]) -> bool:
        for _ in range(EDIT_ATTEMPTS):
            patch = releasing(body)
            if patch is None:
                return True
            try:
                self.custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    ref.namespace,
                    PLURAL,
                    ref.name,
                    patch,
                    _content_type="application/json-patch+json",
                )
                self.say(f"released {ref}")
                return True
            except ApiException as exc:
                if exc.status == 404:
                    return True
                if exc.status not in (409, 422):  # 422: a test op failed (a concurrent edit)
                    raise
            found = self._get(ref)
            if found is None:
                return True
            body = found
        return False

    def delete(self, stacks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Delete each stack and wait for the operator's cleanup; the stacks left."""
        refs = [_ref(body) for body in stacks]
        for ref in refs:
            try:
                self.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, ref.namespace, PLURAL, ref.name
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
        self.say(f"deleted {len(refs)} stack(s); waiting for the operator's cleanup")
        remaining: list[dict[str, Any]] = []

        def cleaned() -> bool:
            remaining[:] = [body for ref in refs if (body := self._get(ref)) is not None]
            return not remaining

        try:
            self._wait(cleaned, f"the cleanup of {len(refs)} stack(s)")
        except TimeoutError:
            names = ", ".join(str(_ref(body)) for body in remaining)
            self.say(f"not cleaned up within {self.timeout:g}s: {names}")
        return remaining

    def _get(self, ref: StackRef) -> dict[str, Any] | None:
        try:
            found = _object(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, ref.namespace, PLURAL, ref.name
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = self.monotonic() + self.timeout
        while not done():
            if self.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting for {what} after {self.timeout:g}s")
            self.sleep(POLL_SECONDS)


def _object(value: object) -> dict[str, Any]:
    """A custom object as the client returns it (untyped: a JSON object)."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _items(listed: object) -> list[dict[str, Any]]:
    return [_object(item) for item in _object(listed).get("items") or []]


def _ref(body: dict[str, Any]) -> StackRef:
    meta = body["metadata"]
    return StackRef(str(meta["namespace"]), str(meta["name"]))


def run(args: argparse.Namespace, api: client.ApiClient) -> int:
    namespaces = [name.strip() for name in args.namespaces.split(",") if name.strip()]
    steps = Uninstall(api, timeout=args.timeout, say=lambda line: print(line, flush=True))
    stacks = steps.stacks(namespaces)
    if args.stacks == "delete" and stacks:
        stacks = steps.delete(stacks)
    if stacks:
        if args.operator_deployment:
            steps.stop_operator(args.operator_namespace, args.operator_deployment)
        left = steps.release(steps.stacks(namespaces))
        if left:
            names = ", ".join(str(ref) for ref in left)
            print(f"could not release {names}: edited by others meanwhile", file=sys.stderr)
            return 1
    print(f"no stack keeps the {FINALIZER} finalizer", flush=True)
    return 0


def _explained(exc: ApiException) -> str:
    """The API server's own message (a Status object), else the HTTP reason."""
    try:
        message = str(json.loads(exc.body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    return f"{exc.status} {exc.reason}" + (f": {message}" if message else "")


def main(args: argparse.Namespace) -> int:
    api = api_client()
    try:
        return run(args, api)
    except (ApiException, TimeoutError) as exc:
        reason = _explained(exc) if isinstance(exc, ApiException) else str(exc)
        print(f"agentstack uninstall: {reason}", file=sys.stderr)
        return 1
    finally:
        api.close()  # type: ignore[no-untyped-call]
