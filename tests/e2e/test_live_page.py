"""The live page of ``agentstack api``, in a real headless Chromium.

The page is JavaScript that reads the read API and its Server-Sent Events through
``fetch``; whether it shows the fleet and a stack's trace and feed, and keeps them
current without a reload, only a browser can tell. The module runs the real operator,
runner and API processes against the session's control plane, two stacks ticking every
second, and one Debian Chromium (offline, through Debian's chromedriver; see
:mod:`agentstack_devkit.browser`) for all its tests.

The page is read with ``execute_script``, in one call per poll: it rebuilds a fleet
row's cells on every change, so element handles would go stale between two reads.
"Without a reload" is checked with a marker set on ``window``, which a reload drops.

The charts are inline SVG: their marks are read from the DOM (each bar names its tick),
compared with what the API pages, and their screenshots are decoded
(:mod:`agentstack_devkit.pngread`) to count the pixels drawn in a series' colour, so
that "the chart shows data" is seen in the picture, not only in the markup.

The back/forward cache is off: the page does not close its streams when it is left,
so Chrome keeps a left page alive in that cache with its three streams open, and two
pages exhaust Chrome's six HTTP/1.1 connections per host: the next navigation to the
API then waits about a minute, until Chrome evicts the cached page.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import pytest
import redis
from kubernetes import client
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from agentstack_devkit.browser import HeadlessChromium
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.mcpserver import ToolServer
from agentstack_devkit.pngread import Image, decode, hex_colour
from tests.e2e.stacks import Stacks

T = TypeVar("T")

LIVE_TIMEOUT = 20.0
"""How long a live change may take to show: stacks tick every second."""
PAGE_TIMEOUT = 30.0
TEAM = {"planner", "builder", "reviewer", "communicator"}
CHART_TICKS = 60
"""Ticks the page charts: the newest page of the ticks endpoint at this size."""
STACK_CHARTS = ("chart-ticks", "chart-tokens", "chart-cost")
STATES = ("Running", "Paused", "Stopped", "Invalid")
COLOURS = {
    "Succeeded": "#1a7f37",
    "Failed": "#cf222e",
    "Dropped": "#9a6700",
    "Running": "#1a7f37",
    "Paused": "#9a6700",
    "Stopped": "#6e7781",
    "Invalid": "#cf222e",
    "tokens": "#0969da",
    "cost": "#8250df",
    "unknown": "#d8dee4",
    "axis": "#8c959f",
}
"""The page's chart colours (its CSS and script say the same)."""

_READ_PAGE = """
const texts = list => [...document.querySelectorAll(list + " > li")].map(li => li.textContent);
return {
  title: document.getElementById("title").textContent,
  status: document.getElementById("status").textContent,
  rows: [...document.querySelectorAll("#fleet > tr")].map(row => ({
    key: row.dataset.key,
    cells: [...row.cells].map(cell => cell.textContent),
    selected: row.classList.contains("selected"),
  })),
  trace: texts("#trace"),
  feed: texts("#feed"),
  inputs: texts("#inputs"),
  approvals: texts("#approvals"),
  plan: texts("#plan"),
  longterm: texts("#longterm"),
  notice: document.getElementById("notice").textContent,
  agents: [...document.querySelectorAll("#agent > option")].map(o => o.value),
  marker: window.__agentstackMarker === undefined ? null : window.__agentstackMarker,
};
"""


_READ_CHARTS = """
const charts = {};
for (const id of arguments[0]) {
  const svg = document.getElementById(id);
  if (!svg) continue;
  const title = svg.querySelector(":scope > title");
  charts[id] = {
    points: Number(svg.dataset.points),
    unknown: Number(svg.dataset.unknown || 0),
    stack: svg.dataset.stack || null,
    role: svg.getAttribute("role"),
    label: svg.getAttribute("aria-label"),
    title: title ? title.textContent : null,
    counts: svg.dataset.counts ? JSON.parse(svg.dataset.counts) : null,
    bars: [...svg.querySelectorAll("rect.bar")].map(
      r => [r.dataset.tick, Number(r.dataset.value), r.getAttribute("fill")]),
    gaps: [...svg.querySelectorAll("rect.unknown")].map(r => r.dataset.tick),
    shown: !svg.closest("[hidden]") && svg.getBoundingClientRect().height > 0,
  };
}
return charts;
"""


