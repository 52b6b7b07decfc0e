"""The ``agentstack`` processes refuse bad settings clearly instead of crashing."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("command", "variable"),
    [("runner", "AGENTSTACK_RUNNER_CONCURRENCY"), ("operator", "AGENTSTACK_LEASE_SECONDS")],
)
def test_processes_refuse_a_bad_setting_with_exit_code_2(command: str, variable: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agentstack_cli", command],
        env={"REDIS_URL": "redis://127.0.0.1:1/0", variable: "lots", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"{variable}='lots'" in result.stderr
