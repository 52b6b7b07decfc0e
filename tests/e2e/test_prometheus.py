"""A real Prometheus scrapes operator, runner and read API; docs/metrics.md stays true.

``docs/metrics.md`` is what users build dashboards and alerts from, so this module treats
it as a contract and checks it against the running processes rather than against the
metric modules' source:

- Prometheus (Debian's binary, scraping every second) reaches all three ``/metrics``
  endpoints;
- every query of the page's ``promql`` block returns data from that Prometheus — a
  query with a wrong metric or label name returns nothing, and one over histograms that
  never move returns only NaN, so both fail here;
- the page's metric table and the exposed ``agentstack_`` families match both ways (name,
  type, labels, process), so neither the docs nor the code can drift alone;
- ``promtool check metrics`` finds nothing to criticise in any process's exposition.
"""

from __future__ import annotations

import math
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from agentstack_devkit.fleet import Fleet
from agentstack_devkit.processes import LOOPBACK, DevEnvError
from agentstack_devkit.prometheus import PrometheusServer, promtool_binary
from tests.e2e.stacks import Stacks
from tests.helpers import eventually

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
JOBS = ("operator", "runner", "api")
QUERY_TIMEOUT = 60.0


@dataclass(frozen=True)
class DocumentedQuery:
    comment: str
    expr: str


@dataclass(frozen=True)
class DocumentedMetric:
    name: str
    type: str
    labels: frozenset[str]
    process: str


@dataclass
class ExposedFamily:
    type: str
    processes: set[str] = field(default_factory=set)
    label_sets: set[frozenset[str]] = field(default_factory=set)


def documented_queries(text: str) -> list[DocumentedQuery]:
    """The ``promql`` block of "Useful queries": each query line with the comment above."""
    section = text.split("## Useful queries", 1)[1]
    block = re.search(r"```promql\n(.*?)\n```", section, re.DOTALL)
    assert block is not None, f"{DOC}: no ```promql block under 'Useful queries'"
    queries: list[DocumentedQuery] = []
    comment = ""
    for line in block.group(1).splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            comment = line.lstrip("# ").strip()
        else:
            queries.append(DocumentedQuery(comment, line))
            comment = ""
    return queries


def documented_metrics(text: str) -> dict[str, DocumentedMetric]:
    """Rows of the metric table: ``| `name` | type | `label`, … | process | meaning |``."""
    metrics: dict[str, DocumentedMetric] = {}
    for line in text.splitlines():
        if not line.startswith("| `agentstack_"):
            continue
        name, kind, labels, process = (cell.strip() for cell in line.split("|")[1:5])
        name = name.strip("`")
        assert name not in metrics, f"{DOC}: {name} is listed twice"
        metrics[name] = DocumentedMetric(
            name, kind, frozenset(re.findall(r"`([a-z_]+)`", labels)), process
        )
    return metrics


DOC_TEXT = DOC.read_text(encoding="utf-8")
QUERIES = documented_queries(DOC_TEXT)
METRICS = documented_metrics(DOC_TEXT)


def _query_id(query: DocumentedQuery) -> str:
    return re.sub(r"[^a-z0-9]+", "-", query.comment.lower())[:48].strip("-")


@dataclass(frozen=True)
class Monitored:
    prometheus: PrometheusServer
    ports: dict[str, int]
    http: httpx.Client
    namespace: str

    def scrape(self, job: str) -> str:
        response = httpx.get(f"http://{LOOPBACK}:{self.ports[job]}/metrics", timeout=10)
        assert response.status_code == 200, response.text
        return response.text


@pytest.fixture(scope="module")
def monitored_namespace(k8s_api: client.ApiClient) -> Iterator[str]:
    name = f"prom-{secrets.token_hex(4)}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def monitored(
    fleet: Fleet,
    k8s_api: client.ApiClient,
    monitored_namespace: str,
    redis_reader: redis.Redis,
) -> Iterator[Monitored]:
    """Operator, runner and API with two ticking stacks, scraped by a real Prometheus."""
    _process, operator_port = fleet.operator()
    _process, runner_port = fleet.runner()
    _process, api_port = fleet.api()
    stacks = Stacks(k8s_api, monitored_namespace, redis_reader)
    stacks.create("alpha")
    stacks.create("beta")
    stacks.wait_ticks("alpha", 2)
    stacks.wait_ticks("beta", 1)
    ports = {"operator": operator_port, "runner": runner_port, "api": api_port}
    targets = {job: [f"{LOOPBACK}:{port}"] for job, port in ports.items()}
    with (
        httpx.Client(base_url=f"http://{LOOPBACK}:{api_port}", timeout=10) as http,
        PrometheusServer(targets) as prometheus,
    ):
        listed = http.get("/api/v1/stacks", params={"namespace": monitored_namespace})
        assert listed.status_code == 200, listed.text
        yield Monitored(prometheus, ports, http, monitored_namespace)


