"""``kubectl agentstack usage``: the plugin's command against the real usage route served
over HTTP (uvicorn), its services over Redis (standalone and a cluster) holding buckets
the real commit script wrote; the bearer token comes from the kubeconfig, as for a
person at a terminal."""

from __future__ import annotations

import asyncio
import csv
import io
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import uvicorn

from agentstack_api.auth import User
from agentstack_cli.kubectl_plugin import USAGE_COLUMNS, main
from agentstack_core.keys import StackRef
from agentstack_core.protocol import RedisClient
from tests.helpers import eventually_async
from tests.integration.support import commit_bill
from tests.integration.test_api_usage import MARCH_1, MARCH_2, usage_app
from tests.unit import test_api_fakes as fakes

pytestmark = pytest.mark.asyncio
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: alice, user: {token: alice-token}}]
contexts: [{name: test, context: {cluster: test, user: alice, namespace: team}}]
current-context: test
"""


@pytest_asyncio.fixture
async def api(aredis: RedisClient) -> AsyncIterator[str]:
    """The URL of the usage route, served over real HTTP; alice may read team's budgets."""
    auth = fakes.FakeAuthorizer({"team"}, tokens={"alice-token": User("alice")})
    auth.steering.add(("team", "get agentbudgets"))
    alpha, beta = StackRef("team", "alpha"), StackRef("team", "beta")
    await commit_bill(aredis, alpha, MARCH_1, model="openai:gpt-4o-mini", cost=1_500_000)
    await commit_bill(aredis, beta, MARCH_2, model="openai:house", cost=0, unpriced=2)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(usage_app(aredis, auth), log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    await eventually_async(
        lambda: asyncio.sleep(0, result=True if server.started else None), "the API serving", 30
    )
    try:
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        listening.close()


async def _run(tmp_path: Path, *argv: str) -> int:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    return await asyncio.to_thread(main, ["--kubeconfig", str(kubeconfig), *argv])


async def test_usage_as_csv(api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = await _run(
        tmp_path, "--api", api, "usage", "--from", "2026-03-01", "--to", "2026-03-02", "--csv"
    )

    assert code == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows == [
        list(USAGE_COLUMNS),
        ["2026-03-01", "alpha", "openai:gpt-4o-mini", "0.001500", "1000", "2", "0"],
        ["2026-03-02", "beta", "openai:house", "0.000000", "1000", "2", "2"],
    ]
    assert ",".join(rows[0]) == "day,stack,model,cost_usd,tokens,calls,unpriced_calls"


async def test_usage_as_a_table_with_its_totals(
    api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await _run(
        tmp_path, "--api", api, "-n", "team", "usage", "--from", "2026-03-02", "--to", "2026-03-02"
    )

    assert code == 0
    out = capsys.readouterr()
    lines = [line.split() for line in out.out.splitlines()]
    assert lines == [
        ["DAY", "STACK", "MODEL", "COST_USD", "TOKENS", "CALLS", "UNPRICED_CALLS"],
        ["2026-03-02", "beta", "openai:house", "0.000000", "1000", "2", "2"],
        ["TOTAL", "0.000000", "1000", "2", "2"],
    ]
    assert "team, 2026-03-02 to 2026-03-02 (UTC)" in out.err


async def test_a_bad_range_says_what_the_api_said(
    api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await _run(tmp_path, "--api", api, "usage", "--from", "2026-02-30")

    assert code == 1
    err = capsys.readouterr().err
    assert "kubectl agentstack usage: the API answered 400: InvalidParameter" in err
    assert "query.from" in err
