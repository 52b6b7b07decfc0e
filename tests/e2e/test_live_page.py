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

import pytest
import redis
from kubernetes import client
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from agentstack_devkit.browser import HeadlessChromium
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.mcpserver import ToolServer
from tests.e2e.stacks import Stacks

T = TypeVar("T")

LIVE_TIMEOUT = 20.0
"""How long a live change may take to show: stacks tick every second."""
PAGE_TIMEOUT = 30.0
TEAM = {"planner", "builder", "reviewer", "communicator"}

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
  notice: document.getElementById("notice").textContent,
  agents: [...document.querySelectorAll("#agent > option")].map(o => o.value),
  marker: window.__agentstackMarker === undefined ? null : window.__agentstackMarker,
};
"""


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
        notice=raw["notice"],
        agents=raw["agents"],
    )


def until(
    driver: WebDriver,
    check: Callable[[PageView], T | None],
    what: str,
    timeout: float = PAGE_TIMEOUT,
) -> T:
    """Poll the page until ``check`` returns something other than ``None``; return it."""

    def probe(_driver: WebDriver) -> T | bool:
        found = check(read(driver))
        return False if found is None else found

    result = WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        probe, message=f"timed out after {timeout:g}s waiting for {what}"
    )
    return cast(T, result)


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