@dataclass(frozen=True)
class Chart:
    """One chart as drawn: ``bars`` are ``(tick id, value, fill)``, oldest first."""

    points: int
    unknown: int
    stack: str | None
    role: str
    label: str
    title: str | None
    counts: dict[str, int] | None
    bars: list[tuple[str, float, str]]
    gaps: list[str]
    shown: bool


def read_charts(driver: WebDriver, *ids: str) -> dict[str, Chart]:
    raw: dict[str, dict[str, Any]] = driver.execute_script(_READ_CHARTS, list(ids))
    return {
        chart_id: Chart(**{**chart, "bars": [tuple(bar) for bar in chart["bars"]]})
        for chart_id, chart in raw.items()
    }


def screenshot(driver: WebDriver, chart_id: str) -> Image:
    """The chart as Chromium painted it, decoded."""
    return decode(driver.find_element(By.ID, chart_id).screenshot_as_png)


def pixels(image: Image, colour: str) -> int:
    # a little tolerance: the numbers are the page's, the rendering is Chromium's
    return image.count(hex_colour(colour), tolerance=3)


def api_ticks(live: Live, name: str) -> list[dict[str, Any]]:
    """The page of ticks the page charts, oldest first (as drawn), from the API."""
    response = httpx.get(
        f"{live.url}/api/v1/namespaces/{live.stacks.namespace}/stacks/{name}/ticks",
        params={"limit": CHART_TICKS},
    )
    response.raise_for_status()
    return list(reversed(response.json()["items"]))


def api_counts(live: Live) -> dict[str, int]:
    """Stacks by state as the API lists them (Invalid: the phase, else the requested state)."""
    response = httpx.get(f"{live.url}/api/v1/stacks", params={"limit": 500})
    response.raise_for_status()
    counts = dict.fromkeys(STATES, 0)
    for stack in response.json()["items"]:
        state = "Invalid" if stack["phase"] == "Invalid" else stack["executionState"]
        counts[state] += 1
    return counts


@dataclass(frozen=True)
class Row:
    state: str
    ready: str
    ticks: int
    selected: bool


@dataclass(frozen=True)
class PageView:
    """What the page shows at one instant; ``trace`` and ``feed`` are newest first."""

    title: str
    status: str
    rows: dict[str, Row]
    trace: list[str]
    feed: list[str]
    marker: str | None
    inputs: list[str] = field(default_factory=list)
    approvals: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    longterm: list[str] = field(default_factory=list)
    notice: str = ""
    agents: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Live:
    url: str
    stacks: Stacks

    def key(self, name: str) -> str:
        return f"{self.stacks.namespace}/{name}"


@dataclass
class Console:
    """The browser's console log, kept across tests (reading it drains Chrome's buffer)."""

    driver: WebDriver
    entries: list[dict[str, Any]] = field(default_factory=list)

    def read(self) -> list[dict[str, Any]]:
        self.entries.extend(self.driver.get_log("browser"))
        return list(self.entries)

    def severe(self, network: bool, since: int = 0) -> list[str]:
        """SEVERE entries (from index ``since`` on): network failures, or all others."""
        return [
            f"{entry['source']}: {entry['message']}"
            for entry in self.read()[since:]
            if entry["level"] == "SEVERE" and (entry["source"] == "network") == network
        ]


