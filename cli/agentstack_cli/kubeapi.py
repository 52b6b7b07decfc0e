"""The synchronous ``kubernetes`` client of ``agentstack uninstall``.

A command line that runs once, from end to end, so it has no event loop to share: the
processes reach the API server through the async layer (:mod:`agentstack_core.kube`)
instead. In a pod (the chart's pre-delete hook), the ServiceAccount's token and CA;
elsewhere — a laptop with the cluster's kubeconfig — the one ``$KUBECONFIG`` names.
"""

from __future__ import annotations

from kubernetes import client, config


def api_client() -> client.ApiClient:
    """A client for the in-cluster API server, else the one ``$KUBECONFIG`` names."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient(client.Configuration.get_default_copy())
