"""agentstack-operator: run fleets of autonomous LLM agent teams on Kubernetes.

The operator side of the project: the Kopf handlers that keep an index of ``AgentStack``
resources (:mod:`.index`), the one scheduler that dispatches their ticks
(:mod:`.dispatching`), the result folding (:mod:`.folding`), the status writer
(:mod:`.statuswriting`), leader election (:mod:`.leadership`), wired by the coordinator
(:mod:`.coordinator`) and run as one process (:mod:`.service`); the HTTP API
(:mod:`.api`); and the ``agentstack`` command line.

It shares only ``agentstack_core`` with the runner; import-linter contracts in
``pyproject.toml`` keep it from importing the runner process (but for the command
line's hand-off) or the dev kit.
"""

__version__ = "0.1.0"
