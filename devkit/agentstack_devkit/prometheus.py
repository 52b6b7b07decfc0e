"""A real Prometheus server scraping the fleet's ``/metrics`` endpoints, for tests and dev.

The metrics documented in ``docs/metrics.md`` and the PromQL queries it recommends are
a contract with whoever builds dashboards and alerts on them. Checking the exposition
text alone would not catch a query that never returns data (a wrong label, a metric
that is registered but never set, a rate over a counter that never moves), so the tests
run the real thing: Debian's ``prometheus`` binary scraping the real processes every
second, queried over its HTTP API.

Like :mod:`agentstack_devkit.redisserver`, the server runs on a free loopback
port with a throw-away data directory; its generated configuration is validated with
``promtool check config`` before the server starts, so a mistake in it is reported as
such rather than as a server that never became ready.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from agentstack_devkit.processes import (
    LOOPBACK,
    DevEnvError,
    ManagedProcess,
    Service,
    pick_port,
)

READY_TIMEOUT = 30.0
HTTP_TIMEOUT = 10.0
PROMTOOL_TIMEOUT = 30.0
SCRAPE_INTERVAL = "1s"


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise DevEnvError(
            f"{name} is not installed: run `make setup` (it installs Debian's prometheus "
            "package, which provides prometheus and promtool) or install it with your "
            "package manager"
        )
    return found


def prometheus_binary() -> str:
    """Path of ``prometheus``, or a clear error saying how the project installs it."""
    return _binary("prometheus")


def promtool_binary() -> str:
    """Path of ``promtool`` (shipped with ``prometheus``), or a clear error."""
    return _binary("promtool")


def scrape_config(targets: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The Prometheus configuration scraping ``{job_name: ["host:port", ...]}`` every second."""
    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(addresses)}]}
            for job, addresses in targets.items()
        ],
    }


class PrometheusServer(Service):
    """One ``prometheus`` process; use as a context manager or start()/stop()."""

    def __init__(
        self,
        targets: Mapping[str, Sequence[str]],
        *,
        port: int | None = None,
        data_dir: Path | None = None,
    ) -> None:
        if not targets:
            raise DevEnvError("PrometheusServer needs at least one scrape job")
        self.targets = {job: list(addresses) for job, addresses in targets.items()}
        self._requested_port = port
        self.port = 0
        self._owns_data_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="agentstack-prometheus-"))
            if data_dir is None
            else data_dir
        )
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "prometheus.yml"

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise DevEnvError("prometheus is not running")
        return self._process

    def _start(self) -> None:
        binary = prometheus_binary()
        self.port = pick_port(self._requested_port, purpose="prometheus")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # JSON is YAML: no YAML writer needed, and no quoting surprises.
        self.config_path.write_text(json.dumps(scrape_config(self.targets), indent=2) + "\n")
        self._check_config()
        self._process = ManagedProcess(
            "prometheus",
            [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                # Scratch data: a long `agentstack dev` session keeps an hour, not 15 days.
                "--storage.tsdb.retention.time=1h",
                # The log (quoted when start-up fails) holds problems, not routine chatter.
                "--log.level=warn",
            ],
            log_path=self.data_dir / "prometheus.log",
            cwd=self.data_dir,
        )
        self._process.start()
        self._process.wait_ready(self._ready, timeout=READY_TIMEOUT)

    def _check_config(self) -> None:
        checked = subprocess.run(
            [promtool_binary(), "check", "config", str(self.config_path)],
            capture_output=True,
            text=True,
            timeout=PROMTOOL_TIMEOUT,
            check=False,
        )
        if checked.returncode != 0:
            raise DevEnvError(
                f"promtool rejected the generated {self.config_path}:\n"
                f"{checked.stdout}{checked.stderr}"
            )

    def _ready(self) -> bool | None:
        try:
            with urllib.request.urlopen(
                f"http://{LOOPBACK}:{self.port}/-/ready", timeout=2
            ) as response:
                return True if response.status == 200 else None
        except OSError:
            return None

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET an API path and return its ``data``, raising on an error response."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"http://{LOOPBACK}:{self.port}{path}{query}"
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 400/422 carry Prometheus' error message
            text = exc.read()
            try:
                body = json.loads(text)
            except ValueError:
                body = {
                    "errorType": f"HTTP {exc.code}",
                    "error": text[:500].decode(errors="replace"),
                }
        if body.get("status") != "success":
            raise DevEnvError(
                f"prometheus {path} failed: {body.get('errorType')}: {body.get('error')}"
            )
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Evaluate ``expr`` now (``/api/v1/query``); return its result as a vector.

        Each item is ``{"metric": {label: value}, "value": [timestamp, "number"]}``; a
        scalar result comes back as one item with no labels.
        """
        data = self._get("/api/v1/query", {"query": expr})
        result = data["result"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": result}]
        return cast(list[dict[str, Any]], result)

    def active_targets(self) -> list[dict[str, Any]]:
        """The scrape targets with their health and last error (``/api/v1/targets``)."""
        data = self._get("/api/v1/targets", {"state": "active"})
        return cast(list[dict[str, Any]], data["activeTargets"])

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
