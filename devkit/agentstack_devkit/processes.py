"""Child processes of the development environment: start, wait until ready, stop.

Every server the dev environment runs (etcd, kube-apiserver, kube-controller-manager,
redis-server, later the operator and runners) goes through :class:`ManagedProcess`, so
that all of them share the same guarantees:

- output goes to a log file, and a failure quotes its tail instead of "it did not start";
- each child runs in its own process group, so stopping it also stops what it spawned;
- on Linux the child is killed by the kernel if its parent dies without cleaning up
  (``PR_SET_PDEATHSIG``), so even ``kill -9`` of the test runner leaves no stray server;
- every wait has a timeout and notices a child that exited early.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self, TypeVar

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


class DevEnvError(RuntimeError):
    """A part of the development environment could not be built, started or reached."""


class PortInUseError(DevEnvError):
    """A port that was asked for explicitly is already taken by another process."""


class ProcessExitedError(DevEnvError):
    """A child process exited while it was expected to be serving."""


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` right now.

    The port is only reserved for the instant of the check; the servers we start bind
    it a moment later. If another process wins that race the server fails to start and
    :meth:`ManagedProcess.wait_ready` reports it with the server's own log.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_port_free(port: int, host: str = LOOPBACK, *, purpose: str = "") -> None:
    """Fail with a clear message if ``port`` cannot be bound on ``host``.

    ``SO_REUSEADDR``, as servers set it: a port whose last server just died still has
    connections in TIME_WAIT, which must not stop a restart on it; a listener does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                what = f" for {purpose}" if purpose else ""
                raise PortInUseError(
                    f"port {host}:{port}{what} is already in use by another process; "
                    "stop that process or choose another port"
                ) from exc
            raise


def pick_port(requested: int | None, *, purpose: str, host: str = LOOPBACK) -> int:
    """``requested`` if it is free (else a clear :class:`PortInUseError`), or any free port."""
    if requested is None:
        return free_port(host)
    ensure_port_free(requested, host, purpose=purpose)
    return requested


class Service:
    """A part of the environment started and stopped as a whole; a context manager.

    Subclasses implement ``_start`` and ``stop``. A start that fails half-way stops what
    it had started before the error propagates, so no test or command leaks processes.
    """

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Stoppable(Protocol):
    def stop(self) -> None: ...