def read(driver: WebDriver) -> PageView:
    raw: dict[str, Any] = driver.execute_script(_READ_PAGE)
    rows = {
        row["key"]: Row(
            state=row["cells"][1],
            ready=row["cells"][2],
            ticks=int(row["cells"][3]),
            selected=row["selected"],
        )
        for row in raw["rows"]
    }
    return PageView(
        raw["title"],
        raw["status"],
        rows,
        raw["trace"],
        raw["feed"],
        raw["marker"],
        inputs=raw["inputs"],
        approvals=raw["approvals"],
        plan=raw["plan"],
        longterm=raw["longterm"],
        notice=raw["notice"],
        agents=raw["agents"],
    )


def wait_for(
    driver: WebDriver, check: Callable[[], T | None], what: str, timeout: float = PAGE_TIMEOUT
) -> T:
    """Poll ``check`` until it returns something other than ``None``; return it."""

    def probe(_driver: WebDriver) -> T | bool:
        found = check()
        return False if found is None else found

    result = WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        probe, message=f"timed out after {timeout:g}s waiting for {what}"
    )
    return cast(T, result)


def until(
    driver: WebDriver,
    check: Callable[[PageView], T | None],
    what: str,
    timeout: float = PAGE_TIMEOUT,
) -> T:
    """Poll what the page shows until ``check`` returns something other than ``None``."""
    return wait_for(driver, lambda: check(read(driver)), what, timeout)


def mark(driver: WebDriver) -> str:
    """Set a marker on ``window`` that only a reload would remove; return it."""
    marker = secrets.token_hex(8)
    driver.execute_script("window.__agentstackMarker = arguments[0];", marker)
    return marker


def rows_of(*keys: str) -> Callable[[PageView], PageView | None]:
    return lambda view: view if set(keys) <= set(view.rows) else None


@pytest.fixture(scope="module")
def page_namespace(k8s_api: client.ApiClient) -> Iterator[str]:
    name = f"page-{secrets.token_hex(4)}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def live(
    fleet: Fleet, k8s_api: client.ApiClient, page_namespace: str, redis_reader: redis.Redis
) -> Live:
    """Operator, runner and API; two stacks that tick every second and have ticked."""
    fleet.operator()
    fleet.runner()
    _process, port = fleet.api()
    stacks = Stacks(k8s_api, page_namespace, redis_reader)
    stacks.create("alpha", tickIntervalSeconds=1)
    stacks.create("beta", tickIntervalSeconds=1)
    stacks.wait_ticks("alpha", 1)
    stacks.wait_ticks("beta", 1)
    return Live(f"http://127.0.0.1:{port}", stacks)


@pytest.fixture(scope="module")
def idle(live: Live) -> str:
    """A stack created Paused: it never ticks (the tests check the API says so)."""
    live.stacks.create("zeta", tickIntervalSeconds=1, executionState="Paused")
    return "zeta"


@pytest.fixture(scope="module")
def browser(live: Live) -> Iterator[WebDriver]:
    """One headless Chromium for the module, quit with all its processes afterwards.

    It depends on ``live`` so that it is quit before the API stops: the API would
    otherwise wait on the page's open streams to shut down.
    """
    with HeadlessChromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def console(browser: WebDriver) -> Console:
    return Console(browser)


def test_the_page_lists_the_fleet_with_each_stacks_state(browser: WebDriver, live: Live) -> None:
    alpha, beta = live.key("alpha"), live.key("beta")
    browser.get(f"{live.url}/")
    view = until(browser, rows_of(alpha, beta), f"rows for {alpha} and {beta}")
    for key in (alpha, beta):
        assert view.rows[key].state == "Running"
        assert view.rows[key].ready in ("True", "False", "Unknown")
        assert not view.rows[key].selected
    ours = [key for key in view.rows if key.startswith(f"{live.stacks.namespace}/")]
    assert ours == [alpha, beta]  # in namespace/name order
    assert view.status.endswith("stacks, live")
    assert view.title == "select a stack"


