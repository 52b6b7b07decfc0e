"""Build the real Kubernetes binaries from the Go module proxy, once, into a cache.

The versions live in one place: the Go wrapper modules under ``hack/`` —
``hack/controlplane/go.mod`` (Kubernetes, whose go.mod in turn fixes etcd),
``hack/helm/go.mod`` and ``hack/jaeger/go.mod``. This module reads the pins back from
those files, so a version bump is a change to one ``go.mod`` (plus ``go mod tidy``) and
nothing else.

Binaries are built with ``go build`` (``go install pkg@version`` refuses modules with
replace directives, which k8s.io/kubernetes and etcd both have) into
``~/.cache/agentstack/bin/<name>-<versions>-<digest>/``, where the digest covers the
wrapper module's files, so an edit of the wrapper builds afresh and an unchanged one
is reused. A file lock keeps concurrent callers (two test sessions, a test session and
``agentstack dev``) from building the same thing twice; a build goes to a temporary
directory and is renamed into place only when complete.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agentstack_devkit.processes import DevEnvError

BUILD_TIMEOUT_SECONDS = 3600.0
"""A cold build of the control plane takes minutes on two cores; an hour means stuck."""

_HEARTBEAT_SECONDS = 30.0


def cache_root() -> Path:
    """Where built binaries are cached: ``$AGENTSTACK_CACHE_DIR`` or ``~/.cache/agentstack``."""
    explicit = os.environ.get("AGENTSTACK_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "agentstack"


def find_repo_root(start: Path | None = None) -> Path:
    """Locate the source checkout that holds ``hack/`` (``$AGENTSTACK_REPO`` wins).

    The dev environment builds from the wrapper modules in the checkout, so it needs
    one: an editable install finds it from this file, a plain install from the
    current directory.
    """
    explicit = os.environ.get("AGENTSTACK_REPO")
    if explicit:
        root = Path(explicit)
        if not (root / "hack" / "controlplane" / "go.mod").is_file():
            raise DevEnvError(f"AGENTSTACK_REPO={explicit} has no hack/controlplane/go.mod")
        return root
    candidates = [Path(__file__).resolve(), (start or Path.cwd()).resolve()]
    for candidate in candidates:
        for directory in (candidate, *candidate.parents):
            if (directory / "hack" / "controlplane" / "go.mod").is_file():
                return directory
    raise DevEnvError(
        "the development environment needs the agentstack-operator source checkout "
        "(its hack/ directory holds the control-plane build): run from inside the "
        "checkout or set AGENTSTACK_REPO"
    )


def _module_pin(go_mod: Path, module: str) -> str:
    """The version ``go_mod`` requires of ``module`` (direct or indirect)."""
    pattern = re.compile(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", re.MULTILINE)
    match = pattern.search(go_mod.read_text())
    if match is None:
        raise DevEnvError(f"{go_mod} does not require {module}")
    return match.group(1)


def _digest(module_dir: Path) -> str:
    """Hash of the wrapper module's sources: an edit means a new cache entry."""
    sha = hashlib.sha256()
    for path in sorted(module_dir.rglob("*")):
        if path.is_file() and (path.suffix == ".go" or path.name in {"go.mod", "go.sum"}):
            sha.update(path.relative_to(module_dir).as_posix().encode())
            sha.update(b"\0")
            sha.update(path.read_bytes())
    return sha.hexdigest()[:12]


@dataclass(frozen=True)
class BuildSpec:
    """What to build from one wrapper module, and how to stamp its version."""

    name: str
    module_dir: Path
    packages: tuple[str, ...]
    binaries: tuple[str, ...]
    versions: dict[str, str]
    ldflags: tuple[str, ...]

    @property
    def cache_key(self) -> str:
        pins = "-".join(f"{name}-{version}" for name, version in self.versions.items())
        return f"{pins}-{_digest(self.module_dir)}"

    def describe(self) -> str:
        pins = ", ".join(f"{name} {version}" for name, version in self.versions.items())
        return f"{', '.join(self.binaries)} ({pins})"


def _kubernetes_pins(module_dir: Path) -> tuple[dict[str, str], tuple[str, ...]]:
    """The release pins of the wrapper module and the ldflags that stamp them."""
    go_mod = module_dir / "go.mod"
    kubernetes = _module_pin(go_mod, "k8s.io/kubernetes")
    etcd = _module_pin(go_mod, "go.etcd.io/etcd/server/v3")
    major, minor = kubernetes.lstrip("v").split(".")[:2]
    version_pkg = "k8s.io/component-base/version"
    ldflags = (
        f"-X {version_pkg}.gitVersion={kubernetes}",
        f"-X {version_pkg}.gitMajor={major}",
        f"-X {version_pkg}.gitMinor={minor}",
        f"-X {version_pkg}.gitTreeState=clean",
    )
    return {"kubernetes": kubernetes, "etcd": etcd}, ldflags


