"""The chart's Grafana dashboards are what ``agentstack_devkit.dashboards`` generates.

The e2e suite (``tests/e2e/test_prometheus.py``) proves every query returns data from a
real Prometheus; these tests keep the committed JSON and the code in step and check the
shape Grafana and the chart rely on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentstack_devkit.dashboards import DASHBOARDS, DASHBOARDS_DIR, render, write
from agentstack_devkit.dashboards.__main__ import main
from agentstack_devkit.dashboards.promql import (
    label_values_query,
    measured,
    panels,
    queries,
    query_variables,
    substitute,
)

UIDS = {
    "fleet.json": "agentstack-fleet",
    "namespace.json": "agentstack-namespace",
    "stack.json": "agentstack-stack",
}


def _dashboard(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((DASHBOARDS_DIR / name).read_text(encoding="utf-8"))
    return data


def test_the_committed_json_is_exactly_what_the_code_generates() -> None:
    committed = sorted(path.name for path in DASHBOARDS_DIR.glob("*.json"))
    assert committed == sorted(DASHBOARDS)
    for name in DASHBOARDS:
        assert (DASHBOARDS_DIR / name).read_text(encoding="utf-8") == render(name), (
            f"{name} is stale or edited by hand: run python -m agentstack_devkit.dashboards"
        )


def test_generation_is_deterministic() -> None:
    for name in DASHBOARDS:
        assert render(name) == render(name)


def test_check_mode_finds_hand_edits_and_strays(tmp_path: Path) -> None:
    write(tmp_path)
    assert main(["--check", str(tmp_path)]) == 0
    edited = tmp_path / "fleet.json"
    edited.write_text(edited.read_text().replace("agentstack fleet", "my fleet"))
    (tmp_path / "hand-made.json").write_text("{}")
    assert main(["--check", str(tmp_path)]) == 1
    write(tmp_path)  # rewrites the edited file and removes the stray one
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(DASHBOARDS)
    assert main(["--check", str(tmp_path)]) == 0


def test_uids_are_fixed_and_unique() -> None:
    assert {name: _dashboard(name)["uid"] for name in DASHBOARDS} == UIDS


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_has_a_title_a_description_and_queries(name: str) -> None:
    dashboard = _dashboard(name)
    shown = list(panels(dashboard))
    assert len(shown) >= 8
    ids = [panel["id"] for panel in dashboard["panels"]]  # type: ignore[index]
    assert ids == list(range(1, len(ids) + 1)), "panel ids are stable: 1, 2, 3, … in order"
    for panel in shown:
        assert panel["title"], panel
        assert panel["description"], panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["refId"], panel["title"]
    titles = [panel["title"] for panel in shown]
    assert len(set(titles)) == len(titles), "a title is used twice"
    # Every query selects agentstack_ series; every variable it uses is defined.
    defined = {v["name"] for v in dashboard["templating"]["list"]}  # type: ignore[index]
    for found in queries(dashboard):
        assert "agentstack_" in found.expr, found
        values = {name: "x" for name in defined | {"__rate_interval", "__range"}}
        assert "$" not in substitute(found.expr, values), found


def test_fleet_view_shows_what_the_issue_asks_for() -> None:
    titles = {panel["title"] for panel in panels(_dashboard("fleet.json"))}
    assert {
        "Stacks by state",
        "Ticks per second by outcome",
        "Failed share of ticks",
        "Dispatch lag p99",
        "Queue depth",
        "Tokens per second by model",
        "Spend per hour by model",
        "LLM latency p95 by provider",
        "Fallbacks per second",
        "Circuit open",
        "Approvals waiting",
        "Tool calls per second by outcome",
        "Status writes per second",
    } <= titles


def test_the_stack_view_has_namespace_and_stack_variables() -> None:
    dashboard = _dashboard("stack.json")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}  # type: ignore[index]
    assert list(variables) == ["datasource", "namespace", "stack"]
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["query"] == (
        "label_values(agentstack_stack_ticks_total, namespace)"
    )
    assert variables["stack"]["query"] == (
        'label_values(agentstack_stack_ticks_total{namespace="$namespace"}, stack)'
    )
    for found in queries(dashboard):
        assert 'namespace="$namespace", stack="$stack"' in found.expr, found
        assert "agentstack_stack_" in found.expr, found


def test_the_fleet_view_filters_by_the_targets_namespace() -> None:
    dashboard = _dashboard("fleet.json")
    (namespace,) = query_variables(dashboard)
    assert (namespace["name"], namespace["includeAll"], namespace["allValue"]) == (
        "namespace",
        True,
        ".*",
    )
    for found in queries(dashboard):
        assert 'namespace=~"$namespace"' in found.expr, found
        assert "agentstack_stack_" not in found.expr, "per-stack metrics are opt-in"


def test_label_values_become_promql() -> None:
    assert label_values_query('label_values(m{a="b"}, stack)') == (
        'count by (stack) (m{a="b"})',
        "stack",
    )
    with pytest.raises(ValueError, match="not a label_values"):
        label_values_query("query_result(up)")


def test_substitute_refuses_a_variable_without_value() -> None:
    assert substitute('rate(m{n="$namespace"}[${w}])', {"namespace": "a", "w": "1m"}) == (
        'rate(m{n="a"}[1m])'
    )
    with pytest.raises(KeyError):
        substitute('m{n="$stack"}', {})


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("sum(agentstack_operator_leader) < 1", ["sum(agentstack_operator_leader)"]),
        ('up{job="r"} == 0', ['up{job="r"}']),
        ('absent(up{job="o"} == 1)', ['up{job="o"} == 1']),
        (
            '(sum(rate(t{o="Failed"}[10m])) or vector(0))\n/ sum(rate(t[10m]))\n> 0.2',
            ['(sum(rate(t{o="Failed"}[10m])) or vector(0))\n/ sum(rate(t[10m]))'],
        ),
        (
            "max(q) > 1000\nand\nderiv(max(q)[15m:1m]) > 0",
            ["max(q)", "deriv(max(q)[15m:1m])"],
        ),
        ('max(a and on (job) (b{x="and"} == 1)) > 2', ['max(a and on (job) (b{x="and"} == 1))']),
        ("brand(x) >= 1e3", ["brand(x)"]),
    ],
)
def test_measured_drops_the_threshold_of_an_alert(expr: str, expected: list[str]) -> None:
    assert measured(expr) == expected
