"""agentstack-operator: run fleets of autonomous LLM agent teams on Kubernetes.

The operator process: the Kopf handlers that keep an index of ``AgentStack`` resources
(:mod:`.index`), the one scheduler that dispatches their ticks (:mod:`.dispatching`),
the result folding (:mod:`.folding`), the status writer (:mod:`.statuswriting`), leader
election (:mod:`.leadership`), wired by the coordinator (:mod:`.coordinator`) and run
as one process (:mod:`.service`).

It shares only ``agentstack_core`` with the runner (``agentstack_runner``) and the API
(``agentstack_api``); the command lines (``agentstack_cli``) start it. Import-linter
contracts in ``pyproject.toml`` keep the processes apart and the dev kit out.
"""

__version__ = "0.1.0"
