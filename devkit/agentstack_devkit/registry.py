"""A real OCI registry on loopback: the CNCF ``distribution`` registry, built here.

Releases are pushed to it (:mod:`agentstack_devkit.release`), the dev node's containerd
pulls from it through its registry configuration (``hosts.toml``), and helm installs the
chart from it (``oci://``) — the path a platform team takes with a public registry, with
nothing imported by hand. It speaks plain HTTP on loopback only, so every client is told
so explicitly (podman ``--tls-verify=false``, helm ``--plain-http``, containerd's
``hosts.toml``, cosign ``--allow-http-registry``).

Its storage is a directory: ``agentstack dev up`` keeps one under the cache so that a
layer pushed once is not pushed again (the image's base layer is most of its size);
tests use a temporary one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from agentstack_devkit.processes import LOOPBACK, ManagedProcess, Service, pick_port
from agentstack_devkit.release import Target
from agentstack_devkit.toolchain import cache_root, release_tool

READY_TIMEOUT = 30.0
DEV_PORT = 5100
"""The dev registry's fixed port: the address is part of the image references a dev
release installs, so a fixed one keeps them stable across ``agentstack dev up`` runs."""


def dev_registry_dir() -> Path:
    """Where ``agentstack dev up`` keeps its registry's blobs between runs."""
    return cache_root() / "registry"


class Registry(Service):
    """One ``registry serve`` process on ``127.0.0.1:<port>`` over ``storage``."""

    def __init__(self, *, port: int | None = None, storage: Path | None = None) -> None:
        self._requested_port = port
        self.port = 0
        self._owns_storage = storage is None
        self.storage = (
            Path(tempfile.mkdtemp(prefix="agentstack-registry-")) if storage is None else storage
        )
        self._process: ManagedProcess | None = None

    @property
    def host(self) -> str:
        """``host:port``: the registry part of an image reference."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def target(self) -> Target:
        """Where a release to this registry goes (plain HTTP on loopback)."""
        return Target(self.host, plain_http=True)

    @property
    def processes(self) -> tuple[ManagedProcess, ...]:
        return () if self._process is None else (self._process,)

    def _config(self) -> dict[str, object]:
        return {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage / "data")},
                # Pushing a tag again (a dev release) must replace it.
                "delete": {"enabled": True},
            },
            "http": {"addr": self.host, "debug": {"addr": ""}},
            "health": {"storagedriver": {"enabled": False}},
        }

    def _start(self) -> None:
        binary = release_tool("registry")
        self.port = pick_port(self._requested_port, purpose="the OCI registry")
        self.storage.mkdir(parents=True, exist_ok=True)
        config = self.storage / "config.json"
        # The registry reads YAML, of which JSON is a subset.
        config.write_text(json.dumps(self._config(), indent=2))
        self._process = ManagedProcess(
            "registry",
            [str(binary), "serve", str(config)],
            log_path=self.storage / "registry.log",
        )
        self._process.start()
        self._process.wait_ready(self._serving, timeout=READY_TIMEOUT, what="serving /v2/")

    def _serving(self) -> bool | None:
        try:
            with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as answer:
                return True if answer.status == 200 else None
        except (urllib.error.URLError, OSError):
            return None

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest the registry serves for ``repository:reference`` (``None``: absent)."""
        request = urllib.request.Request(
            f"http://{self.host}/v2/{repository}/manifests/{reference}",
            method="HEAD",
            headers={
                "Accept": ", ".join(
                    (
                        "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.oci.image.index.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json",
                    )
                )
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                digest: str | None = answer.headers.get("Docker-Content-Digest")
                return digest
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._owns_storage:
            shutil.rmtree(self.storage, ignore_errors=True)
