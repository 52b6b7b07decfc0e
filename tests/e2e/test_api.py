"""The read API as a real process, against the real control plane, Redis and runners."""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from kubernetes import client

from agentstack_devkit.fleet import Fleet
from tests.e2e.stacks import Stacks
from tests.helpers import eventually


@pytest.fixture(scope="module")
def api_namespace(k8s_api: client.ApiClient) -> Iterator[str]:
    name = f"api-{secrets.token_hex(4)}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def api(
    fleet: Fleet, k8s_api: client.ApiClient, api_namespace: str, redis_reader: redis.Redis
) -> Iterator[tuple[httpx.Client, Stacks]]:
    """Operator, runner and API; two ticking stacks and a paused one, with a Secret."""
    fleet.operator()
    fleet.runner()
    _process, port = fleet.api()
    stacks = Stacks(k8s_api, api_namespace, redis_reader)
    stacks.core.create_namespaced_secret(
        api_namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="llm-keys"),
            string_data={"OPENAI_API_KEY": "sk-never-in-a-response"},
        ),
    )
    stacks.create(
        "alpha",
        llm={
            "model": {"provider": "scripted"},
            "providers": {"openai": {"secretRef": {"name": "llm-keys", "key": "OPENAI_API_KEY"}}},
        },
    )
    stacks.create("beta")
    stacks.create("gamma", executionState="Paused")
    stacks.wait_ticks("alpha", 4)
    stacks.wait_ticks("beta", 1)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        yield http, stacks


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["status"] == status
    assert body["error"]["code"] == code
    return str(body["error"]["message"])


def test_stacks_are_listed_filtered_and_paged(api: tuple[httpx.Client, Stacks]) -> None:
    http, stacks = api
    ns = stacks.namespace
    listed = _ok(http.get("/api/v1/stacks", params={"namespace": ns}))
    assert [s["name"] for s in listed["items"]] == ["alpha", "beta", "gamma"]
    assert listed["nextCursor"] is None
    alpha = listed["items"][0]
    assert alpha["executionState"] == "Running"
    assert alpha["ready"] == "True"
    assert alpha["ticks"] >= 1
    paused = _ok(http.get("/api/v1/stacks", params={"namespace": ns, "state": "Paused"}))
    assert [s["name"] for s in paused["items"]] == ["gamma"]

    first = _ok(http.get("/api/v1/stacks", params={"namespace": ns, "limit": 2}))
    assert [s["name"] for s in first["items"]] == ["alpha", "beta"]
    assert first["nextCursor"] == f"{ns}/beta"
    second = _ok(
        http.get(
            "/api/v1/stacks", params={"namespace": ns, "limit": 2, "cursor": first["nextCursor"]}
        )
    )
    assert [s["name"] for s in second["items"]] == ["gamma"]
    assert second["nextCursor"] is None


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 100000}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"state": "Sleeping"}, "state"),
        ({"namespace": "Not_A_Namespace"}, "namespace"),
        ({"cursor": "no-slash"}, "cursor"),
    ],
)
def test_bad_list_parameters_are_400_with_a_clear_body(
    api: tuple[httpx.Client, Stacks], params: dict[str, Any], fragment: str
) -> None:
    http, _ = api
    assert fragment in _error(http.get("/api/v1/stacks", params=params), 400, "InvalidParameter")


def test_one_stack_shows_spec_summary_and_status_but_no_secret(
    api: tuple[httpx.Client, Stacks],
) -> None:
    http, stacks = api
    response = http.get(f"/api/v1/namespaces/{stacks.namespace}/stacks/alpha")
    detail = _ok(response)
    assert detail["spec"]["goal"] == "goal of alpha"
    assert [a["name"] for a in detail["spec"]["agents"]] == [
        "planner",
        "builder",
        "reviewer",
        "communicator",
    ]
    assert detail["spec"]["providers"] == [{"name": "openai", "usesSecret": True, "baseURL": None}]
    assert detail["status"]["observedGeneration"] == 1
    assert detail["generation"] == 1
    assert detail["costUSD"] == 0.0
    assert detail["status"]["costUSD"] == "0.000000"
    assert detail["tokensUsed"] == detail["status"]["tokensUsed"] > 0
    assert "sk-never-in-a-response" not in response.text
    assert "llm-keys" not in response.text

    missing = http.get(f"/api/v1/namespaces/{stacks.namespace}/stacks/nope")
    assert "no AgentStack" in _error(missing, 404, "NotFound")
    _error(http.get("/api/v1/namespaces/BAD/stacks/alpha"), 400, "InvalidParameter")
    _error(http.get("/api/v1/no-such-route"), 404, "NotFound")
    _error(http.post("/api/v1/stacks"), 405, "MethodNotAllowed")