def _wait_for_data(prometheus: PrometheusServer, expr: str) -> list[dict[str, Any]]:
    """Wait until ``expr`` returns at least one sample whose value is a number (not NaN)."""
    prometheus.query(expr)  # a syntax error fails at once, not after the timeout
    last: list[dict[str, Any]] = []

    def has_data() -> list[dict[str, Any]] | None:
        nonlocal last
        last = prometheus.query(expr)
        return last if any(not math.isnan(float(s["value"][1])) for s in last) else None

    try:
        return eventually(has_data, f"data from {expr}", timeout=QUERY_TIMEOUT)
    except DevEnvError as exc:
        raise AssertionError(f"{exc}; last result: {last}") from exc


def test_prometheus_scrapes_all_three_processes(monitored: Monitored) -> None:
    prometheus = monitored.prometheus
    for job in JOBS:

        def scraped(job: str = job) -> list[dict[str, Any]] | None:
            return prometheus.query(f'up{{job="{job}"}} == 1') or None

        try:
            eventually(scraped, f"Prometheus to scrape {job}", timeout=QUERY_TIMEOUT)
        except DevEnvError as exc:
            raise AssertionError(f"{exc}; targets: {prometheus.active_targets()}") from exc
    up = {s["metric"]["job"]: s["value"][1] for s in prometheus.query("up")}
    assert up == {job: "1" for job in JOBS}


def test_read_api_requests_are_recorded_by_route(monitored: Monitored) -> None:
    response = monitored.http.get(
        f"/api/v1/namespaces/{monitored.namespace}/stacks/alpha/ticks", params={"limit": 2}
    )
    assert response.status_code == 200, response.text
    route = "/api/v1/namespaces/{namespace}/stacks/{name}/ticks"
    found = _wait_for_data(
        monitored.prometheus,
        f'agentstack_api_request_duration_seconds_count{{route="{route}", status="2xx"}}',
    )
    assert found[0]["metric"]["method"] == "GET"


def test_the_docs_hold_useful_queries() -> None:
    assert len(QUERIES) >= 8
    assert all(query.comment for query in QUERIES), "every query needs a # comment above it"
    assert len({q.expr for q in QUERIES}) == len(QUERIES), "a query is listed twice"


@pytest.mark.parametrize("query", QUERIES, ids=[_query_id(q) for q in QUERIES])
def test_documented_query_returns_data(monitored: Monitored, query: DocumentedQuery) -> None:
    assert _wait_for_data(monitored.prometheus, query.expr)


def _exposed(monitored: Monitored) -> dict[str, ExposedFamily]:
    """The ``agentstack_`` families each process exposes, named as the docs name them."""
    families: dict[str, ExposedFamily] = {}
    for job in JOBS:
        parsed = list(text_string_to_metric_families(monitored.scrape(job)))
        # prometheus_client writes a ``<family>_created`` gauge beside every counter and
        # histogram; it belongs to that family (the docs say so once, not per metric).
        with_created = {f.name for f in parsed if f.type in ("counter", "histogram")}
        for family in parsed:
            if not family.name.startswith("agentstack_"):
                continue
            if family.name.endswith("_created") and family.name[: -len("_created")] in (
                with_created
            ):
                continue
            # The parser names a counter family without ``_total``; its samples have it.
            name = f"{family.name}_total" if family.type == "counter" else family.name
            exposed = families.setdefault(name, ExposedFamily(family.type))
            exposed.processes.add(job)
            exposed.label_sets.update(
                frozenset(set(sample.labels) - {"le"}) for sample in family.samples
            )
    return families


def test_documented_metrics_are_exactly_the_exposed_ones(monitored: Monitored) -> None:
    exposed = _exposed(monitored)
    assert sorted(set(exposed) - set(METRICS)) == [], f"exposed but not in {DOC}"
    assert sorted(set(METRICS) - set(exposed)) == [], f"in {DOC} but exposed by no process"
    for name, doc in METRICS.items():
        family = exposed[name]
        assert family.type == doc.type, name
        assert doc.process in family.processes, f"{name} is not exposed by the {doc.process}"
        for labels in family.label_sets:
            assert labels == doc.labels, f"{name}: exposed with labels {sorted(labels)}"
    # Labelled metrics that no process has set yet show no samples; the rest must.
    assert any(family.label_sets for family in exposed.values())


def test_each_metric_is_exposed_only_by_its_process(monitored: Monitored) -> None:
    exposed = _exposed(monitored)
    strays = {
        name: sorted(family.processes - {METRICS[name].process})
        for name, family in exposed.items()
        if name in METRICS and family.processes != {METRICS[name].process}
    }
    assert strays == {}


@pytest.mark.parametrize("job", JOBS)
def test_promtool_finds_no_problem_in_the_exposition(monitored: Monitored, job: str) -> None:
    checked = subprocess.run(
        [promtool_binary(), "check", "metrics"],
        input=monitored.scrape(job),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
