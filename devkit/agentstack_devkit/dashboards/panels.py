"""Typed builders shared by the dashboards: data source, targets, panels, variables.

Every panel queries the Prometheus data source picked by the ``datasource`` variable,
so one dashboard works with whichever Prometheus a Grafana has. Panel ids are handed
out in order by :class:`Board`, so the generated JSON never changes unless the code does.
Queries use ``$__rate_interval`` for rate windows (Grafana sizes it from the scrape
interval and the graph's resolution).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models

RATE = "$__rate_interval"
"""Grafana's rate window: at least four scrape intervals, never shorter than a step."""
RANGE = "$__range"
"""The dashboard's time range, for totals over what the graph shows."""
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["agentstack"]
REFRESH = "30s"
REF_IDS = "ABCDEFGH"


def query(expr: str, legend: str) -> prometheus.Dataquery:
    """One PromQL target; ``legend`` is Grafana's legend format (``{{label}}``)."""
    return prometheus.Dataquery().expr(expr).legend_format(legend).range()


def _targets(queries: tuple[prometheus.Dataquery, ...]) -> list[prometheus.Dataquery]:
    if not queries:
        raise ValueError("a panel needs at least one query")
    if len(queries) > len(REF_IDS):
        raise ValueError(f"a panel takes at most {len(REF_IDS)} queries")
    return [q.ref_id(ref) for q, ref in zip(queries, REF_IDS, strict=False)]


def graph(
    title: str,
    description: str,
    unit: str,
    *queries: prometheus.Dataquery,
    width: int = 8,
    height: int = 8,
    minimum: float | None = 0,
) -> timeseries.Panel:
    """A time series panel: lines over time, a legend below, a tooltip listing all series."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets(queries)))
        .unit(unit)
        .span(width)
        .height(height)
        .fill_opacity(10)
        .line_width(1)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    return panel if minimum is None else panel.min(minimum)


def single(
    title: str,
    description: str,
    unit: str,
    expr: str,
    *,
    width: int = 4,
    height: int = 4,
    warn_above: float | None = None,
) -> stat.Panel:
    """A stat panel: the last value of one query, with a sparkline; red above ``warn_above``."""
    steps = [models.Threshold(color="green", value=None)]
    if warn_above is not None:
        steps.append(models.Threshold(color="red", value=warn_above))
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets((query(expr, title),))))
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(dashboard.ThresholdsConfig().mode(models.ThresholdsMode.ABSOLUTE).steps(steps))
    )


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(
    name: str,
    label: str,
    values_of: str,
    *,
    description: str,
    include_all: bool = False,
) -> dashboard.QueryVariable:
    """A variable over the values of a label: ``label_values(<values_of>, <name>)``.

    ``values_of`` is a series selector; with ``include_all`` the variable offers "All"
    (the regex ``.*``) and several values at once, so queries match it with ``=~``.
    """
    variable = (
        dashboard.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query(f"label_values({values_of}, {name})")
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
    )
    if include_all:
        variable = variable.include_all(True).all_value(".*").multi(True)
    return variable


class Board:
    """A dashboard under construction: fixed uid, shared defaults, panel ids in order."""

    def __init__(self, uid: str, title: str, description: str, *, time_from: str) -> None:
        self._next_id = 0
        self.builder = (
            dashboard.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(TAGS)
            .refresh(REFRESH)
            .time(time_from, "now")
            .timezone("browser")
            .tooltip(models.DashboardCursorSync.CROSSHAIR)
            .with_variable(datasource_variable())
        )

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def variable(self, variable: dashboard.QueryVariable) -> Board:
        self.builder.with_variable(variable)
        return self

    def row(self, title: str) -> Board:
        self.builder.with_row(dashboard.Row(title).id(self._id()))
        return self

    def panel(self, panel: timeseries.Panel | stat.Panel) -> Board:
        self.builder.with_panel(panel.id(self._id()))
        return self

    def build(self) -> models.Dashboard:
        return self.builder.build()
