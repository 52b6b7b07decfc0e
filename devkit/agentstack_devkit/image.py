"""Build the project's container image here, with no registry and no Docker engine.

Two layers, each cached by a digest of its inputs, so a rebuild with nothing changed
takes seconds:

- the **base**: a minimal Debian (``debootstrap --variant=minbase``, the suite and the
  mirror this machine's apt uses) with Debian's own Python 3.11, imported into podman's
  store as ``localhost/agentstack-base:<digest>`` (the usual ``python:3.11-slim`` cannot
  be pulled here);
- the **project image**: the repository's own Dockerfile, built by ``buildah`` with
  ``BASE_IMAGE`` pointing at that base, as ``localhost/agentstack-operator:<digest>``
  (the digest covers the Dockerfile and every file ``.dockerignore`` lets into the
  build). pip inside the build needs this machine's pip configuration and CA bundle;
  they are mounted read-only for the build and never enter the image.

podman and buildah run with a containers.conf of this module's (``CONTAINERS_CONF``):
runc as the runtime and cgroupfs as the cgroup manager (crun refuses hybrid cgroups),
and no attempt to raise ulimits (this machine's root lacks ``CAP_SYS_RESOURCE``); and
a storage.conf (``CONTAINERS_STORAGE_CONF``) that keeps their images under the cache
directory, next to the built binaries, rather than in ``/var/lib/containers``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agentstack_devkit.processes import DevEnvError
from agentstack_devkit.toolchain import cache_root, find_repo_root

BASE_NAME = "localhost/agentstack-base"
IMAGE_NAME = "localhost/agentstack-operator"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "netbase", "passwd")
"""What the Dockerfile needs of its base: Python with venv, TLS roots, /etc/services,
and useradd for the image's numeric user."""
BUILD_TIMEOUT_SECONDS = 1800.0
HOST_PIP_FILES = ("/etc/pip.conf", "/etc/ssl/certs/ca-certificates.crt")

_CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


@dataclass(frozen=True)
class Image:
    name: str
    """``repository:tag`` in podman's local store."""
    built: bool
    """Built now (``False``: found in the cache)."""


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise DevEnvError(f"{name} is not installed: run `make setup` (Debian's {name} package)")
    return found


def _storage_conf() -> str:
    """Images live under the cache (with the built binaries: one directory to keep
    between CI runs); the run root, which must not outlive a boot, on /run."""
    return (
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{cache_root() / "containers" / "storage"}"\n'
        'runroot = "/run/agentstack/containers"\n'
    )


def _write_if_changed(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def containers_env() -> dict[str, str]:
    """The environment podman and buildah run with (their configuration files)."""
    return {
        **os.environ,
        "CONTAINERS_CONF": str(
            _write_if_changed(cache_root() / "containers.conf", _CONTAINERS_CONF)
        ),
        "CONTAINERS_STORAGE_CONF": str(
            _write_if_changed(cache_root() / "storage.conf", _storage_conf())
        ),
    }


def _run(argv: list[str], *, what: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        env=containers_env(),
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).decode(errors="replace")[-3000:]
        raise DevEnvError(f"{what} failed ({done.returncode}):\n{tail}")
    return done.stdout.decode(errors="replace")


def image_exists(name: str) -> bool:
    done = subprocess.run(
        [_tool("podman"), "image", "exists", name],
        env=containers_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode == 0


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 ``URIs:`` or a ``deb`` line)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        for line in path.read_text(errors="replace").splitlines():
            found = re.match(r"^\s*(?:URIs:|deb)\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s*", line)
            if found:
                return found.group(1)
    raise DevEnvError("no Debian mirror found in /etc/apt/sources.list(.d)")


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()[:16]


def base_image() -> Image:
    """The Debian base with Python, built once per suite, package list and mirror."""
    mirror = debian_mirror()
    name = (
        f"{BASE_NAME}:{_digest(SUITE.encode(), ' '.join(BASE_PACKAGES).encode(), mirror.encode())}"
    )
    if image_exists(name):
        return Image(name, built=False)
    _say(f"building the Debian base image {name} (debootstrap, about two minutes)")
    with tempfile.TemporaryDirectory(prefix="agentstack-rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        _run(
            [
                _tool("debootstrap"),
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                SUITE,
                str(rootfs),
                mirror,
            ],
            what="debootstrap",
        )
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / cache, ignore_errors=True)
        archive = subprocess.run(
            ["tar", "-C", str(rootfs), "-c", "."],
            capture_output=True,
            timeout=BUILD_TIMEOUT_SECONDS,
            check=True,
        ).stdout
        _run([_tool("podman"), "import", "-", name], what="podman import", stdin=archive)
    return Image(name, built=True)


