"""Every process runs on uvloop unless AGENTSTACK_EVENT_LOOP says otherwise."""

from __future__ import annotations

import asyncio

import pytest

from agentstack_cli.cli import main
from agentstack_core import eventloop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_default_loop_is_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTSTACK_EVENT_LOOP", raising=False)
    assert eventloop.run(_loop_module()).startswith("uvloop")


def test_the_standard_library_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTACK_EVENT_LOOP", "AsyncIO")
    assert eventloop.run(_loop_module()).startswith("asyncio")


@pytest.mark.parametrize("command", ["operator", "api", "runner"])
def test_an_unknown_loop_stops_every_process_with_the_variable_named(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")
    monkeypatch.setenv("AGENTSTACK_EVENT_LOOP", "trio")
    assert main([command]) == 2
    error = capsys.readouterr().err
    assert "AGENTSTACK_EVENT_LOOP='trio' is not one of uvloop, asyncio" in error
