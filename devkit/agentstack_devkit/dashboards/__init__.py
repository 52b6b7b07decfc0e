"""The Grafana dashboards of the chart, generated from code.

The chart ships ``charts/agentstack-operator/dashboards/*.json`` as ConfigMaps for
Grafana's dashboard sidecar. Those files are written by this package, never by hand:

- :mod:`.panels` holds the shared, typed builders (``grafana_foundation_sdk``): the
  Prometheus data source variable, query targets, time series and stat panels, rows;
- :mod:`.fleet` builds the fleet view (``agentstack-fleet``), :mod:`.namespace` the
  per-namespace view (``agentstack-namespace``: a tenant's spend and budgets) and
  :mod:`.stack` the per-stack view (``agentstack-stack``, over the opt-in per-stack
  metrics);
- :mod:`.rendering` turns them into deterministic JSON (fixed uids, sequential panel
  ids, sorted keys) and writes or checks the files;
- :mod:`.promql` reads the queries back out of a dashboard (and the left-hand side out
  of an alert rule) so the tests can evaluate each against a real Prometheus.

Regenerate with ``python -m agentstack_devkit.dashboards`` (or ``make dashboards``).
"""

from __future__ import annotations

from agentstack_devkit.dashboards.rendering import DASHBOARDS, DASHBOARDS_DIR, render, write

__all__ = ["DASHBOARDS", "DASHBOARDS_DIR", "render", "write"]