def test_a_stack_shows_its_trace_and_feed_and_new_lines_arrive_without_reload(
    browser: WebDriver, live: Live
) -> None:
    alpha = live.key("alpha")
    browser.get(f"{live.url}/?stack={alpha}")

    def filled(view: PageView) -> PageView | None:
        selected = alpha in view.rows and view.rows[alpha].selected
        return view if view.title == alpha and selected and view.trace and view.feed else None

    first = until(browser, filled, f"{alpha} selected, with its trace and feed")
    assert any(word in TEAM for line in first.trace for word in line.split())
    # Each step says what it cost: the offline model is priced at zero, a known $0.
    assert all(" $0.000000 " in line for line in first.trace), first.trace
    assert len(first.trace) < 200  # the page keeps 200 lines: growth stays visible
    marker = mark(browser)

    def grown(view: PageView) -> PageView | None:
        more = len(view.trace) > len(first.trace) and len(view.feed) > len(first.feed)
        return view if more else None

    later = until(browser, grown, "newer trace and feed lines", timeout=LIVE_TIMEOUT)
    assert later.marker == marker, "the page was reloaded"
    assert later.trace[-len(first.trace) :] == first.trace  # new lines go on top
    assert later.title == alpha


def test_clicking_a_row_switches_to_that_stack_without_reload(
    browser: WebDriver, live: Live
) -> None:
    beta = live.key("beta")
    browser.get(f"{live.url}/")
    until(browser, rows_of(beta), f"{beta}'s row")
    marker = mark(browser)
    browser.execute_script(
        "document.querySelector(`#fleet > tr[data-key='${arguments[0]}']`).click();", beta
    )

    def shown(view: PageView) -> PageView | None:
        selected = beta in view.rows and view.rows[beta].selected
        return view if view.title == beta and selected and view.trace and view.feed else None

    view = until(browser, shown, f"{beta} selected, with its trace and feed")
    assert view.marker == marker, "the page was reloaded"
    assert [key for key, row in view.rows.items() if row.selected] == [beta]


def test_fleet_changes_show_without_reload(browser: WebDriver, live: Live) -> None:
    alpha, beta = live.key("alpha"), live.key("beta")
    browser.get(f"{live.url}/")
    before = until(browser, rows_of(alpha, beta), "both rows")
    marker = mark(browser)

    live.stacks.patch_spec("beta", executionState="Paused")
    paused = until(
        browser,
        lambda view: view if view.rows[beta].state == "Paused" else None,
        f"{beta} to show Paused",
        timeout=LIVE_TIMEOUT,
    )
    assert paused.rows[alpha].state == "Running"

    # Status changes arrive the same way: alpha's tick count moves on.
    ticked = until(
        browser,
        lambda view: view if view.rows[alpha].ticks > before.rows[alpha].ticks else None,
        f"{alpha}'s tick count to grow",
        timeout=LIVE_TIMEOUT,
    )
    assert ticked.marker == marker, "the page was reloaded"
    assert ticked.rows[beta].state == "Paused"


def test_a_person_pauses_resumes_and_sends_an_input_from_the_page(
    browser: WebDriver, live: Live
) -> None:
    live.stacks.create("gamma", tickIntervalSeconds=3600)
    live.stacks.wait_ticks("gamma", 1)
    gamma = live.key("gamma")
    browser.get(f"{live.url}/?stack={gamma}")
    ready = until(
        browser,
        lambda view: view if view.title == gamma and view.agents and view.plan else None,
        f"{gamma}'s controls, agents and plan",
    )
    assert ready.agents == ["planner", "builder", "reviewer", "communicator"]

    def click(selector: str) -> None:
        browser.execute_script("document.querySelector(arguments[0]).click();", selector)

    click("#pause")
    until(browser, lambda v: v if v.rows[gamma].state == "Paused" else None, "gamma Paused")
    assert live.stacks.get("gamma")["spec"]["executionState"] == "Paused"
    click("#resume")
    until(browser, lambda v: v if v.rows[gamma].state == "Running" else None, "gamma Running")
    assert live.stacks.get("gamma")["spec"]["executionState"] == "Running"

    browser.execute_script(
        "document.getElementById('agent').value = 'reviewer';"
        "document.getElementById('message').value = arguments[0];",
        "Check the outline against the goal.",
    )
    click("#send")
    sent = until(browser, lambda v: v if v.notice.startswith("input #") else None, "a notice")
    assert sent.notice.startswith("input #1 sent to reviewer")

    def answered(view: PageView) -> PageView | None:
        read = any("read input #1" in line for line in view.trace)
        logged = any(
            line.startswith("#1 anonymous → reviewer") and "— Read in " in line
            for line in view.inputs
        )
        replied = any(line.startswith("reviewer: Input #1 from anonymous") for line in view.feed)
        return view if read and logged and replied else None

    until(browser, answered, "the trace, the inputs and the feed to show the input read")


