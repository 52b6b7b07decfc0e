"""A headless Debian Chromium driven by Selenium, offline, that leaves nothing behind.

The live page (``agentstack api`` serves it at ``/``) is JavaScript reading Server-Sent
Events; only a real browser shows whether it works. This module starts Debian's
``chromium`` through Debian's ``chromedriver`` (the ``chromium`` and ``chromium-driver``
packages, the same version), so that:

- nothing is downloaded: the driver's path is given to Selenium, which then skips
  Selenium Manager altogether (``SE_OFFLINE`` is set as well, should it ever run), and
  Chromium's own background traffic (component updates, sync, QUIC probes) is off;
- nothing is written outside one temporary directory: it is the profile
  (``--user-data-dir``) and also ``HOME`` and the XDG directories of the browser, because
  Chromium's crash handler keeps its database under ``~/.config/chromium`` whatever the
  profile is;
- nothing keeps running: :meth:`HeadlessChromium.close` quits the session, kills what
  is left of the driver's process group and of the processes that name the temporary
  directory (the crash handlers daemonize, leaving the group), and fails if any of
  them is still alive. The driver also dies with the thread that started it
  (``PR_SET_PDEATHSIG``), like every other process of the dev environment.

The console log is collected (``goog:loggingPrefs``), so tests can assert the page
raised no JavaScript error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from agentstack_devkit.processes import DevEnvError, _die_with_parent, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",  # containers and CI run as root, where the sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
EXIT_TIMEOUT = 10.0


@dataclass(frozen=True)
class BrowserProcess:
    """A process of the browser, identified by pid and start time (pids are reused)."""

    pid: int
    started: int
    command: str

    def alive(self) -> bool:
        current = _stat(self.pid)
        return current is not None and current[1] == self.started


def _stat(pid: int) -> tuple[int, int] | None:
    """``(process group, start time)`` of a live process, or ``None`` if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # exited, waiting for its parent to reap it
        return None
    return int(fields[2]), int(fields[19])


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def chromium_binaries() -> tuple[str, str]:
    """Paths of Debian's ``chromium`` and ``chromedriver``, or a clear error."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        raise DevEnvError(
            f"{', '.join(missing)} not found: install Debian's packages with "
            "`apt-get install chromium chromium-driver`"
        )
    return CHROMIUM, CHROMEDRIVER


class HeadlessChromium:
    """One headless Chromium session; a context manager, or :meth:`start` / :meth:`close`.

    ``arguments`` are added to :data:`CHROMIUM_ARGUMENTS` (e.g. ``--disable-features=…``).
    """

    def __init__(
        self, *, arguments: Sequence[str] = (), window_size: tuple[int, int] = (1280, 900)
    ) -> None:
        self.arguments = tuple(arguments)
        self.window_size = window_size
        self.home = Path(tempfile.mkdtemp(prefix="agentstack-chromium-"))
        self.log_path = self.home / "chromedriver.log"
        self._service: Service | None = None
        self._driver: webdriver.Chrome | None = None

    @property
    def driver(self) -> webdriver.Chrome:
        if self._driver is None:
            raise DevEnvError("the browser is not running")
        return self._driver

    def start(self) -> webdriver.Chrome:
        chromium, chromedriver = chromium_binaries()
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in (*CHROMIUM_ARGUMENTS, *self.arguments):
            options.add_argument(argument)
        options.add_argument(f"--user-data-dir={self.home / 'profile'}")
        options.add_argument(f"--window-size={self.window_size[0]},{self.window_size[1]}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        popen: dict[str, Any] = {"start_new_session": True}
        if sys.platform == "linux":
            popen["preexec_fn"] = _die_with_parent
        self._service = Service(
            executable_path=chromedriver,
            log_output=str(self.log_path),
            env={
                **os.environ,
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / "config"),
                "XDG_CACHE_HOME": str(self.home / "cache"),
                "XDG_DATA_HOME": str(self.home / "data"),
                "SE_OFFLINE": "true",
            },
            popen_kw=popen,
        )
        previous = os.environ.get("SE_OFFLINE")
        os.environ["SE_OFFLINE"] = "true"  # Selenium Manager reads it from our environment
        try:
            self._driver = webdriver.Chrome(service=self._service, options=options)
        except BaseException:
            self.close()
            raise
        finally:
            if previous is None:
                os.environ.pop("SE_OFFLINE", None)
            else:
                os.environ["SE_OFFLINE"] = previous
        return self._driver

    def processes(self) -> list[BrowserProcess]:
        """The live processes of this browser: the driver's group and whatever names
        the temporary directory (Chromium's processes and its crash handlers)."""
        group = self._driver_pid()
        marker = str(self.home)
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = _stat(pid)
            if stat is None:
                continue
            command = _command(pid)
            if (group is not None and stat[0] == group) or marker in command:
                found.append(BrowserProcess(pid, stat[1], command))
        return found

    def _driver_pid(self) -> int | None:
        process = getattr(self._service, "process", None)
        return None if process is None else int(process.pid)

    def close(self) -> None:
        """Quit the session, stop every process of the browser, remove its directory.

        Raises :class:`DevEnvError` if a process of the browser outlives the stop."""
        try:
            left = self.processes()
            if self._driver is not None:
                with contextlib.suppress(Exception):  # a crashed browser: kill it below
                    self._driver.quit()
                self._driver = None
            if self._service is not None:
                with contextlib.suppress(Exception):
                    self._service.stop()
            group = self._driver_pid()
            if group is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
            left += self.processes()
            for process in left:
                if process.alive():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(process.pid, signal.SIGKILL)
            try:
                wait_until(
                    lambda: True if not any(p.alive() for p in left) else None,
                    timeout=EXIT_TIMEOUT,
                    what="the browser's processes to exit",
                )
            except DevEnvError as exc:
                alive = "; ".join(f"{p.pid} {p.command[:100]}" for p in left if p.alive())
                raise DevEnvError(f"{exc}; still running: {alive}") from exc
        finally:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> webdriver.Chrome:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
