"""Operator, runner and read-API processes wired to a dev control plane and Redis.

``agentstack dev up`` and the end-to-end tests start the real commands
(``agentstack operator``, ``agentstack runner``, ``agentstack api``) as child processes,
configured only through the environment variables a Deployment would set, and wait for
each to report ready on its ``/readyz`` endpoint.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agentstack_devkit.processes import LOOPBACK, ManagedProcess, free_port

READY_TIMEOUT = 60.0


def _ready(port: int) -> bool | None:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/readyz", timeout=2) as response:
            return True if response.status == 200 else None
    except OSError:
        return None


@dataclass
class Fleet:
    """Starts agentstack processes against one control plane and one Redis."""

    kubeconfig: Path
    redis_url: str
    logs_dir: Path
    redis_cluster: bool = False
    extra_env: Mapping[str, str] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)

    def _env(self, overrides: Mapping[str, str]) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "REDIS_URL": self.redis_url,
            "AGENTSTACK_REDIS_CLUSTER": str(self.redis_cluster).lower(),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
            **overrides,
        }

    def _start(
        self, name: str, command: str, port_variable: str, env: Mapping[str, str]
    ) -> tuple[ManagedProcess, int]:
        port = free_port()
        process = ManagedProcess(
            name,
            [sys.executable, "-m", "agentstack_cli", command],
            log_path=self.logs_dir / f"{name}.log",
            env=self._env({port_variable: str(port), **env}),
        )
        process.start()
        self.processes.append(process)
        process.wait_ready(lambda: _ready(port), timeout=READY_TIMEOUT)
        return process, port

    def operator(self, name: str = "operator", **env: str) -> tuple[ManagedProcess, int]:
        """Start ``agentstack operator``; returns the process and its metrics port."""
        return self._start(
            name, "operator", "AGENTSTACK_METRICS_PORT", {"AGENTSTACK_OPERATOR_ID": name, **env}
        )

    def runner(self, name: str = "runner", **env: str) -> tuple[ManagedProcess, int]:
        """Start ``agentstack runner``; returns the process and its metrics port."""
        return self._start(
            name, "runner", "AGENTSTACK_RUNNER_METRICS_PORT", {"AGENTSTACK_RUNNER_ID": name, **env}
        )

    def api(self, name: str = "api", **env: str) -> tuple[ManagedProcess, int]:
        """Start ``agentstack api``; returns the process and its HTTP port."""
        return self._start(
            name, "api", "AGENTSTACK_API_PORT", {"AGENTSTACK_API_HOST": LOOPBACK, **env}
        )

    def stop(self) -> None:
        while self.processes:
            self.processes.pop().stop(timeout=20)
