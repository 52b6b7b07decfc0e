"""agentstack-operator: run fleets of autonomous LLM agent teams on Kubernetes.

The operator side of the project: the Kopf handlers that keep an index of ``AgentStack``
resources, the scheduler that dispatches their ticks, the status folding, the read API,
the ``agentstack`` command line, and the local development environment (``devenv``)
that the tests and ``agentstack dev`` share.

It may import the runner's public protocol, store and spec modules; the runner never
imports this package (an import-linter contract in ``pyproject.toml`` keeps it so).
"""

__version__ = "0.1.0"