_READ_SEARCH = """
return {
  shown: !document.getElementById("search").hidden,
  notice: document.getElementById("search-notice").textContent,
  hits: [...document.querySelectorAll("#search-results > li")].map(
    li => ({id: li.dataset.id, kind: li.dataset.kind, text: li.textContent})),
};
"""


def test_a_person_searches_the_stacks_archive_from_the_page(browser: WebDriver, live: Live) -> None:
    alpha = live.key("alpha")
    browser.get(f"{live.url}/?stack={alpha}")
    until(browser, lambda view: view if view.title == alpha and view.agents else None, "alpha")
    mark(browser)

    def search(query: str, kind: str = "") -> dict[str, Any]:
        browser.execute_script(
            "document.getElementById('query').value = arguments[0];"
            "document.getElementById('search-kind').value = arguments[1];"
            "document.getElementById('search-button').click();",
            query,
            kind,
        )
        return wait_for(
            browser,
            lambda: (
                found
                if (found := browser.execute_script(_READ_SEARCH))["notice"].endswith("item(s)")
                or found["notice"].startswith("nothing")
                else None
            ),
            f"the hits for {query!r}",
        )

    found = search("Outline the approach")
    assert found["shown"]
    assert found["notice"].startswith(f'{len(found["hits"])} hit(s) for "outline approach" among')
    assert found["hits"]
    api = httpx.get(
        f"{live.url}/api/v1/namespaces/{live.stacks.namespace}/stacks/alpha/search",
        params={"q": "Outline the approach", "limit": 20},
    ).json()
    shown = [hit["id"] for hit in found["hits"]]
    assert shown[:5] == [item["id"] for item in api["items"]][:5]  # best first, as the API
    assert all("outline" in hit["text"].lower() for hit in found["hits"][:5])

    artifacts = search("outline", "artifact")
    assert {hit["kind"] for hit in artifacts["hits"]} == {"artifact"}
    nothing = search("the of")
    assert (nothing["hits"], nothing["notice"]) == (
        [],
        "nothing to search for: only short or common words",
    )

    # the builder's recalls (it recalls a task before revising it) show in the trace
    until(
        browser,
        lambda view: view if any('| recall "' in line for line in view.trace) else None,
        "a trace line with a recall",
        timeout=LIVE_TIMEOUT,
    )
    assert read(browser).marker is not None  # no reload


def test_a_person_approves_a_waiting_tool_call_from_the_page(
    browser: WebDriver, live: Live, tmp_path: Path
) -> None:
    with ToolServer(tmp_path) as server:
        tools = {
            "servers": [
                {
                    "name": "kb",
                    "url": server.url,
                    "allowedTools": ["lookup"],
                    "requireApproval": True,
                }
            ]
        }
        live.stacks.create("delta", tickIntervalSeconds=3600, tools=tools)
        delta = live.key("delta")
        browser.get(f"{live.url}/?stack={delta}")

        def waiting(view: PageView) -> PageView | None:
            pending = [line for line in view.approvals if line.endswith("Approve Deny")]
            return view if view.title == delta and pending else None

        until(browser, waiting, "a tool call waiting, with its buttons")
        assert server.calls("lookup") == []
        browser.execute_script("document.querySelector('#approvals button.approve').click();")

        def executed(view: PageView) -> PageView | None:
            done = [line for line in view.approvals if "— Executed by anonymous" in line]
            return view if done else None

        view = until(browser, executed, "the approved call to have run", timeout=LIVE_TIMEOUT)
        assert view.notice.startswith("tool call ")
        assert "Approved by anonymous" in view.notice
        assert len(server.calls("lookup")) == 1


