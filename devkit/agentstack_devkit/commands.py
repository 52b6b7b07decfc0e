"""The ``agentstack dev`` subcommands: thin drivers over the dev kit's building blocks.

Each command returns a process exit code and prints what a person needs next (paths,
commands to try); the building blocks themselves stay silent apart from build progress.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import yaml

from agentstack_core.keys import StackKeys, StackRef
from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.helm import (
    API_SERVICE,
    REDIS_SERVICE,
    RELEASE,
    RELEASE_NAMESPACE,
    Helm,
    dev_values,
    install_dev_release,
    redis_password,
)
from agentstack_devkit.image import project_image
from agentstack_devkit.mcpserver import ToolServer
from agentstack_devkit.node import NodeCluster, node_binaries
from agentstack_devkit.processes import (
    LOOPBACK,
    DevEnvError,
    ManagedProcess,
    http_ok,
    wait_until,
)
from agentstack_devkit.redisserver import RedisServer
from agentstack_devkit.release import (
    Signer,
    Target,
    describe,
    package_version,
    publish,
    publish_dev,
)
from agentstack_devkit.toolchain import (
    controlplane_binaries,
    find_repo_root,
    helm_binary,
    jaeger_binary,
    release_tool,
)

_WATCH_INTERVAL = 1.0


def state_dir() -> Path:
    """``.agentstack/dev`` of the checkout (gitignored): kubeconfig and endpoints live here."""
    explicit = os.environ.get("AGENTSTACK_STATE_DIR")
    return Path(explicit) if explicit else find_repo_root() / ".agentstack" / "dev"


def _say(message: str) -> None:
    print(message, flush=True)


def image() -> int:
    """Build (or find) the project's image; print its name for podman, buildah, helm."""
    try:
        built = project_image()
    except DevEnvError as exc:
        print(f"agentstack dev image: {exc}", file=sys.stderr)
        return 1
    _say(built.name)
    return 0


def build() -> int:
    """Build (or find in the cache) every binary the dev environment and tests use."""
    try:
        binaries = controlplane_binaries()
        helm = helm_binary()
        node = node_binaries(find_repo_root())
        jaeger = jaeger_binary()
        registry = release_tool("registry")
    except DevEnvError as exc:
        print(f"agentstack dev build: {exc}", file=sys.stderr)
        return 1
    paths = (
        binaries.etcd,
        binaries.kube_apiserver,
        binaries.kube_controller_manager,
        binaries.kubectl,
        helm,
        node.kubelet,
        node.kube_proxy,
        node.kube_scheduler,
        node.pause,
        node.coredns,
        jaeger,
        registry,
    )
    for path in paths:
        _say(str(path))
    for directory in sorted({path.parent for path in paths}):
        info = json.loads((directory / "BUILDINFO.json").read_text())
        _say(f"# {directory.name}: built in {info['build_seconds']}s with {info['go']}")
    return 0


def release(
    *,
    registry: str,
    plain_http: bool,
    key: Path | None,
    keyless: bool,
    sbom_dir: Path | None,
    expect_version: str | None,
) -> int:
    """Publish the package's version to ``registry``: the image and the chart pinning it
    by digest, optionally an SBOM and cosign signatures; prints what it pushed as JSON."""
    version = package_version()
    if expect_version is not None and expect_version.removeprefix("v") != version:
        print(
            f"agentstack dev release: the tag {expect_version} does not name the package's "
            f"version {version} (pyproject.toml): bump the version or tag v{version}",
            file=sys.stderr,
        )
        return 2
    signer = Signer("keyless") if keyless else (None if key is None else Signer("key", key))
    try:
        published = publish(
            Target(registry, plain_http=plain_http),
            version=version,
            signer=signer,
            sbom_dir=sbom_dir,
        )
    except DevEnvError as exc:
        print(f"agentstack dev release: {exc}", file=sys.stderr)
        return 1
    _say(describe(published))
    return 0


class _InterruptedError(Exception):
    """SIGTERM or SIGINT arrived: leave the foreground loop and clean up."""


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise _InterruptedError(signal.Signals(signum).name)


Setup = Callable[[contextlib.ExitStack], tuple[str, list[ManagedProcess]]]
"""Starts the parts (registering how to stop each on the stack); returns the banner to
print and the processes to watch."""


