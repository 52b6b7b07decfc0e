"""`agentstack dev cluster`: foreground control plane, kubeconfig, clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from kubernetes import client, config

from tests.helpers import eventually

CLI = [sys.executable, "-m", "agentstack_cli"]


def _processes_mentioning(text: str, where: str = "cmdline") -> list[int]:
    """Pids whose command line (or environment, ``where="environ"``) contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            content = (entry / where).read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in content:
            found.append(int(entry.name))
    return found


class _Output:
    """Collects a child's stdout lines on a thread, so waits on it can time out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        stream = process.stdout
        self._thread = threading.Thread(
            target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True
        )
        self._thread.start()

    def text(self) -> str:
        return "".join(self.lines)


def _foreground(
    args: list[str], env: dict[str, str], timeout: float = 180
) -> tuple[subprocess.Popen[str], _Output]:
    """Start an ``agentstack dev`` command; return once it says it is ready."""
    process = subprocess.Popen(
        [*CLI, "dev", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    output = _Output(process)
    try:
        eventually(
            lambda: True if "Press Ctrl-C" in output.text() else None,
            f"agentstack dev {args[0]} to report it is ready",
            timeout=timeout,
        )
    except BaseException:
        process.kill()
        process.wait(timeout=30)
        raise
    return process, output


def test_dev_cluster_serves_kubectl_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    state_dir = tmp_path / "state"
    env = dict(os.environ, AGENTSTACK_STATE_DIR=str(state_dir))
    process, output = _foreground(["cluster", "--data-dir", str(data_dir)], env)
    try:
        kubeconfig = state_dir / "kubeconfig"
        assert f"kubeconfig: {kubeconfig}" in output.text()
        servers = set(_processes_mentioning(str(data_dir))) - {process.pid}
        assert len(servers) == 3  # etcd, kube-apiserver, kube-controller-manager

        api = config.new_client_from_config(config_file=str(kubeconfig))
        with api:
            names = {ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items}
        assert {"default", "kube-system"} <= names

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert "stopping…" in output.text()
    assert _processes_mentioning(str(data_dir)) == []
    assert not kubeconfig.exists()
    assert (data_dir / "etcd").is_dir()  # --data-dir is kept for the next run


def test_dev_cluster_fails_fast_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [*CLI, "dev", "cluster", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, AGENTSTACK_STATE_DIR=str(tmp_path / "state")),
            check=False,
        )
    assert result.returncode == 1
    assert f"127.0.0.1:{port} for kube-apiserver is already in use" in result.stderr


def test_dev_up_runs_the_whole_stack_and_stops_it(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("GROQ_API_KEY", "OPENAI_API_KEY")}
    env["AGENTSTACK_STATE_DIR"] = str(state_dir)
    process, output = _foreground(["up", "--processes", "--data-dir", str(tmp_path / "data")], env)
    try:
        text = output.text()
        assert "stacks: release-notes, tool-demo (offline" in text
        assert "tool-demo's builder calls kb/lookup on a local MCP server" in text
        assert "patch ags release-notes --type merge" in text
        endpoints = dict(
            line.split("=", 1) for line in (state_dir / "endpoints.env").read_text().split()
        )
        assert set(endpoints) >= {"KUBECONFIG", "KUBECTL", "REDIS_URL", "AGENTSTACK_API_URL"}
        children = set(_processes_mentioning(str(state_dir), "environ")) - {process.pid}
        commands = " ".join(Path(f"/proc/{pid}/cmdline").read_text() for pid in children)
        for part in (
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "operator",
            "runner",
            "api",
        ):
            assert part in commands
        redis_port = endpoints["REDIS_URL"].rsplit(":", 1)[1].split("/")[0]
        assert _processes_mentioning(f"127.0.0.1:{redis_port}")  # redis-server's title

        def ticked() -> int | None:
            got = subprocess.run(
                [
                    endpoints["KUBECTL"],
                    "--kubeconfig",
                    endpoints["KUBECONFIG"],
                    "get",
                    "ags",
                    "release-notes",
                    "-o",
                    "jsonpath={.status.ticks}",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            return int(got.stdout) if got.stdout.strip() and int(got.stdout) >= 2 else None

        eventually(ticked, "the example stack to tick", timeout=60)
        stack_url = f"{endpoints['AGENTSTACK_API_URL']}/api/v1/namespaces/default/stacks"
        with urllib.request.urlopen(f"{stack_url}/release-notes/ticks", timeout=10) as got:
            assert json.loads(got.read())["items"]

        def tool_called() -> bool | None:
            with urllib.request.urlopen(f"{stack_url}/tool-demo/traces", timeout=10) as got:
                steps = json.loads(got.read())["items"]
            # The offline demo shows a tool call: the builder's lookup, answered.
            calls = [u for s in steps for u in s.get("tools", []) if u["tool"] == "kb/lookup"]
            return True if any(u["outcome"] == "ok" for u in calls) else None

        eventually(tool_called, "the tool-demo builder's tool call in its trace", timeout=60)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=90) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert _processes_mentioning(str(state_dir), "environ") == []
    assert _processes_mentioning(f"127.0.0.1:{redis_port}") == []
    assert not (state_dir / "endpoints.env").exists()
