"""`agentstack runner` processes against real Redis: consume, crash, drain, never overlap."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from agentstack_core import protocol
from agentstack_core.keys import FleetKeys, StackKeys, StackRef
from agentstack_core.protocol import Outcome, RedisClient, TickResult
from agentstack_core.redis.tick import TickStore
from agentstack_core.spec import DEFAULT_TEAM
from agentstack_devkit.fakellm import FakeLLMServer, Hang
from agentstack_devkit.processes import ManagedProcess, free_port
from agentstack_devkit.redisserver import RedisServer
from tests.helpers import eventually, eventually_async
from tests.integration.conftest import RedisBackend
from tests.integration.support import STACK, openai_spec, publish, request, wait_for_call

pytestmark = pytest.mark.asyncio
CLI = [sys.executable, "-m", "agentstack_cli", "runner"]


class RunnerProcesses:
    """Starts runner processes for a test and stops whatever is left at the end."""

    def __init__(self, backend: RedisBackend, logs: Path) -> None:
        self.backend = backend
        self.logs = logs
        self.started: list[ManagedProcess] = []

    def start(self, name: str, **env: str) -> tuple[ManagedProcess, int]:
        port = free_port()
        process = ManagedProcess(
            name,
            [*CLI, "--metrics-port", str(port)],
            log_path=self.logs / f"{name}.log",
            env={
                **os.environ,
                **self.backend.env(),
                "AGENTSTACK_RUNNER_ID": name,
                "AGENTSTACK_RUNNER_CLAIM_INTERVAL": "0.2",
                **env,
            },
        )
        process.start()
        self.started.append(process)
        process.wait_ready(lambda: _get(port, "/readyz"), timeout=30)
        return process, port

    def stop_all(self) -> None:
        for process in self.started:
            process.stop(timeout=5)


def _get(port: int, path: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


@pytest.fixture
def runners(redis_backend: RedisBackend, tmp_path: Path) -> Iterator[RunnerProcesses]:
    processes = RunnerProcesses(redis_backend, tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()


async def results(client: RedisClient) -> list[TickResult]:
    """The results published, once per tick id (a duplicate delivery republishes the
    recorded outcome of its tick, which must be the very same result)."""
    first: dict[str, TickResult] = {}
    for _id, fields in await client.xrange(FleetKeys.results):
        result = TickResult.from_fields(fields)
        assert first.setdefault(result.tick_id, result) == result
    return list(first.values())


async def wait_results(client: RedisClient, count: int, timeout: float = 60) -> list[TickResult]:
    async def enough() -> list[TickResult] | None:
        found = await results(client)
        return found if len(found) >= count else None

    return await eventually_async(enough, f"{count} tick result(s)", timeout=timeout)


async def test_runner_executes_dispatched_ticks_and_exits_cleanly_on_sigterm(
    aredis: RedisClient, runners: RunnerProcesses
) -> None:
    stacks = [StackRef("team", f"s{n}") for n in range(3)]
    for stack in stacks:
        await publish(aredis, {"goal": f"goal of {stack.name}"}, stack=stack)
    await protocol.ensure_groups(aredis)
    runner, port = runners.start("runner-a")
    await protocol.dispatch(aredis, [request(1, stack=stack) for stack in stacks])

    done = await wait_results(aredis, 3)
    assert {r.stack for r in done} == set(stacks)
    assert all(r.outcome is Outcome.SUCCEEDED and r.runner == "runner-a" for r in done)
    groups = await aredis.xinfo_groups(FleetKeys.lane("Normal"))
    runners_group = next(g for g in groups if g["name"] == protocol.RUNNERS_GROUP)
    assert runners_group["pending"] == 0  # acknowledged after publishing

    exposition = _get(port, "/metrics") or ""
    assert 'agentstack_runner_ticks_total{outcome="Succeeded",reason="Completed"} 3.0' in (
        exposition
    )
    assert "agentstack_agent_step_duration_seconds_bucket" in exposition
    assert _get(port, "/healthz") == "ok"

    os.kill(runner.pid or 0, signal.SIGTERM)
    eventually(lambda: True if not runner.is_running() else None, "the runner to exit", 30)
    assert runner._popen is not None
    assert runner._popen.returncode == 0


async def test_runner_killed_mid_tick_another_claims_and_completes_it_once(
    aredis: RedisClient, runners: RunnerProcesses, fake_llm: FakeLLMServer
) -> None:
    fake_llm.add_rule(Hang(), headers={"X-Agentstack-Agent": "builder"})
    await publish(aredis, openai_spec(fake_llm))
    await protocol.ensure_groups(aredis)
    fast_failover = {
        "AGENTSTACK_RUNNER_VISIBILITY_TIMEOUT": "2",
        "AGENTSTACK_RUNNER_LEASE_TTL": "1.5",
    }
    first, _ = runners.start("runner-a", **fast_failover)
    await protocol.dispatch(aredis, [request(1)])
    await wait_for_call(fake_llm, "builder")
    os.kill(first.pid or 0, signal.SIGKILL)  # no drain, no release: a crash
    runners.start("runner-b", **fast_failover)

    (result,) = await wait_results(aredis, 1)
    assert result.outcome is Outcome.SUCCEEDED
    assert result.runner == "runner-b"
    assert result.steps == 4
    entries = [f for _id, f in await aredis.xrange(StackKeys(STACK).trace)]
    assert [entry["agent"] for entry in entries] == list(DEFAULT_TEAM)  # each step once
    planner_calls = [r for r in fake_llm.requests if r.headers["x-agentstack-agent"] == "planner"]
    assert len(planner_calls) == 1  # committed before the crash, not re-run
    assert len(await aredis.xrange(StackKeys(STACK).history)) == 1


async def test_sigterm_hands_an_unfinished_tick_back_at_once(
    aredis: RedisClient, runners: RunnerProcesses, fake_llm: FakeLLMServer
) -> None:
    fake_llm.add_rule(Hang(), headers={"X-Agentstack-Agent": "builder"})
    await publish(aredis, openai_spec(fake_llm))
    await protocol.ensure_groups(aredis)
    first, _ = runners.start("runner-a", AGENTSTACK_RUNNER_DRAIN_TIMEOUT="0.5")
    await protocol.dispatch(aredis, [request(1)])
    await wait_for_call(fake_llm, "builder")
    os.kill(first.pid or 0, signal.SIGTERM)
    eventually(lambda: True if not first.is_running() else None, "runner-a to drain", 30)
    assert "handed 1 unfinished tick(s) back" in first.log_tail(50)
    # The default visibility timeout is a minute: only the hand-back makes this quick.
    runners.start("runner-b")
    (result,) = await wait_results(aredis, 1, timeout=30)
    assert result.outcome is Outcome.SUCCEEDED
    assert result.runner == "runner-b"


async def test_two_runners_never_run_one_stack_concurrently_and_run_duplicates_once(
    aredis: RedisClient, runners: RunnerProcesses
) -> None:
    await publish(aredis, {"goal": "g"})
    await protocol.ensure_groups(aredis)
    runners.start("runner-a")
    runners.start("runner-b")
    ticks = [request(slot) for slot in range(1, 21)]
    await protocol.dispatch(aredis, ticks + ticks)  # every tick twice

    done = await wait_results(aredis, 20)
    assert sorted(r.tick_id for r in done) == sorted(t.tick_id for t in ticks)
    ran = [r for r in done if r.outcome is Outcome.SUCCEEDED]
    assert ran
    busy = [r for r in done if r.outcome is Outcome.DROPPED]
    assert all(r.reason == "StackBusy" for r in busy)
    assert {r.runner for r in done} == {"runner-a", "runner-b"}
    # What the lease guarantees, observed where it acts: every agent step commits under
    # the lease (a fenced script), in Redis's own order. Two ticks running at once
    # would interleave their steps in the trace; one at a time, each tick's steps form
    # one unbroken run, the team in order, once.
    trace = [f for _id, f in await aredis.xrange(StackKeys(STACK).trace)]
    runs = [(tick, [e["agent"] for e in group]) for tick, group in _runs(trace)]
    assert sorted(tick for tick, _agents in runs) == sorted(r.tick_id for r in ran)
    assert all(agents == list(DEFAULT_TEAM) for _tick, agents in runs)


def _runs(trace: list[dict[str, str]]) -> list[tuple[str, list[dict[str, str]]]]:
    """Consecutive trace entries grouped by tick id."""
    return [(tick, list(group)) for tick, group in itertools.groupby(trace, lambda e: e["tick_id"])]


def _once(backend: RedisBackend, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--once", "--stack", str(STACK), *args],
        env={**os.environ, **backend.env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


async def test_once_executes_one_tick_with_meaningful_exit_codes(
    aredis: RedisClient, redis_backend: RedisBackend
) -> None:
    await publish(aredis, {"goal": "g"}, generation=2)
    ran = _once(redis_backend, "--generation", "2", "--slot", "7")
    assert ran.returncode == 0, ran.stderr
    again = _once(redis_backend, "--generation", "2", "--slot", "7")
    assert again.returncode == 0
    assert "had already run" in again.stderr
    stale = _once(redis_backend, "--generation", "1", "--slot", "8")
    assert stale.returncode == 3
    assert "OutdatedGeneration" in stale.stderr
    # A tick pod writes no shared stream: each result stays in the stack's keys, where
    # the operator reads it when the Job ends.
    assert [r for r in await results(aredis) if r.stack == STACK] == []
    store = TickStore(aredis, STACK)
    first, second = await store.outcome(f"{STACK}/7"), await store.outcome(f"{STACK}/8")
    assert first is not None
    assert second is not None
    assert (first.tick_id, first.outcome) == (f"{STACK}/7", Outcome.SUCCEEDED)
    assert (second.tick_id, second.reason) == (f"{STACK}/8", "OutdatedGeneration")

    missing = subprocess.run(
        [*CLI, "--once", "--stack", str(STACK), "--generation", "2"],
        env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2
    assert "REDIS_URL" in missing.stderr


def _status(port: int, path: str) -> int | None:
    """The HTTP status of ``path`` (``None`` while nothing answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


async def test_a_runner_started_before_redis_waits_alive_then_serves(tmp_path: Path) -> None:
    """The chart starts the runners with the in-chart Redis: a runner that finds no
    Redis stays alive and unready, then consumes once Redis is up — no crash loop."""
    redis_port, metrics_port = free_port(), free_port()
    process = ManagedProcess(
        "early-runner",
        [*CLI, "--metrics-port", str(metrics_port)],
        log_path=tmp_path / "early-runner.log",
        env={
            **os.environ,
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "AGENTSTACK_RUNNER_ID": "early-runner",
        },
    )
    process.start()
    try:
        process.wait_ready(
            lambda: True if _status(metrics_port, "/healthz") == 200 else None, timeout=30
        )
        process.wait_ready(
            lambda: True if "waiting for Redis" in process.log_tail() else None,
            timeout=30,
            what="waiting for Redis",
        )
        assert _status(metrics_port, "/readyz") == 503
        with RedisServer(port=redis_port) as server:
            process.wait_ready(
                lambda: True if _status(metrics_port, "/readyz") == 200 else None, timeout=60
            )
            client = redis.Redis.from_url(server.url, decode_responses=True)
            try:
                groups = {g["name"] for g in client.xinfo_groups(FleetKeys.lane("Normal"))}
            finally:
                client.close()
            assert protocol.RUNNERS_GROUP in groups
            process.check_alive()
    finally:
        process.stop(timeout=15)