def _context_files(repo: Path) -> list[Path]:
    """The files ``.dockerignore`` lets into the build (its ``!path`` lines)."""
    files: list[Path] = []
    for line in (repo / ".dockerignore").read_text().splitlines():
        if not line.startswith("!"):
            continue
        path = repo / line[1:].rstrip("/")
        if path.is_dir():
            files.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)
            )
        elif path.is_file():
            files.append(path)
    return files


def _host_pip_mounts() -> list[str]:
    """``-v`` options mounting this machine's package-index configuration and CA bundle
    read-only into a build (never into the image)."""
    return [arg for f in HOST_PIP_FILES if Path(f).is_file() for arg in ("-v", f"{f}:{f}:ro")]


def project_image(repo: Path | None = None) -> Image:
    """The project's image from its Dockerfile, on the local base; cached by content."""
    repo = repo or find_repo_root()
    base = base_image()
    parts = [base.name.encode(), (repo / "Dockerfile").read_bytes()]
    for path in _context_files(repo):
        parts += [str(path.relative_to(repo)).encode(), path.read_bytes()]
    name = f"{IMAGE_NAME}:{_digest(*parts)}"
    if image_exists(name):
        return Image(name, built=False)
    _say(f"building {name} from the Dockerfile (buildah)")
    _run(
        [
            _tool("buildah"),
            "bud",
            "--layers",
            "--build-arg",
            f"BASE_IMAGE={base.name}",
            *_host_pip_mounts(),
            "-t",
            name,
            "-f",
            str(repo / "Dockerfile"),
            str(repo),
        ],
        what="buildah bud",
    )
    _prune(keep=name)
    return Image(name, built=True)


def _prune(*, keep: str, newest: int = 3) -> None:
    """Remove older builds of the project image (each change of the code makes one),
    keeping the ``newest`` few; what is in use or shared stays."""
    listed = _run(
        [_tool("podman"), "images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_NAME],
        what="podman images",
    ).split()
    old = [name for name in listed if name != keep][newest - 1 :]
    for name in old:
        subprocess.run(
            [_tool("podman"), "rmi", name],
            env=containers_env(),
            capture_output=True,
            timeout=120,
            check=False,
        )


PAUSE_NAME = "localhost/agentstack-pause"
REDIS_NAME = "localhost/agentstack-redis"
_REDIS_CONTAINERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get -o Acquire::Check-Valid-Until=false update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \\
 && rm -rf /var/lib/apt/lists/*
USER 999:999
CMD ["redis-server"]
"""


def redis_image() -> Image:
    """Debian's redis-server on the local base: the chart's in-chart Redis on the dev
    node, where the usual ``redis`` image cannot be pulled."""
    base = base_image()
    name = f"{REDIS_NAME}:{_digest(base.name.encode(), _REDIS_CONTAINERFILE.encode())}"
    if image_exists(name):
        return Image(name, built=False)
    _say(f"building {name} (Debian's redis-server on the local base)")
    with tempfile.TemporaryDirectory(prefix="agentstack-redis-image-") as context:
        containerfile = Path(context) / "Containerfile"
        containerfile.write_text(_REDIS_CONTAINERFILE)
        _run(
            [
                _tool("buildah"),
                "bud",
                "--build-arg",
                f"BASE_IMAGE={base.name}",
                *_host_pip_mounts(),
                "-t",
                name,
                "-f",
                str(containerfile),
                context,
            ],
            what="buildah bud (redis)",
        )
    return Image(name, built=True)


def pause_image(binary: Path) -> Image:
    """The node's sandbox image: the static ``pause`` program alone, from scratch.

    Cached by the binary's content, so a rebuilt wrapper module with the same program
    reuses it.
    """
    name = f"{PAUSE_NAME}:{_digest(binary.read_bytes())}"
    if image_exists(name):
        return Image(name, built=False)
    buildah = _tool("buildah")
    container = _run([buildah, "from", "scratch"], what="buildah from scratch").strip()
    try:
        _run([buildah, "copy", "--chmod", "0755", container, str(binary), "/pause"], what="copy")
        _run(
            [buildah, "config", "--entrypoint", '["/pause"]', "--user", "65535:65535", container],
            what="buildah config",
        )
        _run([buildah, "commit", "--quiet", container, name], what="buildah commit")
    finally:
        subprocess.run(
            [buildah, "rm", container], env=containers_env(), capture_output=True, check=False
        )
    return Image(name, built=True)


def save_oci_archive(name: str, target: Path) -> None:
    """Write ``name`` as an OCI archive (what ``ctr images import`` reads)."""
    target.unlink(missing_ok=True)
    _run(
        [_tool("podman"), "save", "--format", "oci-archive", "-o", str(target), name],
        what=f"podman save {name}",
    )


def _say(message: str) -> None:
    print(f"agentstack: {message}", file=sys.stderr, flush=True)
