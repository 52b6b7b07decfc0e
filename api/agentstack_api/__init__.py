"""The HTTP API (``agentstack api``): stacks, traces and live updates for dashboards,
and the few steering actions people need (inputs, decisions on tool calls, pause,
resume and stop), each a ``POST`` that RBAC authorises.

Data flows from two sources to routers through small services:

- :mod:`.cache` keeps a watch-backed copy of the AgentStacks, :mod:`.auth` decides who
  may read which namespace; :mod:`.access` joins them (401, 403, 404, listings);
- :mod:`.views` reads a stack's Redis state (and searches its archive) and decodes its
  records into the response models of :mod:`.models`; :mod:`.sse` turns live entries
  and fleet changes into Server-Sent Events;
- :mod:`.inputs` sends inputs to a stack's agents, :mod:`.approvals` records decisions
  on tool calls, :mod:`.executionstate` pauses, resumes and stops a stack as the caller;
- :mod:`.params` holds the validated parameter types and hands routes their caller and
  services; :mod:`.errors` the one error body; :mod:`.routes` the routers;
- :mod:`.app` assembles them, :mod:`.server` is the process. ``static/`` holds the live
  page: its HTML shell and its script, built from the TypeScript of ``web/``
  (:mod:`.routes.live` serves them).
"""
