"""The operator's writes to the Kubernetes API: status, Events, Jobs, Secrets, Leases.

Kopf owns the watch streams; everything the operator *writes* goes through here. The
official client is synchronous, so calls run in worker threads (``asyncio.to_thread``);
the status writer rate-limits them, so a bounded pool is plenty. Every call carries a
request timeout (:data:`REQUEST_TIMEOUT`): an API server that stops answering must
fail a call, never hang the loop that made it (leader election counts on it).
Connection details come from the in-cluster service account, else from
``$KUBECONFIG``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from agentstack_core.keys import StackRef
from agentstack_core.resource import GROUP, KIND, PLURAL, VERSION

logger = logging.getLogger(__name__)

COMPONENT = "agentstack-operator"
REQUEST_TIMEOUT = (5.0, 10.0)
"""(connect, read) seconds of every API call."""


def api_client() -> client.ApiClient:
    """A client for the in-cluster API server, else the one ``$KUBECONFIG`` names."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = 32
    return client.ApiClient(configuration)


class Kube:
    """Async facade over the synchronous client (one instance per process)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.coordination = client.CoordinationV1Api(api)

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a client call in a worker thread, bounded by :data:`REQUEST_TIMEOUT`."""
        return await asyncio.to_thread(method, *args, _request_timeout=REQUEST_TIMEOUT, **kwargs)

    async def patch_status(self, ref: StackRef, body: dict[str, Any]) -> bool:
        """Merge-patch the stack's status; ``False`` if the stack no longer exists."""
        try:
            await self._call(
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                ref.namespace,
                PLURAL,
                ref.name,
                {"status": body},
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

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
            secret = await self._call(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status in (403, 404):
                return False
            raise
        return key in (secret.data or {}) or key in (secret.string_data or {})

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
        """The Job as a plain manifest, or ``None`` if it does not exist."""
        try:
            job = await self._call(self.batch.read_namespaced_job, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        body: dict[str, Any] = self.api.sanitize_for_serialization(job)  # type: ignore[no-untyped-call]
        return body

    async def delete_jobs(self, namespace: str, selector: str) -> None:
        await self._call(
            self.batch.delete_collection_namespaced_job,
            namespace,
            label_selector=selector,
            propagation_policy="Background",
        )

    async def read_lease(self, namespace: str, name: str) -> Any:
        try:
            return await self._call(self.coordination.read_namespaced_lease, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def create_lease(self, namespace: str, body: client.V1Lease) -> bool:
        try:
            await self._call(self.coordination.create_namespaced_lease, namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def replace_lease(self, namespace: str, name: str, body: client.V1Lease) -> bool:
        """Replace (with the body's resourceVersion); ``False`` on a lost race."""
        try:
            await self._call(self.coordination.replace_namespaced_lease, name, namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True
