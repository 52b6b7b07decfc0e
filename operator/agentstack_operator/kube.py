"""The operator's calls to the Kubernetes API: status, Events, Jobs, Secrets, Leases.

Kopf owns the watch streams of stacks and Jobs; everything else the operator asks of
the API server goes through here — its writes, the reads they need, and the triggers'
watches (:mod:`.triggering`) with the discovery and access reviews those need — on the
event loop, through the one async layer
(:class:`~agentstack_core.kube.client.KubeClient`: raw JSON on aiohttp, a timeout on
every call, typed errors; its module's doc says why not a generated client).

Leases go over a client of their own, injected as ``leases``: its own session, so its
own connection pool. Thousands of new stacks mean thousands of ``Started`` Events at
once; when the calls ran in a shared thread pool, a renewal queued behind them missed
its deadline and cost the leadership (measured at 10,000 stacks). On one event loop
nothing waits for a worker any more, but a session still bounds its connections, and
a renewal must never wait for one behind a burst of Events.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

from agentstack_core.keys import StackRef
from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.errors import ConflictError, ForbiddenError, KubeError, NotFoundError
from agentstack_core.kube.events import InvolvedObject, event_body
from agentstack_core.kube.jobs import Job, Pod
from agentstack_core.kube.leases import Lease
from agentstack_core.kube.paths import (
    events_path,
    jobs_path,
    lease_path,
    pods_path,
    resource_path,
    resource_quota_path,
    secret_path,
)
from agentstack_core.kube.reviews import (
    SELF_SUBJECT_ACCESS_REVIEWS,
    SUBJECT_ACCESS_REVIEWS,
    ResourceAttributes,
    allowed,
    self_subject_access_review,
    subject_access_review,
)
from agentstack_core.kube.stacks import stack_path
from agentstack_core.resource import BUDGET_KIND, BUDGET_PLURAL, GROUP, KIND, PLURAL, VERSION

logger = logging.getLogger(__name__)

COMPONENT = "agentstack-operator"


def _forbidden(exc: KubeError) -> Exception:
    """A 403 as :class:`PermissionError` (what a person must grant), else ``exc``."""
    return PermissionError(exc.reason) if isinstance(exc, ForbiddenError) else exc


class Kube:
    """The operator's Kubernetes calls (one instance per process): ``client`` for all
    of them but the Leases, which go over ``leases`` (see the module doc)."""

    def __init__(self, client: KubeClient, leases: KubeClient) -> None:
        self.client = client
        self.leases = leases

    async def patch_status(self, ref: StackRef, body: dict[str, Any]) -> bool:
        """Merge-patch the stack's status; ``False`` if the stack no longer exists."""
        try:
            await self.client.merge_patch(
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
            await self.client.json_patch(stack_path(ref.namespace, ref.name), patch)
        except NotFoundError:
            return False
        return True

    async def read_stack(self, ref: StackRef) -> dict[str, Any] | None:
        """The stack as a plain manifest, or ``None`` if it does not exist."""
        try:
            return await self.client.get(stack_path(ref.namespace, ref.name))
        except NotFoundError:
            return None

    async def close(self) -> None:
        await self.client.close()
        await self.leases.close()

    async def post_event(
        self, ref: StackRef, uid: str, reason: str, message: str, *, warning: bool = False
    ) -> None:
        """Record a Kubernetes Event on the stack (best effort: failures are logged)."""
        about = InvolvedObject(f"{GROUP}/{VERSION}", KIND, ref.namespace, ref.name, uid)
        await self._post(about, reason, message, warning=warning)

    async def patch_budget_status(self, namespace: str, name: str, body: dict[str, Any]) -> bool:
        """Merge-patch an ``AgentBudget``'s status; ``False`` if it no longer exists."""
        path = resource_path(
            GROUP, VERSION, BUDGET_PLURAL, namespace=namespace, name=name, subresource="status"
        )
        try:
            await self.client.merge_patch(path, {"status": body})
        except NotFoundError:
            return False
        return True

    async def keep_stack_quota(
        self, namespace: str, name: str, owner: tuple[str, str], max_stacks: int | None
    ) -> None:
        """Keep the ResourceQuota ``name`` that caps the namespace's AgentStacks at
        ``max_stacks`` (``None``: delete it), owned by the AgentBudget ``owner`` (its
        name and uid: deleting the budget deletes the quota)."""
        path = resource_quota_path(namespace, name)
        if max_stacks is None:
            with contextlib.suppress(NotFoundError):
                await self.client.delete(path)
            return
        body = {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": COMPONENT},
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": BUDGET_KIND,
                        "name": owner[0],
                        "uid": owner[1],
                    }
                ],
            },
            "spec": {"hard": {f"count/{PLURAL}.{GROUP}": str(max_stacks)}},
        }
        try:
            await self.client.create(resource_quota_path(namespace), body)
        except ConflictError:
            await self.client.merge_patch(path, {"spec": body["spec"]})

    async def post_budget_event(
        self, namespace: str, name: str, uid: str, reason: str, message: str, *, warning: bool
    ) -> None:
        """Record a Kubernetes Event on an ``AgentBudget`` (best effort, as on a stack)."""
        about = InvolvedObject(f"{GROUP}/{VERSION}", BUDGET_KIND, namespace, name, uid)
        await self._post(about, reason, message, warning=warning)

    async def _post(
        self, about: InvolvedObject, reason: str, message: str, *, warning: bool
    ) -> None:
        body = event_body(
            about,
            reason,
            message,
            component=COMPONENT,
            warning=warning,
            now=dt.datetime.now(dt.UTC),
        )
        try:
            await self.client.create(events_path(about.namespace), body)
        except KubeError as exc:
            where = f"{about.kind} {about.namespace}/{about.name}"
            logger.warning("could not post event %s on %s: %s", reason, where, exc.reason)

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
            return await self.client.get(secret_path(namespace, name))
        except NotFoundError:
            return None
        except KubeError as exc:
            raise _forbidden(exc) from exc

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> bool:
        """``False`` if it exists already; :class:`PermissionError` if RBAC refuses."""
        try:
            await self.client.create(secret_path(namespace), body)
        except ConflictError:
            return False
        except KubeError as exc:
            raise _forbidden(exc) from exc
        return True

    async def replace_secret(self, namespace: str, body: dict[str, Any]) -> bool:
        """Replace (with the body's resourceVersion); ``False`` on a lost race."""
        try:
            await self.client.replace(secret_path(namespace, body["metadata"]["name"]), body)
        except (NotFoundError, ConflictError):
            return False
        except KubeError as exc:
            raise _forbidden(exc) from exc
        return True

    async def job_pods(self, namespace: str, job: str) -> list[Pod]:
        """The pods of a Job (to tell why it failed), newest last."""
        listed = await self.client.list(pods_path(namespace), {"labelSelector": f"job-name={job}"})
        return sorted(
            (Pod.of(pod) for pod in listed.items), key=lambda pod: pod.meta.creation_timestamp
        )

    async def create_job(self, namespace: str, body: Any) -> bool:
        """Create a Job (a manifest dict); ``False`` if it exists already (a duplicate)."""
        try:
            await self.client.create(jobs_path(namespace), body)
        except ConflictError:
            return False
        return True

    async def read_job(self, namespace: str, name: str) -> Job | None:
        """The Job, or ``None`` if it does not exist.

        Listed by name rather than read: the operator may ``list`` Jobs (Kopf watches
        them) but not ``get`` them (README "RBAC"), and a list narrowed by a field
        selector costs the API server no more than a read."""
        listed = await self.client.list(
            jobs_path(namespace), {"fieldSelector": f"metadata.name={name}"}
        )
        return Job.of(listed.items[0]) if listed.items else None

    async def delete_jobs(self, namespace: str, selector: str) -> None:
        """Delete the Jobs ``selector`` picks (one deletecollection), their pods after
        them."""
        await self.client.delete(
            jobs_path(namespace), {"labelSelector": selector, "propagationPolicy": "Background"}
        )

    async def api_resource(self, api_version: str, kind: str) -> tuple[str, bool] | None:
        """The resource (plural) that serves ``kind`` in ``api_version``, and whether it
        is namespaced; ``None`` if the API server has no such kind (discovery)."""
        path = "api/v1" if api_version == "v1" else f"apis/{api_version}"
        try:
            found = await self.client.get(path)
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
                answer = await self.client.create(
                    SELF_SUBJECT_ACCESS_REVIEWS, self_subject_access_review(attributes)
                )
            else:
                answer = await self.client.create(
                    SUBJECT_ACCESS_REVIEWS, subject_access_review(attributes, user)
                )
            if not allowed(answer):
                return False
        return True

    async def list_objects(self, path: str) -> dict[str, Any]:
        """The collection at ``path`` (an empty list if the API server has none)."""
        try:
            return await self.client.get(path)
        except NotFoundError:
            return {"items": []}

    async def watch_objects(
        self, path: str, resource_version: str
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch events of the collection at ``path``
        (:meth:`~agentstack_core.kube.client.KubeClient.watch`) as the lines they came
        as: :mod:`.triggering` reads them so until it moves onto the typed events."""
        async for event in self.client.watch(path, resource_version):
            yield {"type": event.type, "object": event.object}

    async def read_lease(self, namespace: str, name: str) -> Lease | None:
        try:
            return Lease.of(await self.leases.get(lease_path(namespace, name)))
        except NotFoundError:
            return None

    async def create_lease(self, lease: Lease) -> bool:
        """``False`` if another replica created it first."""
        try:
            await self.leases.create(lease_path(lease.meta.namespace), lease.manifest())
        except ConflictError:
            return False
        return True

    async def replace_lease(self, lease: Lease) -> bool:
        """Replace (with the lease's resourceVersion); ``False`` on a lost race."""
        try:
            await self.leases.replace(
                lease_path(lease.meta.namespace, lease.meta.name), lease.manifest()
            )
        except ConflictError:
            return False
        return True