def test_the_selected_stacks_charts_draw_the_ticks_the_api_pages_and_follow_new_ones(
    browser: WebDriver, live: Live
) -> None:
    alpha = live.key("alpha")
    browser.get(f"{live.url}/?stack={alpha}")

    def agreeing() -> tuple[dict[str, Chart], list[dict[str, Any]]] | None:
        charts = read_charts(browser, *STACK_CHARTS)
        ticks = api_ticks(live, "alpha")
        drawn = [bar[0] for bar in charts["chart-ticks"].bars]
        same = drawn == [tick["tickId"] for tick in ticks]
        return (charts, ticks) if charts["chart-ticks"].stack == alpha and same else None

    charts, ticks = wait_for(browser, agreeing, f"{alpha}'s chart to draw the API's ticks")
    assert len(ticks) >= 1
    durations, tokens, cost = (charts[chart_id] for chart_id in STACK_CHARTS)
    assert all(chart.shown and chart.role == "img" for chart in charts.values())
    assert all(chart.title == chart.label for chart in charts.values())

    assert durations.points == len(ticks)
    assert durations.bars == [
        (tick["tickId"], tick["durationMs"] or 0, COLOURS[tick["outcome"]]) for tick in ticks
    ]
    succeeded = sum(tick["outcome"] == "Succeeded" for tick in ticks)
    assert f"the last {len(ticks)}, " in durations.label
    assert f"{succeeded} Succeeded" in durations.label

    assert tokens.points == len(ticks)
    assert [(bar[0], bar[1]) for bar in tokens.bars] == [
        (tick["tickId"], tick["tokens"]) for tick in ticks
    ]
    total = sum(tick["tokens"] for tick in ticks)
    assert f"{total} in the last {len(ticks)} ticks" in tokens.label

    # costUSD: a number, null (unknown: a gap, never a zero bar), or not reported at all
    if any("costUSD" in tick for tick in ticks):
        priced = [tick for tick in ticks if tick.get("costUSD") is not None]
        unknown = [tick["tickId"] for tick in ticks if tick.get("costUSD") is None]
        assert cost.points == len(priced)
        assert [bar[0] for bar in cost.bars] == [tick["tickId"] for tick in priced]
        assert [bar[1] for bar in cost.bars] == pytest.approx([tick["costUSD"] for tick in priced])
        assert cost.gaps == unknown
        assert cost.unknown == len(unknown)
        assert f"over {len(priced)} priced ticks" in cost.label
        # a zero cost paints no bar; an unknown one a pale band, never a zero
        picture = screenshot(browser, "chart-cost")
        spent = any(tick["costUSD"] > 0 for tick in priced)
        assert (pixels(picture, COLOURS["cost"]) > 0) == spent
        assert (pixels(picture, COLOURS["unknown"]) > 0) == bool(unknown)
    else:
        assert (cost.points, cost.bars, cost.gaps) == (0, [], [])
        assert "not reported" in cost.label

    # The picture: each tick's bar is at least 3 pixels high and 7 wide (60 ticks at most
    # on 500 pixels), so every succeeded tick paints at least 21 pixels of its colour.
    # The chart may have moved on a tick since, dropping one tick at most.
    picture = screenshot(browser, "chart-ticks")
    assert succeeded >= 1  # the scripted provider's ticks succeed
    assert pixels(picture, COLOURS["Succeeded"]) >= 20 * max(succeeded - 1, 1)
    if any(tick["outcome"] == "Failed" for tick in ticks):
        assert pixels(picture, COLOURS["Failed"]) > 0
    assert pixels(picture, COLOURS["tokens"]) == 0
    if total:
        assert pixels(screenshot(browser, "chart-tokens"), COLOURS["tokens"]) >= 50

    # New ticks are drawn as they come, without a reload.
    marker = mark(browser)
    seen = {tick["tickId"] for tick in ticks}

    def newer() -> Chart | None:
        chart = read_charts(browser, "chart-ticks")["chart-ticks"]
        return chart if chart.bars and chart.bars[-1][0] not in seen else None

    grown = wait_for(browser, newer, f"a newer tick of {alpha} in its chart")
    assert grown.stack == alpha
    assert read(browser).marker == marker, "the page was reloaded"


