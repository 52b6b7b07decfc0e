"""The operator's writes to the Kubernetes API: status, Events, Jobs, Secrets, Leases.

Kopf owns the watch streams of stacks and Jobs; everything the operator *writes* goes
through here, and so do the triggers' watches (:mod:`.triggering`), with the discovery
and access reviews they need. Two clients serve it while it moves onto the one async
layer (:mod:`agentstack_core.kube`): status patches (the one write that scales with
the fleet), the finalizer's JSON patches, discovery, access reviews and the triggers'
lists and watches go out on the event loop through
:class:`~agentstack_core.kube.client.KubeClient` (raw JSON on aiohttp; the module's
doc says why not a generated client); Events, Secrets, Jobs, pods and Leases still
use the official synchronous client, its calls in worker threads
(``asyncio.to_thread``).

Every call carries a request timeout (:data:`REQUEST_TIMEOUT`, and the async
layer's own): an API server that stops answering must fail a call, never hang the
loop that made it (leader election counts on it). Lease calls run in a worker thread
of their own: thousands of new stacks mean thousands of ``Started`` Events queued for
the shared workers, and a renewal waiting behind them missed its deadline and cost the
leadership (measured at 10,000 stacks).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agentstack_core.keys import StackRef
from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.errors import NotFoundError
from agentstack_core.kube.reviews import (
    SELF_SUBJECT_ACCESS_REVIEWS,
    SUBJECT_ACCESS_REVIEWS,
    ResourceAttributes,
    allowed,
    self_subject_access_review,
    subject_access_review,
)
from agentstack_core.kube.stacks import stack_path
from agentstack_core.resource import GROUP, KIND, PLURAL, VERSION

logger = logging.getLogger(__name__)

COMPONENT = "agentstack-operator"
REQUEST_TIMEOUT = (5.0, 10.0)
"""(connect, read) seconds of every call of the synchronous client."""


def _forbidden(exc: ApiException) -> Exception:
    """A 403 as :class:`PermissionError` (what a person must grant), else ``exc``."""
    return PermissionError(exc.reason) if exc.status == 403 else exc


class Kube:
    """The operator's Kubernetes calls (one instance per process), over the async
    layer's client and, for what has not moved yet, the synchronous one."""

    def __init__(self, api: client.ApiClient, async_client: KubeClient) -> None:
        self.api = api
        self.async_client = async_client
        self._leases = ThreadPoolExecutor(1, thread_name_prefix="lease")
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.coordination = client.CoordinationV1Api(api)

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a client call in a worker thread, bounded by :data:`REQUEST_TIMEOUT`."""
        return await asyncio.to_thread(method, *args, _request_timeout=REQUEST_TIMEOUT, **kwargs)

    async def _lease_call(self, method: Any, *args: Any) -> Any:
        """:meth:`_call`, in the lease's own worker thread (nothing queues before it)."""
        call = functools.partial(method, *args, _request_timeout=REQUEST_TIMEOUT)
        return await asyncio.get_running_loop().run_in_executor(self._leases, call)

    async def patch_status(self, ref: StackRef, body: dict[str, Any]) -> bool:
        """Merge-patch the stack's status; ``False`` if the stack no longer exists."""
        try:
            await self.async_client.merge_patch(
                stack_path(ref.namespace, ref.name, "status"), {"status": body}
            )
        except NotFoundError:
            return False
        return True

    async def patch_stack(self, ref: StackRef, patch: list[dict[str, Any]]) -> bool:
        """JSON-patch the stack (its metadata: the finalizer); ``False`` if it is gone,
        :class:`~agentstack_core.kube.errors.InvalidError` (422) if a ``test``
        operation failed."""
        try:
            await self.async_client.json_patch(stack_path(ref.namespace, ref.name), patch)
        except NotFoundError:
            return False
        return True

    async def read_stack(self, ref: StackRef) -> dict[str, Any] | None:
        """The stack as a plain manifest, or ``None`` if it does not exist."""
        try:
            found: dict[str, Any] = await self._call(
                self.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                ref.namespace,
                PLURAL,
                ref.name,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    async def close(self) -> None:
        await self.async_client.close()
        self._leases.shutdown(wait=False)
        self.api.close()  # type: ignore[no-untyped-call]

    async def post_event(
        self, ref: StackRef, uid: str, reason: str, message: str, *, warning: bool = False
    ) -> None:
        """Record a Kubernetes Event on the stack (best effort: failures are logged)."""
        now = dt.datetime.now(dt.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{ref.name}."),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind=KIND,
                name=ref.name,
                namespace=ref.namespace,
                uid=uid,
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            source=client.V1EventSource(component=COMPONENT),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            reporting_component=COMPONENT,
            reporting_instance=COMPONENT,
        )
        try:
            await self._call(self.core.create_namespaced_event, ref.namespace, event)
        except ApiException as exc:
            logger.warning("could not post event %s on %s: %s", reason, ref, exc.reason)

    async def secret_has_key(self, namespace: str, name: str, key: str) -> bool:
        """Whether the Secret exists and holds ``key`` (its value is never kept)."""
        try:
            secret = await self.read_secret(namespace, name)
        except PermissionError:
            return False
        if secret is None:
            return False
        return key in (secret.get("data") or {}) or key in (secret.get("stringData") or {})

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret the operator keeps (:mod:`.tickcredentials`) as a manifest; ``None``
        if absent; :class:`PermissionError` if RBAC refuses."""
        try:
            secret = await self._call(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _forbidden(exc) from exc
        body: dict[str, Any] = self.api.sanitize_for_serialization(secret)  # type: ignore[no-untyped-call]
        return body

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> bool:
        """``False`` if it exists already; :class:`PermissionError` if RBAC refuses."""
        try:
            await self._call(self.core.create_namespaced_secret, namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise _forbidden(exc) from exc
        return True

    async def replace_secret(self, namespace: str, body: dict[str, Any]) -> bool:
        """Replace (with the body's resourceVersion); ``False`` on a lost race."""
        name = body["metadata"]["name"]
        try:
            await self._call(self.core.replace_namespaced_secret, name, namespace, body)
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise _forbidden(exc) from exc
        return True

    async def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        """The pods of a Job (to tell why it failed), newest last."""
        pods = await self._call(
            self.core.list_namespaced_pod, namespace, label_selector=f"job-name={job}"
        )
        items: list[dict[str, Any]] = self.api.sanitize_for_serialization(pods.items)  # type: ignore[no-untyped-call]
        return sorted(
            items, key=lambda pod: (pod.get("metadata") or {}).get("creationTimestamp", "")
        )

    async def create_job(self, namespace: str, body: Any) -> bool:
        """Create a Job (a manifest dict); ``False`` if it exists already (a duplicate)."""
        try:
            await self._call(self.batch.create_namespaced_job, namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Job as a plain manifest, or ``None`` if it does not exist.

        Listed by name rather than read: the operator may ``list`` Jobs (Kopf watches
        them) but not ``get`` them (README "RBAC"), and a list narrowed by a field
        selector costs the API server no more than a read."""
        listed = await self._call(
            self.batch.list_namespaced_job, namespace, field_selector=f"metadata.name={name}"
        )
        if not listed.items:
            return None
        body: dict[str, Any] = self.api.sanitize_for_serialization(listed.items[0])  # type: ignore[no-untyped-call]
        return body

    async def delete_jobs(self, namespace: str, selector: str) -> None:
        await self._call(
            self.batch.delete_collection_namespaced_job,
            namespace,
            label_selector=selector,
            propagation_policy="Background",
        )

    async def api_resource(self, api_version: str, kind: str) -> tuple[str, bool] | None:
        """The resource (plural) that serves ``kind`` in ``api_version``, and whether it
        is namespaced; ``None`` if the API server has no such kind (discovery)."""
        path = "api/v1" if api_version == "v1" else f"apis/{api_version}"
        try:
            found = await self.async_client.get(path)
        except NotFoundError:
            return None
        for resource in found.get("resources") or []:
            if resource.get("kind") == kind and "/" not in resource.get("name", "/"):
                return str(resource["name"]), bool(resource.get("namespaced"))
        return None

    async def may_list_and_watch(
        self, namespace: str, group: str, resource: str, *, user: str | None
    ) -> bool:
        """Whether ``user`` (``None``: the operator itself) may list and watch
        ``resource`` in ``namespace``: a SubjectAccessReview (a SelfSubjectAccessReview
        for the operator) per verb."""
        for verb in ("list", "watch"):
            attributes = ResourceAttributes(verb, group, resource, namespace)
            if user is None:
                answer = await self.async_client.create(
                    SELF_SUBJECT_ACCESS_REVIEWS, self_subject_access_review(attributes)
                )
            else:
                answer = await self.async_client.create(
                    SUBJECT_ACCESS_REVIEWS, subject_access_review(attributes, user)
                )
            if not allowed(answer):
                return False
        return True

    async def list_objects(self, path: str) -> dict[str, Any]:
        """The collection at ``path`` (an empty list if the API server has none)."""
        try:
            return await self.async_client.get(path)
        except NotFoundError:
            return {"items": []}

    async def watch_objects(
        self, path: str, resource_version: str
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch events of the collection at ``path``
        (:meth:`~agentstack_core.kube.client.KubeClient.watch`) as the lines they came
        as: :mod:`.triggering` reads them so until it moves onto the typed events."""
        async for event in self.async_client.watch(path, resource_version):
            yield {"type": event.type, "object": event.object}

    async def read_lease(self, namespace: str, name: str) -> Any:
        try:
            return await self._lease_call(self.coordination.read_namespaced_lease, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def create_lease(self, namespace: str, body: client.V1Lease) -> bool:
        try:
            await self._lease_call(self.coordination.create_namespaced_lease, namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def replace_lease(self, namespace: str, name: str, body: client.V1Lease) -> bool:
        """Replace (with the body's resourceVersion); ``False`` on a lost race."""
        try:
            await self._lease_call(
                self.coordination.replace_namespaced_lease, name, namespace, body
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True
