"""The pinned helm CLI, with homes of its own, against one cluster.

``agentstack dev up`` installs the chart with it as a user would, and the chart's tests
render, lint, install and upgrade with it; both go through :class:`Helm` so that helm's
cache, configuration and data never mix with a user's own (``~/.config/helm``).
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.processes import DevEnvError
from agentstack_devkit.toolchain import find_repo_root, helm_binary


def chart_dir() -> Path:
    """The chart in the checkout."""
    return find_repo_root() / "charts" / "agentstack-operator"


@dataclass
class Helm:
    """The pinned helm, with private cache/config/data homes under ``home``."""

    home: Path
    kubeconfig: Path
    pods_run: bool = True
    """Whether the cluster runs pods (a node). Without one a hook's Job never ends, so
    :meth:`uninstall` skips the chart's hooks (its pre-delete ``agentstack uninstall``)."""

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = dict(
            os.environ,
            HELM_CACHE_HOME=str(self.home / "cache"),
            HELM_CONFIG_HOME=str(self.home / "config"),
            HELM_DATA_HOME=str(self.home / "data"),
            KUBECONFIG=str(self.kubeconfig),
        )
        return subprocess.run(
            [str(helm_binary()), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def checked(self, *args: str, timeout: float = 120) -> str:
        """Run helm; raise :class:`DevEnvError` with its message if it fails."""
        done = self.run(*args, timeout=timeout)
        if done.returncode != 0:
            raise DevEnvError(f"helm {args[0]} failed: {done.stderr.strip() or done.stdout}")
        return done.stdout

    def template(self, *args: str, release: str = "ags") -> list[dict[str, Any]]:
        """``helm template`` of the chart: the rendered objects (empty documents dropped)."""
        rendered = self.checked("template", release, str(chart_dir()), *args)
        return [doc for doc in yaml.safe_load_all(rendered) if doc]

    def install(self, release: str, namespace: str, *args: str, timeout: float = 180) -> str:
        """``helm install`` of the chart; returns what helm printed."""
        return self.checked(
            "install", release, str(chart_dir()), "--namespace", namespace, *args, timeout=timeout
        )

    def uninstall(self, release: str, namespace: str) -> subprocess.CompletedProcess[str]:
        hooks = [] if self.pods_run else ["--no-hooks"]
        return self.run("uninstall", release, "--namespace", namespace, *hooks, timeout=420)


RELEASE = "agentstack-operator"
RELEASE_NAMESPACE = "agentstack-system"
INSTALL_TIMEOUT = "5m"
API_SERVICE = f"{RELEASE}-api"
REDIS_SERVICE = f"{RELEASE}-redis"
"""The in-chart Redis's Service, and its Secret (key ``redis-password``)."""
IN_CLUSTER_REDIS_URL = f"redis://{REDIS_SERVICE}.{RELEASE_NAMESPACE}.svc:6379/0"
"""How pods in any namespace reach the in-chart Redis (as the chart's REDIS_URL says)."""


def redis_password(plane: ControlPlane, user: str = "redis") -> str:
    """The dev release's in-chart Redis password of ``user`` (``redis``: the platform's
    default user; ``runner``, ``api``: theirs), from its Secret."""
    shown = plane.kubectl(
        "get",
        "secret",
        "--namespace",
        RELEASE_NAMESPACE,
        REDIS_SERVICE,
        "-o",
        f"jsonpath={{.data.{user}-password}}",
    )
    if shown.returncode != 0 or not shown.stdout:
        raise DevEnvError(f"reading the Secret {REDIS_SERVICE}: {shown.stderr.strip()}")
    return base64.b64decode(shown.stdout).decode()


@dataclass(frozen=True)
class ChartSource:
    """Where helm takes the chart from: the checkout's directory, or a published version
    in an OCI registry (``oci://…`` with its version)."""

    reference: str
    version: str | None = None
    plain_http: bool = False

    def args(self) -> list[str]:
        """The chart argument of ``helm install``/``upgrade`` and its options."""
        version = [] if self.version is None else ["--version", self.version]
        return [self.reference, *version, *(["--plain-http"] if self.plain_http else [])]


def checkout_chart() -> ChartSource:
    """The chart as it is in the checkout (its image unpinned)."""
    return ChartSource(str(chart_dir()))


def dev_values(redis_image: str) -> dict[str, str]:
    """The values of a dev install on the local node: the in-chart Redis from the local
    registry, one replica of each process (two cores), and the API without
    authentication — reachable only through a port-forward on loopback. The project's
    image is the one the published chart pins by digest."""
    redis_repository, redis_tag = redis_image.rsplit(":", 1)
    return {
        "redis.standalone.enabled": "true",
        "redis.standalone.image.repository": redis_repository,
        "redis.standalone.image.tag": redis_tag,
        **_DEV_PROCESSES,
    }


def external_redis_values(url: str) -> dict[str, str]:
    """:func:`dev_values` with a Redis outside the cluster (``url`` as pods reach it)."""
    return {"redis.url": url, **_DEV_PROCESSES}


_DEV_PROCESSES = {"operator.replicas": "1", "runner.replicas": "1", "api.auth": "none"}


def as_sets(values: dict[str, str]) -> list[str]:
    """``--set key=value`` options."""
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def install_dev_release(
    helm: Helm,
    chart: ChartSource,
    values: dict[str, str],
    *,
    verb: str = "install",
    options: tuple[str, ...] = (),
) -> str:
    """``helm upgrade --install`` (or ``install``) of ``chart`` as release
    :data:`RELEASE`, waiting until every workload is ready; ``options`` are helm's."""
    args = ["upgrade", "--install", *options] if verb == "upgrade" else ["install", *options]
    return helm.checked(
        *args,
        RELEASE,
        *chart.args(),
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--wait",
        "--timeout",
        INSTALL_TIMEOUT,
        *as_sets(values),
        timeout=600,
    )


def apply_chart_crds(helm: Helm, plane: ControlPlane, chart: ChartSource) -> None:
    """The first step of an upgrade, as the chart's README documents it: ``helm show
    crds`` of the new chart piped to ``kubectl apply --server-side --force-conflicts``
    (``helm upgrade`` never installs or changes a CRD)."""
    shown = helm.checked("show", "crds", *chart.args())
    applied = subprocess.run(
        [
            str(plane.binaries.kubectl),
            "--kubeconfig",
            str(plane.kubeconfig_path),
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "-",
        ],
        input=shown,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if applied.returncode != 0:
        raise DevEnvError(f"kubectl apply of the chart's CRDs failed: {applied.stderr.strip()}")