def test_a_stack_that_never_ticked_has_empty_charts_with_nothing_painted(
    browser: WebDriver, live: Live, idle: str
) -> None:
    key = live.key(idle)
    browser.get(f"{live.url}/?stack={key}")

    def drawn() -> dict[str, Chart] | None:
        charts = read_charts(browser, *STACK_CHARTS)
        return charts if all(chart.stack == key for chart in charts.values()) else None

    charts = wait_for(browser, drawn, f"{key}'s charts to be drawn from its ticks")
    assert api_ticks(live, idle) == []
    for chart_id, chart in charts.items():
        assert (chart.points, chart.bars, chart.gaps) == (0, [], []), chart_id
        assert chart.shown, chart_id
        assert chart.label.endswith("no ticks yet."), chart_id
        picture = screenshot(browser, chart_id)
        # the frame is painted (so the zero below is not a blank capture), no series is
        assert pixels(picture, COLOURS["axis"]) > 100, chart_id
        for series in ("Succeeded", "Failed", "Dropped", "tokens", "cost", "unknown"):
            assert pixels(picture, COLOURS[series]) == 0, (chart_id, series)
    assert api_ticks(live, idle) == []


def test_the_fleet_chart_counts_the_stacks_the_api_lists_by_state(
    browser: WebDriver, live: Live, idle: str
) -> None:
    browser.get(f"{live.url}/")

    def agreeing() -> tuple[Chart, dict[str, int]] | None:
        chart = read_charts(browser, "chart-fleet").get("chart-fleet")
        counts = api_counts(live)
        return (chart, counts) if chart is not None and chart.counts == counts else None

    chart, counts = wait_for(browser, agreeing, "the fleet chart to count what the API lists")
    assert counts["Running"] >= 1  # alpha
    assert counts["Paused"] >= 1  # the idle stack
    marker = mark(browser)

    # A stack stopped from the start: a third state, shown live.
    live.stacks.create("eta", tickIntervalSeconds=3600, executionState="Stopped")

    def stopped() -> tuple[Chart, dict[str, int]] | None:
        found = agreeing()
        return found if found and found[1]["Stopped"] > counts["Stopped"] else None

    chart, counts = wait_for(browser, stopped, "the fleet chart to count the stopped stack")
    assert read(browser).marker == marker, "the page was reloaded"
    assert chart.shown
    assert chart.role == "img"
    assert chart.title == chart.label
    assert chart.label == "Stacks by state: " + ", ".join(
        f"{state} {counts[state]}" for state in STATES
    )
    assert chart.points == sum(1 for state in STATES if counts[state])

    # The picture: a bar of its colour for each state that has stacks, none for the others
    # (Running and Invalid share a colour: Invalid must be absent for Running to be read).
    picture = screenshot(browser, "chart-fleet")
    for state in ("Paused", "Stopped"):
        assert pixels(picture, COLOURS[state]) >= 30, state
    if counts["Invalid"] == 0:
        assert pixels(picture, COLOURS["Running"]) >= 30
    for state in STATES:
        if counts[state] == 0:
            assert pixels(picture, COLOURS[state]) == 0, state


