"""The API's routers, one module per area; :func:`~..app.create_app` includes them.

:mod:`.stacks` (REST reads), :mod:`.streams` (Server-Sent Events), :mod:`.steering`
(inputs, approvals, execution state: the writes), :mod:`.live` (the live page),
:mod:`.probes` (health, readiness, metrics). Routers hold no state: they take validated
parameters and services from :mod:`..params` and call the services.
"""
