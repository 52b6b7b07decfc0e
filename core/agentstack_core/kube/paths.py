"""The URL paths of the API server's resources (relative to its root)."""

from __future__ import annotations


def group_path(group: str, version: str) -> str:
    """The root of an API group version (``api/v1`` for the core group)."""
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def resource_path(
    group: str,
    version: str,
    plural: str,
    *,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """A collection (across namespaces when ``namespace`` is ``None``), or one object
    of it by ``name``, or that object's ``subresource``."""
    path = group_path(group, version)
    if namespace is not None:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
    return path


def secret_path(namespace: str, name: str | None = None) -> str:
    """The Secrets of ``namespace``, or the one named ``name``."""
    return resource_path("", "v1", "secrets", namespace=namespace, name=name)


def resource_quota_path(namespace: str, name: str | None = None) -> str:
    """The ResourceQuotas of ``namespace``, or the one named ``name``."""
    return resource_path("", "v1", "resourcequotas", namespace=namespace, name=name)


def events_path(namespace: str) -> str:
    return resource_path("", "v1", "events", namespace=namespace)


def pods_path(namespace: str) -> str:
    return resource_path("", "v1", "pods", namespace=namespace)


def jobs_path(namespace: str) -> str:
    return resource_path("batch", "v1", "jobs", namespace=namespace)


def lease_path(namespace: str, name: str | None = None) -> str:
    """The Leases of ``namespace``, or the one named ``name``."""
    return resource_path("coordination.k8s.io", "v1", "leases", namespace=namespace, name=name)