def test_agents_memory_artifacts_and_messages(api: tuple[httpx.Client, Stacks]) -> None:
    http, stacks = api
    base = f"/api/v1/namespaces/{stacks.namespace}/stacks/alpha"
    agents = _ok(http.get(f"{base}/agents"))["items"]
    assert (agents[0]["name"], agents[0]["role"]) == ("planner", "planner")
    assert agents[0]["models"] == ["scripted:scripted-v1"]
    communicator = next(a for a in agents if a["name"] == "communicator")
    assert communicator["memoryKeys"] >= 1
    builder = next(a for a in agents if a["name"] == "builder")
    assert builder["inboxMessages"] >= 1

    memory = _ok(http.get(f"{base}/memory"))
    # The plan holds open work only (done tasks left it for the archive).
    assert all(re.fullmatch(r"t\d+", task["id"]) for task in memory["plan"])
    assert all(task["status"] != "done" for task in memory["plan"])
    assert "last_report" in memory["agents"]["communicator"]
    assert memory["usage"]["ticks"] >= 1
    assert (memory["usage"]["cost"], memory["costUSD"]) == (0, 0.0)

    artifacts = _ok(http.get(f"{base}/artifacts"))["items"]
    assert artifacts
    assert artifacts[0]["name"] == "t1.md"
    assert artifacts[0]["author"] == "builder"
    assert artifacts[0]["content"].startswith("# ")

    messages = _ok(http.get(f"{base}/messages", params={"agent": "builder"}))["items"]
    assert messages
    assert messages[0]["from"] == "planner" or messages[0]["from"] == "reviewer"
    assert messages[0]["to"] == "builder"
    assert "agent" in _error(http.get(f"{base}/messages"), 400, "InvalidParameter")
    _error(http.get(f"{base}/messages", params={"agent": "ghost"}), 404, "NotFound")


def test_ticks_traces_and_feed_page_newest_first_without_overlap(
    api: tuple[httpx.Client, Stacks],
) -> None:
    http, stacks = api
    base = f"/api/v1/namespaces/{stacks.namespace}/stacks/alpha"
    for kind, minimum in (("ticks", 3), ("traces", 8), ("feed", 3)):
        first = _ok(http.get(f"{base}/{kind}", params={"limit": 2}))
        assert len(first["items"]) == 2
        assert first["nextCursor"] == first["items"][-1]["id"]
        second = _ok(http.get(f"{base}/{kind}", params={"limit": 2, "cursor": first["nextCursor"]}))
        ids = [item["id"] for item in first["items"] + second["items"]]
        assert len(ids) == len(set(ids)) == 4
        assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")), reverse=True)
        everything = _ok(http.get(f"{base}/{kind}", params={"limit": 500}))["items"]
        assert len(everything) >= minimum
    tick = _ok(http.get(f"{base}/ticks", params={"limit": 1}))["items"][0]
    assert tick["outcome"] == "Succeeded"
    assert tick["tickId"].startswith(f"{stacks.namespace}/alpha/")
    trace = _ok(http.get(f"{base}/traces", params={"limit": 4}))["items"]
    assert {entry["agent"] for entry in trace} <= {"planner", "builder", "reviewer", "communicator"}
    assert all(entry["model"] == "scripted:scripted-v1" for entry in trace)
    # The offline model is priced, at zero: its cost is known (0), not unknown (null).
    assert tick["costUSD"] == 0.0
    assert all(entry["costUSD"] == 0.0 for entry in trace)
    _error(http.get(f"{base}/traces", params={"cursor": "yesterday"}), 400, "InvalidParameter")


class SSEReader:
    """Reads a Server-Sent Events response on a thread; events are parsed dicts."""

    def __init__(self, http: httpx.Client, path: str, headers: dict[str, str] | None = None):
        self.events: list[dict[str, str]] = []
        self.opened_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(http, path, headers), daemon=True)
        self._thread.start()

    def _run(self, http: httpx.Client, path: str, headers: dict[str, str] | None) -> None:
        with http.stream("GET", path, headers=headers, timeout=None) as response:
            self.status = response.status_code
            self.opened_at = time.monotonic()
            event: dict[str, str] = {}
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if not line:
                    if "data" in event:
                        event["received_at"] = repr(time.monotonic())
                        self.events.append(event)
                    event = {}
                elif not line.startswith(":"):
                    field, _, value = line.partition(":")
                    event[field] = value.removeprefix(" ")

    def wait(self, count: int, timeout: float = 30) -> list[dict[str, str]]:
        return eventually(
            lambda: list(self.events) if len(self.events) >= count else None,
            f"{count} server-sent events",
            timeout=timeout,
        )

    def close(self) -> None:
        self._stop.set()


