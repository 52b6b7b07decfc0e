"""The ``agentstack dev`` subcommands: thin drivers over the devenv building blocks.

Each command returns a process exit code and prints what a person needs next (paths,
commands to try); the building blocks themselves stay silent apart from build progress.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from agentstack_operator.devenv.controlplane import ControlPlane
from agentstack_operator.devenv.processes import DevEnvError
from agentstack_operator.devenv.toolchain import (
    controlplane_binaries,
    find_repo_root,
    helm_binary,
)

_WATCH_INTERVAL = 1.0


def state_dir() -> Path:
    """``.agentstack/dev`` of the checkout (gitignored): kubeconfig and endpoints live here."""
    explicit = os.environ.get("AGENTSTACK_STATE_DIR")
    return Path(explicit) if explicit else find_repo_root() / ".agentstack" / "dev"


def _say(message: str) -> None:
    print(message, flush=True)


def build() -> int:
    """Build (or find in the cache) every binary the dev environment and tests use."""
    try:
        binaries = controlplane_binaries()
        helm = helm_binary()
    except DevEnvError as exc:
        print(f"agentstack dev build: {exc}", file=sys.stderr)
        return 1
    for path in (
        binaries.etcd,
        binaries.kube_apiserver,
        binaries.kube_controller_manager,
        binaries.kubectl,
        helm,
    ):
        _say(str(path))
    for directory in sorted({binaries.etcd.parent, helm.parent}):
        info = json.loads((directory / "BUILDINFO.json").read_text())
        _say(f"# {directory.name}: built in {info['build_seconds']}s with {info['go']}")
    return 0


class _InterruptedError(Exception):
    """SIGTERM or SIGINT arrived: leave the foreground loop and clean up."""


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise _InterruptedError(signal.Signals(signum).name)


def cluster(*, data_dir: Path | None, port: int | None) -> int:
    """Run a local control plane in the foreground until Ctrl-C or SIGTERM."""
    previous = {
        sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    kubeconfig = state_dir() / "kubeconfig"
    control_plane: ControlPlane | None = None
    try:
        binaries = controlplane_binaries()
        started = time.monotonic()
        control_plane = ControlPlane(
            binaries, data_dir=data_dir, apiserver_port=port, kubeconfig_path=kubeconfig
        )
        control_plane.start()
        _say(
            f"Kubernetes {binaries.kubernetes_version} control plane ready at "
            f"{control_plane.url} in {time.monotonic() - started:.1f}s "
            f"(etcd {binaries.etcd_version}, kube-apiserver, kube-controller-manager)\n"
            f"kubeconfig: {kubeconfig}\n"
            f"data:       {control_plane.data_dir}"
            f"{'' if data_dir else ' (temporary, removed on exit)'}\n"
            f"logs:       {control_plane.logs_dir}\n"
            f"try:        {binaries.kubectl} --kubeconfig {kubeconfig} get ns\n"
            "Press Ctrl-C to stop."
        )
        while True:
            for process in control_plane.processes:
                process.check_alive()
            time.sleep(_WATCH_INTERVAL)
    except _InterruptedError:
        _say("stopping the control plane…")
        return 0
    except DevEnvError as exc:
        print(f"agentstack dev cluster: {exc}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C during clean-up aborts it; the kernel then kills the children
        # (they run with PR_SET_PDEATHSIG), so nothing is left behind either way.
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if control_plane is not None:
            control_plane.stop()
        kubeconfig.unlink(missing_ok=True)