def controlplane_spec(repo_root: Path) -> BuildSpec:
    """etcd, kube-apiserver, kube-controller-manager and kubectl of one release."""
    module_dir = repo_root / "hack" / "controlplane"
    versions, ldflags = _kubernetes_pins(module_dir)
    return BuildSpec(
        name="controlplane",
        module_dir=module_dir,
        packages=(
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kubectl",
            "./cmd/etcd",
        ),
        binaries=("kube-apiserver", "kube-controller-manager", "kubectl", "etcd"),
        versions=versions,
        ldflags=ldflags,
    )


def node_spec(repo_root: Path) -> BuildSpec:
    """kubelet, kube-proxy, kube-scheduler and the pause program, of the same release.

    Built from the control plane's wrapper module, so a node can never drift from its
    API server's version; a separate spec so that the process-only environment (and the
    tests that need no node) never waits for the node's build.
    """
    module_dir = repo_root / "hack" / "controlplane"
    versions, ldflags = _kubernetes_pins(module_dir)
    return BuildSpec(
        name="node",
        module_dir=module_dir,
        packages=(
            "k8s.io/kubernetes/cmd/kubelet",
            "k8s.io/kubernetes/cmd/kube-proxy",
            "k8s.io/kubernetes/cmd/kube-scheduler",
            "./cmd/pause",
        ),
        binaries=("kubelet", "kube-proxy", "kube-scheduler", "pause"),
        versions={"kubernetes": versions["kubernetes"]},
        ldflags=ldflags,
    )


def coredns_spec(repo_root: Path) -> BuildSpec:
    """CoreDNS, the cluster's DNS, pinned by ``hack/coredns/go.mod``'s tool directive."""
    module_dir = repo_root / "hack" / "coredns"
    coredns = _module_pin(module_dir / "go.mod", "github.com/coredns/coredns")
    return BuildSpec(
        name="coredns",
        module_dir=module_dir,
        packages=("github.com/coredns/coredns",),
        binaries=("coredns",),
        versions={"coredns": coredns},
        ldflags=(),
    )


def helm_spec(repo_root: Path) -> BuildSpec:
    """The helm CLI of the pinned release."""
    module_dir = repo_root / "hack" / "helm"
    helm = _module_pin(module_dir / "go.mod", "helm.sh/helm/v4")
    return BuildSpec(
        name="helm",
        module_dir=module_dir,
        packages=("helm.sh/helm/v4/cmd/helm",),
        binaries=("helm",),
        versions={"helm": helm},
        ldflags=(
            f"-X helm.sh/helm/v4/internal/version.version={helm}",
            "-X helm.sh/helm/v4/internal/version.gitTreeState=clean",
        ),
    )


def jaeger_spec(repo_root: Path) -> BuildSpec:
    """Jaeger v2 (OTLP receiver, in-memory store, query API) of the pinned release."""
    module_dir = repo_root / "hack" / "jaeger"
    jaeger = _module_pin(module_dir / "go.mod", "github.com/jaegertracing/jaeger")
    return BuildSpec(
        name="jaeger",
        module_dir=module_dir,
        packages=("github.com/jaegertracing/jaeger/cmd/jaeger",),
        binaries=("jaeger",),
        versions={"jaeger": jaeger},
        ldflags=(f"-X github.com/jaegertracing/jaeger/internal/version.latestVersion={jaeger}",),
    )


@dataclass(frozen=True)
class ReleaseTool:
    """A single-binary tool of the release path, pinned by its own wrapper module."""

    name: str
    """The wrapper module's directory under ``hack/`` and the binary's name."""
    module: str
    package: str
    version_variable: str | None = None
    """The package variable ``-X`` stamps with the pinned version (for ``--version``)."""


RELEASE_TOOLS = {
    tool.name: tool
    for tool in (
        ReleaseTool(
            "registry",
            "github.com/distribution/distribution/v3",
            "github.com/distribution/distribution/v3/cmd/registry",
            "github.com/distribution/distribution/v3/version.version",
        ),
        ReleaseTool(
            "cosign",
            "github.com/sigstore/cosign/v2",
            "github.com/sigstore/cosign/v2/cmd/cosign",
            "sigs.k8s.io/release-utils/version.gitVersion",
        ),
        ReleaseTool("syft", "github.com/anchore/syft", "github.com/anchore/syft/cmd/syft"),
        ReleaseTool(
            "actionlint",
            "github.com/rhysd/actionlint",
            "github.com/rhysd/actionlint/cmd/actionlint",
            "github.com/rhysd/actionlint.version",
        ),
    )
}
"""The registry (local releases, ``make dev``), cosign and syft (signature and SBOM),
actionlint (the release workflow's check)."""


