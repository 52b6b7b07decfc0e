"""The operator's writes to the Kubernetes API: status, Events, Jobs, Secrets, Leases.

Kopf owns the watch streams of stacks and Jobs; everything the operator *writes* goes
through here, and so do the triggers' watches (:mod:`.triggering`), with the discovery
and access reviews they need. The
official client is synchronous, so its calls run in worker threads
(``asyncio.to_thread``). Status patches, the one write that scales with the fleet, do
not: they go out on the event loop through :class:`Patcher` (aiohttp, which the
operator already runs for Kopf), as raw merge patches whose reply is read for its
status code only; so do the finalizer's JSON patches (one per new stack). Profiled at
1,000 stacks, the synchronous path spent most of the operator's CPU per status write
on things the write does not need — call validation, building a response model,
urllib3 — and its worker threads fought the event loop for
the GIL, which is what stretched the dispatcher's lag tail.

Every call carries a request timeout (:data:`REQUEST_TIMEOUT`): an API server that
stops answering must fail a call, never hang the loop that made it (leader election
counts on it). Lease calls run in a worker thread of their own: thousands of new
stacks mean thousands of ``Started`` Events queued for the shared workers, and a
renewal waiting behind them missed its deadline and cost the leadership (measured
at 10,000 stacks). Connection details come from the in-cluster service account, else from
``$KUBECONFIG``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import ssl
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agentstack_core.keys import StackRef
from agentstack_core.resource import GROUP, KIND, PLURAL, VERSION

logger = logging.getLogger(__name__)

COMPONENT = "agentstack-operator"
REQUEST_TIMEOUT = (5.0, 10.0)
"""(connect, read) seconds of every API call."""
WATCH_SECONDS = 300
"""How long the API server keeps one of the triggers' watches open before it is
started again (from the last resourceVersion seen)."""


def _stack_path(ref: StackRef) -> str:
    return f"apis/{GROUP}/{VERSION}/namespaces/{ref.namespace}/{PLURAL}/{ref.name}"


class Patcher:
    """Patches (of ``/status``, and the finalizer's) on the event loop, over one aiohttp
    session that reuses its connections.

    Credentials come from the same :class:`~kubernetes.client.Configuration` as the
    synchronous client: its CA and client certificate, and its ``authorization`` key,
    read again for every request so that a rotated token (the in-cluster client's
    refresh hook, a kubeconfig exec plugin) is picked up as the official client would.
    """

    def __init__(self, configuration: client.Configuration) -> None:
        self.configuration = configuration
        self._session: aiohttp.ClientSession | None = None

    def _ssl(self) -> ssl.SSLContext | bool:
        conf = self.configuration
        if not conf.host.startswith("https"):
            return False
        context = ssl.create_default_context(cafile=conf.ssl_ca_cert)
        if not conf.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if conf.cert_file:
            context.load_cert_chain(conf.cert_file, conf.key_file)
        return context

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connect, read = REQUEST_TIMEOUT
            self._session = aiohttp.ClientSession(
                base_url=self.configuration.host.rstrip("/") + "/",
                # Connections are bounded by the status writer's patches in flight.
                connector=aiohttp.TCPConnector(ssl=self._ssl()),
                timeout=aiohttp.ClientTimeout(sock_connect=connect, sock_read=read),
                json_serialize=json.dumps,
            )
        return self._session

    async def patch(
        self, path: str, body: dict[str, Any] | list[dict[str, Any]], *, json_patch: bool = False
    ) -> bool:
        """Patch ``path`` (relative to the API server's root): a merge patch, or a JSON
        patch (RFC 6902) with ``json_patch``; ``False`` on 404, :class:`ApiException`
        on any other error."""
        kind = "json-patch" if json_patch else "merge-patch"
        headers = self._headers(f"application/{kind}+json")
        async with self._session_now().patch(path, json=body, headers=headers) as response:
            if response.status == 404:
                return False
            if response.status >= 300:
                raise ApiException(status=response.status, reason=await response.text())
            await response.read()  # the connection goes back to the pool
        return True

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": content_type} if content_type else {}
        # The official client's lookup: ``BearerToken``, or ``authorization`` as kubeconfig
        # and in-cluster loading store it.
        token = self.configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            headers["Authorization"] = token
        return headers

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any] | None:
        """GET ``path`` as JSON; ``None`` on 404, :class:`ApiException` on other errors."""
        async with self._session_now().get(path, params=params, headers=self._headers()) as reply:
            if reply.status == 404:
                await reply.read()
                return None
            if reply.status >= 300:
                raise ApiException(status=reply.status, reason=await reply.text())
            found: dict[str, Any] = await reply.json(loads=json.loads)
        return found

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON body to ``path``; the reply as JSON."""
        headers = self._headers("application/json")
        async with self._session_now().post(path, json=body, headers=headers) as reply:
            if reply.status >= 300:
                raise ApiException(status=reply.status, reason=await reply.text())
            answer: dict[str, Any] = await reply.json(loads=json.loads)
        return answer

    async def watch(self, path: str, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        """The watch events of the collection at ``path`` after ``resource_version``,
        until the server ends the watch (:data:`WATCH_SECONDS`). Lines are split here,
        not by the stream reader, which refuses lines longer than its buffer (a large
        object is one line)."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        connect, _read = REQUEST_TIMEOUT
        timeout = aiohttp.ClientTimeout(sock_connect=connect, sock_read=WATCH_SECONDS + 30)
        session = self._session_now()
        async with session.get(
            path, params=params, headers=self._headers(), timeout=timeout
        ) as reply:
            if reply.status >= 300:
                raise ApiException(status=reply.status, reason=await reply.text())
            pending = b""
            async for chunk in reply.content.iter_any():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _forbidden(exc: ApiException) -> Exception:
    """A 403 as :class:`PermissionError` (what a person must grant), else ``exc``."""
    return PermissionError(exc.reason) if exc.status == 403 else exc


class Kube:
    """Async facade over the synchronous client (one instance per process)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.patcher = Patcher(api.configuration)
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
        return await self.patcher.patch(f"{_stack_path(ref)}/status", {"status": body})

    async def patch_stack(self, ref: StackRef, patch: list[dict[str, Any]]) -> bool:
        """JSON-patch the stack (its metadata: the finalizer); ``False`` if it is gone,
        :class:`ApiException` 422 if a ``test`` operation failed."""
        return await self.patcher.patch(_stack_path(ref), patch, json_patch=True)

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
        await self.patcher.close()
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
        found = await self.patcher.get(path)
        for resource in (found or {}).get("resources") or []:
            if resource.get("kind") == kind and "/" not in resource.get("name", "/"):
                return str(resource["name"]), bool(resource.get("namespaced"))
        return None

    async def may_list_and_watch(
        self, namespace: str, group: str, resource: str, *, user: str | None
    ) -> bool:
        """Whether ``user`` (``None``: the operator itself) may list and watch
        ``resource`` in ``namespace``: a SubjectAccessReview (a SelfSubjectAccessReview
        for the operator) per verb."""
        review = "SelfSubjectAccessReview" if user is None else "SubjectAccessReview"
        for verb in ("list", "watch"):
            spec: dict[str, Any] = {
                "resourceAttributes": {
                    "namespace": namespace,
                    "verb": verb,
                    "group": group,
                    "resource": resource,
                }
            }
            if user is not None:
                spec["user"] = user
            answer = await self.patcher.post(
                f"apis/authorization.k8s.io/v1/{review.lower()}s",
                {"apiVersion": "authorization.k8s.io/v1", "kind": review, "spec": spec},
            )
            if not (answer.get("status") or {}).get("allowed"):
                return False
        return True

    async def list_objects(self, path: str) -> dict[str, Any]:
        """The collection at ``path`` (an empty list if the API server has none)."""
        return await self.patcher.get(path) or {"items": []}

    def watch_objects(self, path: str, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        """The watch events of the collection at ``path`` (:meth:`Patcher.watch`)."""
        return self.patcher.watch(path, resource_version)

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