def stop_all(parts: Sequence[Stoppable], what: str) -> None:
    """Stop every one of ``parts`` even if some fail; then raise, naming ``what``."""
    errors: list[BaseException] = []
    for part in parts:
        try:
            part.stop()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise DevEnvError(f"could not stop {what}: {errors!r}")


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    alive: Callable[[], None] | None = None,
) -> T:
    """Poll ``check`` until it returns something other than ``None``; return that.

    ``alive`` is called before each attempt and should raise if whatever we wait for
    can no longer happen (a child process exited), so that a crash is reported at once
    rather than after the full timeout. Exceptions from ``check`` count as "not yet".
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        if alive is not None:
            alive()
        try:
            result = check()
        except Exception as exc:  # the thing we poll is not up yet
            last_error = exc
        else:
            if result is not None:
                return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise DevEnvError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(interval)


def _die_with_parent() -> None:
    """Run in the child before exec: ask the kernel to kill it when the parent dies."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:  # pragma: no cover - every Linux has a libc
        return
    libc = ctypes.CDLL(libc_name, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ManagedProcess:
    """One long-running child process with a log file and a bounded, clean stop.

    The process must be started from a thread that outlives it (the main thread, in
    practice): ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = [os.fspath(arg) for arg in argv]
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    def start(self) -> None:
        if self._popen is not None:
            raise DevEnvError(f"{self.name} was already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        try:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        except FileNotFoundError as exc:
            self._log.close()
            raise DevEnvError(f"cannot start {self.name}: {self.argv[0]} not found") from exc

    def restart(self) -> None:
        """Stop the process (if it still runs) and start it again, same command."""
        self.stop()
        self._popen = None
        self.start()

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def check_alive(self) -> None:
        """Raise :class:`ProcessExitedError`, quoting the log, if the child has exited."""
        if self._popen is None:
            raise DevEnvError(f"{self.name} was never started")
        code = self._popen.poll()
        if code is not None:
            raise ProcessExitedError(
                f"{self.name} exited with code {code}; last lines of {self.log_path}:\n"
                + self.log_tail()
            )

    def wait_ready(
        self, check: Callable[[], T | None], *, timeout: float, what: str = "ready"
    ) -> T:
        """Wait until ``check`` succeeds while the process is alive."""
        try:
            return wait_until(
                check, timeout=timeout, what=f"{self.name} to be {what}", alive=self.check_alive
            )
        except ProcessExitedError:
            raise
        except DevEnvError as exc:
            raise DevEnvError(f"{exc}; last lines of {self.log_path}:\n{self.log_tail()}") from exc

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process group (fault tests: SIGKILL, SIGSTOP, SIGCONT)."""
        if self._popen is None:
            raise DevEnvError(f"{self.name} was never started")
        self._signal_group(self._popen.pid, sig)

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Wait for the process to end (after a signal); returns its exit code."""
        if self._popen is None:
            raise DevEnvError(f"{self.name} was never started")
        try:
            return self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise DevEnvError(f"{self.name} did not exit within {timeout:g}s") from exc

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the process group; kill it if it has not exited within ``timeout``."""
        popen = self._popen
        if popen is None:
            return
        if popen.poll() is None:
            self._signal_group(popen.pid, signal.SIGTERM)
            self._signal_group(popen.pid, signal.SIGCONT)  # a stopped process must see it
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(popen.pid, signal.SIGKILL)
                popen.wait(timeout=timeout)
        # Whatever the child left behind in its group goes too.
        self._signal_group(popen.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def http_ok(
    url: str,
    *,
    token: str | None = None,
    context: ssl.SSLContext | None = None,
    expect: bytes | None = None,
) -> bool | None:
    """``True`` if ``url`` answers 200 (and contains ``expect``), else ``None``: the
    readiness check of every server the dev kit starts."""
    request = urllib.request.Request(url)  # noqa: S310 - loopback http(s) only
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
            body: bytes = response.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
        return None
    if expect is not None and expect not in body:
        return None
    return True


def unverified_tls() -> ssl.SSLContext:
    """TLS without verification, for a component's own self-signed loopback
    certificate (generated during its start-up, so nothing to trust beforehand)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def append_entry(log: Path, **entry: Any) -> None:
    """One JSON line of what reached a test server, with the time."""
    with log.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"at": time.time(), **entry}) + "\n")


def serve_logged(app: App, port: int, log: Path, host: str = LOOPBACK) -> None:
    """Serve an ASGI ``app`` on ``host`` (loopback) until killed, logging every HTTP request's path
    and headers to ``log`` first (what reached the server, credentials included). While
    the file :func:`authorization_file` names exists, a request whose ``Authorization``
    is not its content is answered 401 (a server that rotated its token)."""
    import uvicorn

    required = authorization_file(log)

    async def logged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode(): v.decode() for k, v in scope.get("headers", [])}
            append_entry(log, request=scope["path"], headers=headers)
            if required.exists() and headers.get("authorization") != required.read_text():
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"token refused"})
                return
        await app(scope, receive, send)

    uvicorn.run(logged, host=host, port=port, log_level="warning")


def authorization_file(log: Path) -> Path:
    """Where a test server finds the only ``Authorization`` value it accepts."""
    return log.with_suffix(".authorization")


def server_main(prog: str, serve: Callable[[int, Path, str], None], argv: list[str] | None) -> int:
    """The ``main`` of a test server's module: ``--port P --log FILE [--host H]``."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {prog}")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--host", default=LOOPBACK)
    args = parser.parse_args(argv)
    serve(args.port, args.log, args.host)
    return 0


class LoggingServer:
    """A test server run as ``python -m <module> --port P --log FILE`` on loopback (or
    ``host``: the dev node's bridge address, for pods), which appends what reached it to
    ``FILE`` as JSON lines (a real MCP server, a real A2A agent): ``with Server(dir) as
    server: …``; :meth:`entries` reads the log."""

    module = ""
    """The server's module (``agentstack_devkit.mcpserver``)."""
    name = ""
    """Its process's name, and its log files' stem."""

    def __init__(self, work: Path, host: str = LOOPBACK) -> None:
        self.host = host
        self.port = free_port(host)
        self.log = work / f"{self.name}.jsonl"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        self.process = ManagedProcess(
            self.name,
            [
                *(sys.executable, "-m", self.module, "--port", str(self.port)),
                *("--log", str(self.log), "--host", host),
            ],
            log_path=work / f"{self.name}.log",
        )

    def require_authorization(self, value: str | None) -> None:
        """Accept only requests with this ``Authorization`` header (``None``: any)."""
        path = authorization_file(self.log)
        if value is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(value)

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(self._listening, timeout=30, what="listening")

    def _listening(self) -> bool | None:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            return True if probe.connect_ex((self.host, self.port)) == 0 else None

    def stop(self) -> None:
        self.process.stop(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def entries(self) -> list[dict[str, Any]]:
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def request_headers(self) -> list[dict[str, str]]:
        """The headers of every request that reached the server."""
        return [e["headers"] for e in self.entries() if "request" in e]
