"""The read API (``agentstack api``): stacks, traces and live updates for dashboards.

:mod:`.cache` keeps a watch-backed copy of the AgentStacks, :mod:`.auth` decides who
may read which namespace, :mod:`.models` is the response schema, :mod:`.app` the
routes, :mod:`.server` the process. ``static/index.html`` is a small live page.
"""