def _foreground(command: str, setup: Setup) -> int:
    """Run ``setup``'s parts until Ctrl-C, SIGTERM or a crash, then stop them all."""
    previous = {
        sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    with contextlib.ExitStack() as parts:
        # Registered first, so it runs last: a second Ctrl-C during clean-up aborts it,
        # and the kernel then kills the children (they run with PR_SET_PDEATHSIG).
        parts.callback(lambda: [signal.signal(sig, h) for sig, h in previous.items()])
        try:
            banner, processes = setup(parts)
            _say(banner + "\nPress Ctrl-C to stop.")
            while True:
                for process in processes:
                    process.check_alive()
                time.sleep(_WATCH_INTERVAL)
        except _InterruptedError:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            _say("stopping…")
            return 0
        except DevEnvError as exc:
            print(f"agentstack dev {command}: {exc}", file=sys.stderr)
            return 1


def _start_control_plane(
    parts: contextlib.ExitStack, *, data_dir: Path | None, port: int | None
) -> ControlPlane:
    kubeconfig = state_dir() / "kubeconfig"
    control_plane = ControlPlane(
        controlplane_binaries(), data_dir=data_dir, apiserver_port=port, kubeconfig_path=kubeconfig
    )
    parts.callback(kubeconfig.unlink, missing_ok=True)
    parts.callback(control_plane.stop)
    control_plane.start()
    _link_kubectl(control_plane)
    return control_plane


def _link_kubectl(plane: ControlPlane) -> None:
    link = kubectl_link()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(plane.binaries.kubectl)


def kubectl_link() -> Path:
    """``.agentstack/dev/bin/kubectl``: the built kubectl, under a short, stable path."""
    return state_dir() / "bin" / "kubectl"


def _relative(path: Path) -> str:
    """``path`` relative to the current directory when it is below it (shorter to type)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def cluster(*, data_dir: Path | None, port: int | None) -> int:
    """Run a local control plane in the foreground until Ctrl-C or SIGTERM."""

    def setup(parts: contextlib.ExitStack) -> tuple[str, list[ManagedProcess]]:
        started = time.monotonic()
        plane = _start_control_plane(parts, data_dir=data_dir, port=port)
        binaries = plane.binaries
        banner = (
            f"Kubernetes {binaries.kubernetes_version} control plane ready at "
            f"{plane.url} in {time.monotonic() - started:.1f}s "
            f"(etcd {binaries.etcd_version}, kube-apiserver, kube-controller-manager)\n"
            f"kubeconfig: {plane.kubeconfig_path}\n"
            f"data:       {plane.data_dir}"
            f"{'' if data_dir else ' (temporary, removed on exit)'}\n"
            f"logs:       {plane.logs_dir}\n"
            f"try:        {_relative(kubectl_link())} --kubeconfig "
            f"{_relative(plane.kubeconfig_path)} get ns"
        )
        return banner, list(plane.processes)

    return _foreground("cluster", setup)


EXAMPLE = "examples/01-scripted-team.yaml"
EXAMPLE_STACK = "release-notes"
TOOL_STACK = "tool-demo"


def _tool_stack(url: str) -> dict[str, object]:
    """The offline team with an MCP server: its builder calls ``kb/lookup``."""
    return {
        "apiVersion": "agentstack.dev/v1alpha1",
        "kind": "AgentStack",
        "metadata": {"name": TOOL_STACK, "namespace": "default"},
        "spec": {
            "goal": "Write a short guide to Redis streams, checked against the knowledge base.",
            "tickIntervalSeconds": 10,
            "tools": {"servers": [{"name": "kb", "url": url, "allowedTools": ["lookup"]}]},
        },
    }


def _groq_stack(openai: bool) -> dict[str, object]:
    """A stack on Groq (with OpenAI fallback when that key is there too)."""
    providers: dict[str, object] = {
        "groq": {"secretRef": {"name": "llm-keys", "key": "GROQ_API_KEY"}}
    }
    llm: dict[str, object] = {
        "model": {"provider": "groq", "name": "llama-3.3-70b-versatile"},
        "providers": providers,
    }
    if openai:
        providers["openai"] = {"secretRef": {"name": "llm-keys", "key": "OPENAI_API_KEY"}}
        llm["fallbackModels"] = [{"provider": "openai", "name": "gpt-4o-mini"}]
    return {
        "apiVersion": "agentstack.dev/v1alpha1",
        "kind": "AgentStack",
        "metadata": {"name": "groq-team", "namespace": "default"},
        "spec": {
            "goal": "Write a one-page guide to running LLM agent teams on Kubernetes.",
            "tickIntervalSeconds": 30,
            "budget": {"maxTokens": 200000},
            "llm": llm,
        },
    }


def _apply_live_examples(plane: ControlPlane) -> list[str]:
    """With GROQ_API_KEY set, a Secret from the environment and a stack that uses it."""
    keys = {
        name: os.environ[name]
        for name in ("GROQ_API_KEY", "OPENAI_API_KEY")
        if os.environ.get(name)
    }
    if "GROQ_API_KEY" not in keys:
        return []
    from kubernetes import client, config

    api = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(plane.kubeconfig_path)
    )
    with api:
        client.CoreV1Api(api).create_namespaced_secret(
            "default",
            client.V1Secret(metadata=client.V1ObjectMeta(name="llm-keys"), string_data=keys),
        )
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "agentstack.dev",
            "v1alpha1",
            "default",
            "agentstacks",
            _groq_stack(openai="OPENAI_API_KEY" in keys),
        )
    return ["groq-team"]


def up(*, data_dir: Path | None, port: int | None, processes: bool = False) -> int:
    """The main job. On a real node by default; ``processes``: the fast process-only
    mode (no node, no image; the product runs as local processes)."""
    if processes:
        return _up_processes(data_dir=data_dir, port=port)
    return _up_node(data_dir=data_dir, port=port)


def _up_node(*, data_dir: Path | None, port: int | None) -> int:
    """Image, cluster with its node, the chart installed by helm, the example stack."""

    def setup(parts: contextlib.ExitStack) -> tuple[str, list[ManagedProcess]]:
        started = time.monotonic()
        repo = find_repo_root()
        kubeconfig = state_dir() / "kubeconfig"
        cluster = NodeCluster(
            data_dir=data_dir,
            apiserver_port=port,
            kubeconfig_path=kubeconfig,
            repo_root=repo,
        )
        parts.callback(kubeconfig.unlink, missing_ok=True)
        parts.callback(cluster.stop)
        cluster.start()
        plane, node = cluster.plane, cluster.node
        _link_kubectl(plane)
        dev = publish_dev(cluster.registry.target, repo)
        node.prune_images(dev.images)
        helm = Helm(state_dir() / "helm", plane.kubeconfig_path)
        install_dev_release(
            helm, dev.published.source(), dev_values(dev.redis_image), verb="upgrade"
        )
        applied = plane.kubectl("apply", "-n", "default", "-f", str(repo / EXAMPLE))
        if applied.returncode != 0:
            raise DevEnvError(f"applying {EXAMPLE} failed: {applied.stderr.strip()}")
        api_forward, api_port = plane.port_forward(
            RELEASE_NAMESPACE, f"svc/{API_SERVICE}", 8080, name="port-forward-api"
        )
        parts.callback(api_forward.stop)
        redis_forward, redis_port = plane.port_forward(
            RELEASE_NAMESPACE, f"svc/{REDIS_SERVICE}", 6379, name="port-forward-redis"
        )
        parts.callback(redis_forward.stop)
        api_url = f"http://{LOOPBACK}:{api_port}"
        redis_url = f"redis://:{redis_password(plane)}@{LOOPBACK}:{redis_port}/0"
        wait_until(lambda: http_ok(f"{api_url}/readyz"), timeout=60, what="the live page")
        endpoints = state_dir() / "endpoints.env"
        parts.callback(endpoints.unlink, missing_ok=True)
        endpoints.touch()
        endpoints.chmod(0o600)  # before the write: it holds the in-chart Redis's password
        endpoints.write_text(
            f"KUBECONFIG={plane.kubeconfig_path}\n"
            f"KUBECTL={kubectl_link()}\n"
            f"REDIS_URL={redis_url}\n"
            f"AGENTSTACK_API_URL={api_url}\n"
            f"AGENTSTACK_RELEASE_NAMESPACE={RELEASE_NAMESPACE}\n"
        )
        kubectl = f"{_relative(kubectl_link())} --kubeconfig {_relative(plane.kubeconfig_path)}"
        banner = (
            f"agentstack is up in {time.monotonic() - started:.1f}s: Kubernetes "
            f"{plane.binaries.kubernetes_version} at {plane.url} with the node "
            f"{node.name}; the chart {dev.published.chart} {dev.published.version} "
            f"installed by helm as release {RELEASE} in {RELEASE_NAMESPACE} (image "
            f"{dev.published.image}, in-chart Redis); stack: {EXAMPLE_STACK}\n"
            f"registry:  {cluster.registry.host} (plain HTTP, on loopback)\n"
            f"endpoints: {endpoints}  (source it: set -a; . {endpoints}; set +a)\n"
            f"logs:      {plane.logs_dir} (pods: {kubectl} logs -n {RELEASE_NAMESPACE} …)\n"
            f"live page: {api_url}/?stack=default/{EXAMPLE_STACK}   (API: {api_url}/docs; "
            "no authentication: development only, on loopback)\n\n"
            "Try:\n"
            f"  {kubectl} get pods -A\n"
            f"  {kubectl} get ags -w\n"
            f"  {kubectl} patch ags {EXAMPLE_STACK} --type merge "
            """-p '{"spec":{"executionState":"Paused"}}'\n"""
            f"  {kubectl} get events --field-selector involvedObject.name={EXAMPLE_STACK}"
        )
        return banner, [*cluster.processes, api_forward, redis_forward]

    return _foreground("up", setup)


def _up_processes(*, data_dir: Path | None, port: int | None) -> int:
    """Control plane, Redis, operator, runner, read API as local processes; example stack."""

    def setup(parts: contextlib.ExitStack) -> tuple[str, list[ManagedProcess]]:
        started = time.monotonic()
        repo = find_repo_root()
        plane = _start_control_plane(parts, data_dir=data_dir, port=port)
        redis = RedisServer(data_dir=plane.data_dir / "redis")
        parts.callback(redis.stop)
        redis.start()
        plane.apply_project_crds(repo)
        fleet = Fleet(
            kubeconfig=plane.kubeconfig_path,
            redis_url=redis.url,
            logs_dir=plane.logs_dir,
            extra_env={"AGENTSTACK_OPERATOR_NAMESPACE": "default"},
        )
        parts.callback(fleet.stop)
        _operator, operator_port = fleet.operator()
        _runner, runner_port = fleet.runner(AGENTSTACK_RUNNER_CREDENTIALS="kubernetes")
        _api, api_port = fleet.api()
        api_url = f"http://127.0.0.1:{api_port}"
        applied = plane.kubectl("apply", "-n", "default", "-f", str(repo / EXAMPLE))
        if applied.returncode != 0:
            raise DevEnvError(f"applying {EXAMPLE} failed: {applied.stderr.strip()}")
        tools = ToolServer(plane.data_dir / "mcp")
        parts.callback(tools.stop)
        tools.start()
        manifest = plane.data_dir / "tool-demo.yaml"
        manifest.write_text(yaml.safe_dump(_tool_stack(tools.url)))
        applied = plane.kubectl("apply", "-f", str(manifest))
        if applied.returncode != 0:
            raise DevEnvError(f"applying {TOOL_STACK} failed: {applied.stderr.strip()}")
        live = _apply_live_examples(plane)
        stacks = [EXAMPLE_STACK, TOOL_STACK, *live]
        endpoints = state_dir() / "endpoints.env"
        parts.callback(endpoints.unlink, missing_ok=True)
        endpoints.write_text(
            f"KUBECONFIG={plane.kubeconfig_path}\n"
            f"KUBECTL={kubectl_link()}\n"
            f"REDIS_URL={redis.url}\n"
            f"AGENTSTACK_OPERATOR_METRICS_URL=http://127.0.0.1:{operator_port}/metrics\n"
            f"AGENTSTACK_RUNNER_METRICS_URL=http://127.0.0.1:{runner_port}/metrics\n"
            f"AGENTSTACK_API_URL={api_url}\n"
        )
        kubectl = f"{_relative(kubectl_link())} --kubeconfig {_relative(plane.kubeconfig_path)}"
        trace = StackKeys(StackRef("default", EXAMPLE_STACK)).trace
        banner = (
            f"agentstack is up in {time.monotonic() - started:.1f}s: Kubernetes "
            f"{plane.binaries.kubernetes_version} at {plane.url}, Redis at {redis.url}, "
            f"operator, runner and read API running; stacks: {', '.join(stacks)}"
            f"{'' if live else ' (offline: set GROQ_API_KEY for a live one)'}; "
            f"{TOOL_STACK}'s builder calls kb/lookup on a local MCP server ({tools.url})\n"
            f"endpoints: {endpoints}  (source it: set -a; . {endpoints}; set +a)\n"
            f"logs:      {plane.logs_dir}\n"
            f"live page: {api_url}/?stack=default/{EXAMPLE_STACK}   (API: {api_url}/docs)\n\n"
            "Try:\n"
            f"  {kubectl} get ags -w\n"
            f"  {kubectl} patch ags {EXAMPLE_STACK} --type merge "
            """-p '{"spec":{"executionState":"Paused"}}'\n"""
            f"  {kubectl} get events --field-selector involvedObject.name={EXAMPLE_STACK}\n"
            f"  curl -N {api_url}/api/v1/namespaces/default/stacks/{EXAMPLE_STACK}/traces/stream\n"
            f"  redis-cli -p {redis.port} XREVRANGE '{trace}' + - COUNT 4   # the raw trace"
        )
        return banner, [*plane.processes, redis.process, *fleet.processes, tools.process]

    return _foreground("up", setup)
