"""`agentstack dev up`, the README's first command, as a user runs it: the image, the
node, the chart installed by helm, the example stack ticking in the runner pod, the live
page on loopback — and after Ctrl-C, nothing left on the machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import redis

from agentstack_core.keys import StackKeys, StackRef
from agentstack_devkit.node import BRIDGE, CGROUP_ROOT, CHAIN, run_dir
from agentstack_devkit.registry import dev_registry_dir
from tests.e2e.test_dev_cluster_command import _foreground, _Output, _processes_mentioning
from tests.helpers import eventually


def _kube_chains() -> list[str]:
    dump = subprocess.run(
        ["iptables-save"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return [line for line in dump.splitlines() if "KUBE-" in line or CHAIN in line]


def _left_on_the_machine() -> list[str]:
    left = []
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        left.append(f"bridge {BRIDGE}")
    left += _kube_chains()
    left += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_ROOT}")]
    mounts = Path("/proc/self/mountinfo").read_text()
    left += [line for line in mounts.splitlines() if str(run_dir().parent) in line]
    for pid in {
        *_processes_mentioning(str(run_dir().parent)),
        *_processes_mentioning(str(dev_registry_dir())),
    }:
        left.append(f"process {pid}: {Path(f'/proc/{pid}/cmdline').read_text()!r}")
    return left


def _interrupt(process: subprocess.Popen[str], output: _Output) -> None:
    """Ctrl-C, as a user stops it: a clean exit (killed if it does not come)."""
    try:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=180) == 0, output.text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)


def test_dev_up_after_a_crash_clears_what_it_left_runs_the_chart_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """A run killed with SIGKILL leaves pods, the bridge and the chains behind; the next
    run clears them and starts: the chart from the dev registry, every pod Running, the
    example ticking, the API and Redis on loopback — and after Ctrl-C, nothing left.
    (One test: each bring-up of the node takes a minute of the suite.)"""
    state_dir = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("GROQ_API_KEY", "OPENAI_API_KEY")}
    env["AGENTSTACK_STATE_DIR"] = str(state_dir)
    # Its data under tmp_path: a crashed run cannot remove its own temporary directory.
    crashed, _output = _foreground(
        ["up", "--data-dir", str(tmp_path / "crashed")], env, timeout=480
    )
    crashed.kill()  # SIGKILL: no clean-up runs
    crashed.wait(timeout=60)
    # Its children die with it (PR_SET_PDEATHSIG), but not what they made: the pods
    # (containerd's shims outlive containerd), the bridge, the chains.
    assert _pods_running()
    assert _left_on_the_machine()

    process, output = _foreground(["up"], env, timeout=480)
    try:
        assert "agentstack is up" in output.text()
        text = output.text()
        assert "installed by helm as release agentstack-operator" in text
        # The chart and image came from the dev registry, the image pinned by digest.
        assert "oci://127.0.0.1:5100/charts/agentstack-operator 0.1.0-dev." in text
        assert "(image 127.0.0.1:5100/agentstack-operator@sha256:" in text
        endpoints_file = state_dir / "endpoints.env"
        assert endpoints_file.stat().st_mode & 0o077 == 0  # it holds a password
        endpoints = dict(line.split("=", 1) for line in endpoints_file.read_text().split())
        password = endpoints["REDIS_URL"].split("@")[0].rsplit(":", 1)[1]
        assert password not in text  # printed nowhere

        def kubectl(*args: str) -> str:
            done = subprocess.run(
                [endpoints["KUBECTL"], "--kubeconfig", endpoints["KUBECONFIG"], *args],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        pods = json.loads(kubectl("get", "pods", "-n", "agentstack-system", "-o", "json"))
        assert {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods["items"]} == {
            "operator",
            "runner",
            "api",
            "redis",
        }
        assert all(p["status"]["phase"] == "Running" for p in pods["items"])
        eventually(
            lambda: (
                True
                if int(
                    kubectl("get", "ags", "release-notes", "-o", "jsonpath={.status.ticks}") or 0
                )
                >= 2
                else None
            ),
            "the example stack to tick",
            timeout=120,
        )
        # The live page's API, through the port-forward.
        stack_url = f"{endpoints['AGENTSTACK_API_URL']}/api/v1/namespaces/default/stacks"
        with urllib.request.urlopen(f"{stack_url}/release-notes/ticks", timeout=10) as got:
            assert json.loads(got.read())["items"]
        # The in-chart Redis, through the other one, with the password from endpoints.env.
        reader = redis.Redis.from_url(endpoints["REDIS_URL"], decode_responses=True)
        try:
            history = StackKeys(StackRef("default", "release-notes")).history
            assert reader.xlen(history) >= 2
        finally:
            reader.close()
    finally:
        _interrupt(process, output)
    assert not endpoints_file.exists()
    assert _left_on_the_machine() == []
    assert not _pods_running()


def _pods_running() -> bool:
    """Any process in the node's pod cgroups (what a crash leaves running)."""
    for procs in Path("/sys/fs/cgroup/pids").glob(f"{CGROUP_ROOT}/**/cgroup.procs"):
        if procs.read_text().split():
            return True
    return False
