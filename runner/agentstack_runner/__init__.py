"""agentstack-runner: the engine that executes an ``AgentStack``'s ticks.

Runner processes consume tick requests, run the stack's agents against an LLM
provider, and keep memory, messages and traces in Redis. This package never imports
``agentstack_operator``: the operator depends on the runner's protocol, not the
other way round.
"""
