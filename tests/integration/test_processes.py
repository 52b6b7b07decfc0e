"""Child-process supervision: failures are reported with their logs, stops are complete."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from agentstack_devkit.processes import (
    DevEnvError,
    ManagedProcess,
    PortInUseError,
    ProcessExitedError,
    ensure_port_free,
    wait_until,
)
from agentstack_devkit.redisserver import RedisServer


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; it only waits for its parent to reap it.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_exit_during_start_is_reported_with_the_log_tail(tmp_path: Path) -> None:
    process = ManagedProcess(
        "failing",
        ["sh", "-c", "echo 'bind: address already in use' >&2; exit 3"],
        log_path=tmp_path / "failing.log",
    )
    process.start()
    with pytest.raises(
        ProcessExitedError, match=r"exited with code 3(.|\n)*address already in use"
    ):
        process.wait_ready(lambda: None, timeout=30)
    process.stop()


def test_stop_takes_the_whole_process_group_down(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    process = ManagedProcess(
        "parent",
        ["sh", "-c", f"sleep 300 & echo $! > {pid_file}; trap '' TERM; wait"],
        log_path=tmp_path / "parent.log",
    )
    process.start()
    grandchild = process.wait_ready(
        lambda: int(pid_file.read_text()) if pid_file.exists() and pid_file.read_text() else None,
        timeout=30,
        what="spawning its child",
    )
    assert _alive(grandchild)
    process.stop(timeout=1)  # the parent ignores SIGTERM: this escalates to SIGKILL
    assert not process.is_running()
    wait_until(lambda: True if not _alive(grandchild) else None, timeout=10, what="grandchild exit")


def test_wait_until_gives_up_with_a_message() -> None:
    with pytest.raises(DevEnvError, match=r"timed out after 0\.2s waiting for the impossible"):
        wait_until(lambda: None, timeout=0.2, what="the impossible")


def test_taken_port_is_reported_clearly() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(
            PortInUseError, match=f"127.0.0.1:{port} for redis-server is already in use"
        ):
            ensure_port_free(port, purpose="redis-server")
        with pytest.raises(PortInUseError):
            RedisServer(port=port).start()