def test_a_completed_stack_shows_so_with_its_long_term_memory_and_a_stalled_one_is_marked(
    browser: WebDriver, live: Live
) -> None:
    live.stacks.create(
        "finite",
        tickIntervalSeconds=1,
        completion={"criterion": "every planned task is done"},
        memory={"consolidateEveryTicks": 2},
    )
    watcher = {"name": "watcher", "role": "watcher", "systemPrompt": "Watch; change nothing."}
    live.stacks.create("idle", tickIntervalSeconds=1, stalledAfterIdleTicks=2, agents=[watcher])
    finite, idle = live.key("finite"), live.key("idle")
    browser.get(f"{live.url}/?stack={finite}")

    def completed(view: PageView) -> PageView | None:
        done = finite in view.rows and view.rows[finite].state == "Completed"
        return view if done and view.longterm else None

    view = until(browser, completed, f"{finite} completed, its long-term memory shown", 120)
    assert any(line.startswith("delivered: t1:") for line in view.longterm), view.longterm
    marked = until(
        browser,
        lambda v: v if idle in v.rows and v.rows[idle].state.endswith("stalled") else None,
        f"{idle} marked stalled",
        timeout=60,
    )
    assert marked.rows[idle].state == "Running · stalled"


def test_the_console_has_no_javascript_errors(
    browser: WebDriver, live: Live, console: Console
) -> None:
    """Loads, live lines and a switch between stacks (which aborts two streams) log no
    error; with the earlier tests, everything the module's page did is covered."""
    alpha, beta = live.key("alpha"), live.key("beta")
    browser.get(f"{live.url}/?stack={alpha}")
    first = until(browser, lambda view: view if view.trace else None, f"{alpha}'s trace")
    until(
        browser,
        lambda view: view if len(view.trace) > len(first.trace) else None,
        "a live trace line",
        timeout=LIVE_TIMEOUT,
    )
    browser.execute_script(
        "document.querySelector(`#fleet > tr[data-key='${arguments[0]}']`).click();", beta
    )
    until(browser, lambda view: view if view.title == beta and view.trace else None, beta)
    assert console.severe(network=False) == []


def test_the_page_loads_no_missing_resource(
    browser: WebDriver, live: Live, console: Console
) -> None:
    browser.get(f"{live.url}/")
    until(browser, rows_of(live.key("alpha")), "the fleet")
    assert console.severe(network=True) == []


def test_an_unknown_stack_raises_no_uncaught_error(
    browser: WebDriver, live: Live, console: Console
) -> None:
    since = len(console.read())
    base = f"/api/v1/namespaces/{live.stacks.namespace}/stacks/nope"
    # feed, traces and agents: three reads, each answered 404
    browser.get(f"{live.url}/?stack={live.stacks.namespace}/nope")

    def answered(_view: PageView) -> bool | None:
        ends = browser.execute_script(
            "return performance.getEntriesByType('resource')"
            ".filter(e => e.name.includes(arguments[0])).map(e => e.responseEnd);",
            base,
        )
        return True if len(ends) == 3 and all(end > 0 for end in ends) else None

    until(browser, answered, "the page's requests for the unknown stack to be answered")
    read(browser)  # one more round trip: what the answers made the page do is logged
    assert console.severe(network=False, since=since) == []


def test_a_browser_leaves_no_process_behind() -> None:
    chromium = HeadlessChromium()
    driver = chromium.start()
    try:
        driver.get("about:blank")
        started = chromium.processes()
    finally:
        chromium.close()
    commands = [process.command for process in started]
    assert any("chromedriver" in command for command in commands)
    assert any("--type=renderer" in command for command in commands)
    assert [process for process in started if process.alive()] == []
    assert chromium.processes() == []
    assert not chromium.home.exists()
