"""The synchronous ``kubernetes`` client, for the calls not yet on the async layer
(:mod:`agentstack_core.kube`, which the API process uses alone).

In a pod, the ServiceAccount's token and CA (the in-cluster configuration, whose token
the client reads again as the kubelet rotates it); elsewhere — ``make dev``, the tests,
a laptop — the kubeconfig ``$KUBECONFIG`` names. ``agentstack uninstall`` (a command
line, synchronous from end to end) builds its client here; the processes do not.
"""

from __future__ import annotations

from kubernetes import client, config

CONNECTION_POOL_SIZE = 32
"""Connections a process keeps to the API server: its calls run in worker threads,
several at once."""


def api_client() -> client.ApiClient:
    """A client for the in-cluster API server, else the one ``$KUBECONFIG`` names."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    return client.ApiClient(configuration)