def test_live_traces_arrive_in_order_and_resume_from_last_event_id(
    api: tuple[httpx.Client, Stacks],
) -> None:
    http, stacks = api
    path = f"/api/v1/namespaces/{stacks.namespace}/stacks/beta/traces/stream"
    live = SSEReader(http, path)
    try:
        events = live.wait(8)  # two more ticks of four agents each
    finally:
        live.close()
    assert {e["event"] for e in events} == {"trace"}
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))
    agents = [json.loads(e["data"])["agent"] for e in events[:8]]
    assert agents.count("planner") >= 1

    # Reconnect as a browser would, from the third event: the rest comes again, in order.
    resumed = SSEReader(http, path, headers={"Last-Event-ID": ids[2]})
    try:
        again = resumed.wait(5)
    finally:
        resumed.close()
    assert [e["id"] for e in again[:5]] == ids[3:8]
    bad = http.get(path, headers={"Last-Event-ID": "not-an-id"})
    _error(bad, 400, "InvalidParameter")


def test_fleet_stream_reports_state_changes_and_resumes(
    api: tuple[httpx.Client, Stacks],
) -> None:
    http, stacks = api
    fleet = SSEReader(http, "/api/v1/stacks/stream")
    try:
        eventually(lambda: True if fleet.opened_at else None, "the stream to open")
        stacks.patch_spec("gamma", executionState="Running")

        def gamma_running() -> dict[str, str] | None:
            for event in fleet.events:
                data = json.loads(event["data"])
                if data["name"] == "gamma" and data["executionState"] == "Running":
                    return event
            return None

        event = eventually(gamma_running, "gamma's change on the fleet stream")
    finally:
        fleet.close()
    assert event["event"] == "upsert"
    earlier = int(event["id"]) - 1
    resumed = SSEReader(http, "/api/v1/stacks/stream", headers={"Last-Event-ID": str(earlier)})
    try:
        replayed = resumed.wait(1)
    finally:
        resumed.close()
    assert replayed[0]["id"] == event["id"]
    stacks.patch_spec("gamma", executionState="Paused")


def test_search_finds_what_the_team_archived(api: tuple[httpx.Client, Stacks]) -> None:
    http, stacks = api
    base = f"/api/v1/namespaces/{stacks.namespace}/stacks/alpha"
    found = _ok(http.get(f"{base}/search", params={"q": "Outline the approach", "limit": 5}))
    assert found["terms"] == ["outline", "approach"]
    assert found["archived"] > 0
    assert found["items"]
    for item in found["items"]:
        assert "outline" in item["text"].lower() or "approach" in item["text"].lower()
    scores = [item["score"] for item in found["items"]]
    assert scores == sorted(scores, reverse=True)
    artifacts = _ok(http.get(f"{base}/search", params={"q": "outline", "kind": "artifact"}))
    assert {item["kind"] for item in artifacts["items"]} == {"artifact"}
    # Which artifact ranks first depends on how many iterations ran by now and on their
    # lengths (BM25): each found is named by its version and holds the term.
    assert artifacts["items"]
    for item in artifacts["items"]:
        assert re.fullmatch(r"t\d+\.md@v\d+", item["ref"]), item["ref"]
        assert "outline" in item["text"].lower()
    assert "q" in _error(http.get(f"{base}/search"), 400, "InvalidParameter")
    _error(
        http.get(f"/api/v1/namespaces/{stacks.namespace}/stacks/nope/search?q=x"), 404, "NotFound"
    )


def test_openapi_schema_describes_every_route(api: tuple[httpx.Client, Stacks]) -> None:
    http, _ = api
    schema = _ok(http.get("/openapi.json"))
    paths = set(schema["paths"])
    for suffix in (
        "",
        "/agents",
        "/ticks",
        "/traces",
        "/feed",
        "/messages",
        "/memory",
        "/artifacts",
        "/traces/stream",
        "/feed/stream",
        "/search",
    ):
        assert f"/api/v1/namespaces/{{namespace}}/stacks/{{name}}{suffix}" in paths
    assert {"/api/v1/stacks", "/api/v1/stacks/stream"} <= paths
    ticks = schema["paths"]["/api/v1/namespaces/{namespace}/stacks/{name}/ticks"]["get"]
    assert {"200", "400", "401", "403", "404"} <= set(ticks["responses"])
    search = schema["paths"]["/api/v1/namespaces/{namespace}/stacks/{name}/search"]["get"]
    assert {"200", "400", "401", "403", "404"} <= set(search["responses"])
    assert {p["name"] for p in search["parameters"]} >= {"q", "limit", "kind"}
    assert "BM25" in search["description"]