def release_tool_spec(repo_root: Path, name: str) -> BuildSpec:
    """The build of one :data:`RELEASE_TOOLS` entry, at its wrapper module's pin."""
    tool = RELEASE_TOOLS[name]
    module_dir = repo_root / "hack" / tool.name
    version = _module_pin(module_dir / "go.mod", tool.module)
    stamp = (f"-X {tool.version_variable}={version}",) if tool.version_variable else ()
    return BuildSpec(
        name=tool.name,
        module_dir=module_dir,
        packages=(tool.package,),
        binaries=(tool.name,),
        versions={tool.name: version},
        ldflags=stamp,
    )


def release_tool(name: str, repo_root: Path | None = None) -> Path:
    """Build (once) and return one of :data:`RELEASE_TOOLS`."""
    return ensure_built(release_tool_spec(repo_root or find_repo_root(), name)) / name


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _say(message: str) -> None:
    print(f"agentstack: {message}", file=sys.stderr, flush=True)


def ensure_built(spec: BuildSpec, cache: Path | None = None) -> Path:
    """Return the directory holding ``spec``'s binaries, building them if needed."""
    bin_root = (cache or cache_root()) / "bin"
    target = bin_root / f"{spec.name}-{spec.cache_key}"
    if _complete(target, spec):
        return target
    with _file_lock(bin_root / f"{spec.name}-{spec.cache_key}.lock"):
        if _complete(target, spec):  # another process built it while we waited
            return target
        _build(spec, target)
    return target


def _complete(target: Path, spec: BuildSpec) -> bool:
    return (target / "BUILDINFO.json").is_file() and all(
        (target / binary).is_file() for binary in spec.binaries
    )


def _build(spec: BuildSpec, target: Path) -> None:
    go = shutil.which("go")
    if go is None:
        raise DevEnvError(
            f"building {spec.describe()} needs the Go toolchain (go 1.24 or newer) on PATH"
        )
    _say(
        f"building {spec.describe()} from the Go module proxy into {target}. "
        "The first build takes several minutes; later runs reuse it."
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    command = [
        go,
        "build",
        "-trimpath",
        "-ldflags",
        " ".join(("-s", "-w", *spec.ldflags)),
        "-o",
        f"{staging}{os.sep}",
        *spec.packages,
    ]
    env = dict(os.environ, CGO_ENABLED="0")
    # A checkout's go.mod/go.sum are complete; never let the build rewrite them.
    env["GOFLAGS"] = " ".join(
        flag for flag in (env.get("GOFLAGS", ""), "-mod=readonly", "-buildvcs=false") if flag
    )
    started = time.monotonic()
    done = threading.Event()
    heartbeat = threading.Thread(
        target=_heartbeat, args=(spec, started, done), name="build-heartbeat", daemon=True
    )
    heartbeat.start()
    try:
        result = subprocess.run(
            command,
            cwd=spec.module_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DevEnvError(
            f"building {spec.describe()} did not finish within {BUILD_TIMEOUT_SECONDS:.0f}s "
            f"(command: {' '.join(command)} in {spec.module_dir})"
        ) from exc
    finally:
        done.set()
        heartbeat.join()
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        output = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise DevEnvError(
            f"building {spec.describe()} failed with exit code {result.returncode} "
            f"(command: {' '.join(command)} in {spec.module_dir}):\n{output}"
        )
    sizes = {binary: (staging / binary).stat().st_size for binary in spec.binaries}
    info = {
        "versions": spec.versions,
        "build_seconds": round(elapsed, 1),
        "sizes_bytes": sizes,
        "go": subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, check=False
        ).stdout.strip(),
    }
    (staging / "BUILDINFO.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    _say(f"built {spec.describe()} in {elapsed:.0f}s")


def _heartbeat(spec: BuildSpec, started: float, done: threading.Event) -> None:
    while not done.wait(_HEARTBEAT_SECONDS):
        _say(f"still building {spec.name} ({time.monotonic() - started:.0f}s so far)")


@dataclass(frozen=True)
class Binaries:
    """Paths of the built tools, and the versions they were built at."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    kubernetes_version: str
    etcd_version: str


def controlplane_binaries(repo_root: Path | None = None) -> Binaries:
    """Build (once) and return etcd, kube-apiserver, kube-controller-manager, kubectl."""
    spec = controlplane_spec(repo_root or find_repo_root())
    directory = ensure_built(spec)
    return Binaries(
        etcd=directory / "etcd",
        kube_apiserver=directory / "kube-apiserver",
        kube_controller_manager=directory / "kube-controller-manager",
        kubectl=directory / "kubectl",
        kubernetes_version=spec.versions["kubernetes"],
        etcd_version=spec.versions["etcd"],
    )


def helm_binary(repo_root: Path | None = None) -> Path:
    """Build (once) and return the helm CLI."""
    return ensure_built(helm_spec(repo_root or find_repo_root())) / "helm"


def jaeger_binary(repo_root: Path | None = None) -> Path:
    """Build (once) and return the Jaeger v2 all-in-one binary."""
    return ensure_built(jaeger_spec(repo_root or find_repo_root())) / "jaeger"
