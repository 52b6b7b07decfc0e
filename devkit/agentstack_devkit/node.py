"""A real node for the dev cluster: containerd, kubelet, kube-proxy, scheduler, CoreDNS.

Pods run here for real, on this machine, with no registry and no traffic leaving it:

- **network**: a Linux bridge (:data:`BRIDGE`) whose gateway address is the node's
  address; the API server binds there so pods reach it through the ``kubernetes``
  Service. The bridge CNI plugin attaches pods to it (IPs from :data:`POD_CIDR`, state
  under the data directory). A chain of ours in ``FORWARD`` drops whatever a pod sends
  off the bridge, and an ``unreachable`` route covers the Service range so a ClusterIP
  without a kube-proxy rule fails at once instead of following the default route.
- **runtime**: Debian's containerd with runc, its socket, state and network namespaces
  under the data directory, its image store under the cache (images survive restarts);
  ``restrict_oom_score_adj`` because this machine's root lacks ``CAP_SYS_RESOURCE``;
  a locally built pause image as the sandbox image. Images are pulled, as on any node,
  from the cluster's OCI registry on loopback (:mod:`agentstack_devkit.registry`), which
  containerd reaches through its registry configuration (a ``hosts.toml`` saying it
  speaks plain HTTP); nothing is imported by hand.
- **node processes**: kubelet (cgroupfs driver on cgroup v1, pods under the
  :data:`CGROUP_ROOT` cgroup so they can all be found and killed), kube-proxy in
  iptables mode, kube-scheduler, and CoreDNS on the host at the gateway address (its
  ``kubernetes`` plugin only: names outside the cluster do not resolve).

Host-wide pieces (the bridge, the iptables chains, the route, the cgroups) have fixed
names, so one node runs per machine at a time: a lock file says whose it is. Stopping
removes all of it — pods, shims, mounts, chains, bridge, cgroups — and so does the next
start after a crash (:func:`teardown` is idempotent).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml

from agentstack_devkit.controlplane import SERVICE_CIDR, ControlPlane
from agentstack_devkit.image import pause_image
from agentstack_devkit.processes import (
    LOOPBACK,
    DevEnvError,
    ManagedProcess,
    Service,
    free_port,
    http_ok,
    unverified_tls,
    wait_until,
)
from agentstack_devkit.registry import DEV_PORT, Registry, dev_registry_dir
from agentstack_devkit.release import push_image
from agentstack_devkit.toolchain import (
    cache_root,
    controlplane_binaries,
    coredns_spec,
    ensure_built,
    find_repo_root,
    node_spec,
)

BRIDGE = "agentstack0"
POD_CIDR = "10.244.0.0/24"
GATEWAY = "10.244.0.1"
"""The bridge's address: the node's InternalIP, the API server's and CoreDNS's address."""
NODE_NAME = "agentstack-dev"
CGROUP_ROOT = "agentstack"
CHAIN = "AGENTSTACK-NODE"
CNI_BIN_DIR = Path("/usr/lib/cni")
CLUSTER_DOMAIN = "cluster.local"
NODE_READY_TIMEOUT = 120.0
_CGROUP_FS = Path("/sys/fs/cgroup")
_OWN_IMAGES = "agentstack-"
"""Repositories of the dev kit's images (the pause, Redis and project images)."""
_CHAIN_PREFIXES = ("KUBE-", CHAIN)
"""Chains the node's processes create (kube-proxy, the kubelet) and ours. CNI-* chains
are left alone: podman's own networks use them, and the node's CNI configuration
creates none (no masquerading, no host ports)."""


@dataclass(frozen=True)
class NodeBinaries:
    kubelet: Path
    kube_proxy: Path
    kube_scheduler: Path
    pause: Path
    coredns: Path


def node_binaries(repo_root: Path) -> NodeBinaries:
    """Build (once) and return the node's programs."""
    node = ensure_built(node_spec(repo_root))
    coredns = ensure_built(coredns_spec(repo_root))
    return NodeBinaries(
        kubelet=node / "kubelet",
        kube_proxy=node / "kube-proxy",
        kube_scheduler=node / "kube-scheduler",
        pause=node / "pause",
        coredns=coredns / "coredns",
    )


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise DevEnvError(f"{name} is not installed: run `make setup`")
    return found


def _run(argv: list[str], *, check: bool = True, timeout: float = 120.0) -> str:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
    )
    if check and done.returncode != 0:
        raise DevEnvError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _unix_time(stamp: str) -> float:
    """An API server timestamp (RFC 3339, UTC, ``…Z``) as a Unix time."""
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# -- host network ---------------------------------------------------------------------


def setup_network() -> None:
    """Bridge with the gateway address, the Service range's unreachable route, the
    forward chain, and the sysctls kube-proxy relies on (bridged traffic seen by
    iptables, forwarding on)."""
    ip = _tool("ip")
    if _run([ip, "link", "show", BRIDGE], check=False) == "":
        _run([ip, "link", "add", BRIDGE, "type", "bridge"])
    if GATEWAY not in _run([ip, "-4", "addr", "show", "dev", BRIDGE]):
        _run([ip, "addr", "add", f"{GATEWAY}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE])
    _run([ip, "link", "set", BRIDGE, "up"])
    _run([ip, "route", "replace", "unreachable", SERVICE_CIDR])
    for knob in ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"):
        path = Path("/proc/sys") / knob
        if path.exists() and path.read_text().strip() != "1":
            path.write_text("1\n")
    iptables = _tool("iptables")
    _run([iptables, "-w", "-N", CHAIN], check=False)
    _run([iptables, "-w", "-F", CHAIN])
    for rule in (
        ["-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"],
        ["-i", BRIDGE, "-j", "DROP"],  # pods never reach beyond the node
        ["-o", BRIDGE, "-j", "DROP"],  # nothing from outside reaches the pods
    ):
        _run([iptables, "-w", "-A", CHAIN, *rule])
    _run([iptables, "-w", "-I", "FORWARD", "1", "-j", CHAIN])


def _remove_iptables_chains() -> None:
    """Every rule jumping to, and every chain named, KUBE-* or ours."""
    for binary in ("iptables", "ip6tables"):
        tool = shutil.which(binary)
        if tool is None:
            continue
        for table in ("filter", "nat", "mangle"):
            rules = _run([tool, "-w", "-t", table, "-S"], check=False).splitlines()
            chains = [
                line.split()[1]
                for line in rules
                if line.startswith("-N ") and line.split()[1].startswith(_CHAIN_PREFIXES)
            ]
            for line in rules:
                parts = shlex.split(line)
                if (
                    parts[:1] == ["-A"]
                    and not parts[1].startswith(_CHAIN_PREFIXES)
                    and "-j" in parts
                    and parts[parts.index("-j") + 1].startswith(_CHAIN_PREFIXES)
                ):
                    _run([tool, "-w", "-t", table, "-D", *parts[1:]], check=False)
            for chain in chains:
                _run([tool, "-w", "-t", table, "-F", chain], check=False)
            for chain in chains:
                _run([tool, "-w", "-t", table, "-X", chain], check=False)


def _remove_network() -> None:
    ip = shutil.which("ip")
    if ip is not None:
        _run([ip, "route", "del", "unreachable", SERVICE_CIDR], check=False)
        _run([ip, "link", "del", BRIDGE], check=False)
    _remove_iptables_chains()


# -- teardown -------------------------------------------------------------------------


def _cgroup_dirs() -> list[Path]:
    """Every cgroup under :data:`CGROUP_ROOT`, in every hierarchy, deepest first.

    Pods' cgroups come and go while this walks (the kubelet and runc remove them), so
    a directory that vanishes is skipped (``os.walk`` ignores what it cannot list)."""
    found: list[Path] = []
    if not _CGROUP_FS.is_dir():
        return found
    for hierarchy in _CGROUP_FS.iterdir():
        for directory, _subdirs, _files in os.walk(hierarchy / CGROUP_ROOT):
            found.append(Path(directory))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _kill_cgroup_processes() -> None:
    """SIGKILL every process of every pod (they all live under our cgroup root)."""
    for _ in range(50):
        pids: set[int] = set()
        for directory in _cgroup_dirs():
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    raise DevEnvError(f"pods under the {CGROUP_ROOT} cgroup would not die")


def _kill_matching(needle: str) -> None:
    """SIGKILL the containerd shims whose command line mentions ``needle`` (they name
    the socket of the containerd that started them, and outlive it)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if needle in cmdline and "containerd-shim" in cmdline:
                os.kill(int(entry.name), signal.SIGKILL)


def _unmount_under(root: Path) -> None:
    """Lazily unmount every mount point below ``root``, deepest first."""
    prefix = str(root.resolve())
    points: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    for point in sorted(set(points), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def node_dir() -> Path:
    """The node's state (one node per machine, so one fixed place): containerd's store
    (images survive restarts), its state and sockets, the kubelet's root, CNI state."""
    return cache_root() / "node"


def containerd_root() -> Path:
    return node_dir() / "containerd"


def run_dir() -> Path:
    """What one run of the node owns; removed by :func:`teardown`."""
    return node_dir() / "run"


def stop_pods() -> None:
    """Kill every pod and shim, unmount what they mounted, remove their cgroups."""
    _kill_cgroup_processes()
    _kill_matching(str(node_dir()))
    _unmount_under(node_dir())
    for directory in _cgroup_dirs():
        with contextlib.suppress(OSError):
            directory.rmdir()


def teardown() -> None:
    """Remove every trace a node may have left on this machine (idempotent)."""
    stop_pods()
    _remove_network()
    shutil.rmtree(run_dir(), ignore_errors=True)


class NodeHost(Service):
    """The machine's side of a node: the lock, a clean slate, the bridge and its rules.

    Started before the control plane (which binds to the bridge's address) and stopped
    after everything else, removing every trace (:func:`teardown`).
    """

    def __init__(self) -> None:
        self._lock: IO[str] | None = None

    def _start(self) -> None:
        if os.geteuid() != 0:
            raise DevEnvError(
                "the dev node needs root (containerd, the kubelet and the bridge do); "
                "run as root, or use `agentstack dev up --processes`"
            )
        self._lock = _machine_lock()
        teardown()
        setup_network()

    def stop(self) -> None:
        if self._lock is None:
            return
        try:
            teardown()
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


def _machine_lock() -> IO[str]:
    """Hold the machine's node lock (released when the returned file is closed)."""
    path = cache_root() / "node.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise DevEnvError(
            f"a dev node already runs on this machine ({owner}); one node per machine"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


# -- the node -------------------------------------------------------------------------


class Node(Service):
    """containerd, kubelet, kube-proxy, kube-scheduler and CoreDNS for ``plane``.

    ``plane`` must run with ``node_address=GATEWAY``, inside a started :class:`NodeHost`
    (the API server binds to the bridge's address, so the bridge comes first).
    ``registry`` (started) is where containerd pulls every image from, the sandbox's too.
    """

    def __init__(self, plane: ControlPlane, binaries: NodeBinaries, registry: Registry) -> None:
        if plane.node_address != GATEWAY:
            raise DevEnvError(f"the control plane must serve the node at {GATEWAY}")
        self.plane = plane
        self.binaries = binaries
        self.registry = registry
        self.sandbox = ""
        """The pause image's reference in the registry (pushed on start)."""
        self.data_dir = run_dir()
        self._processes: list[ManagedProcess] = []

    name = NODE_NAME

    @property
    def socket(self) -> Path:
        return self.data_dir / "containerd" / "containerd.sock"

    @property
    def logs_dir(self) -> Path:
        return self.plane.logs_dir

    @property
    def processes(self) -> tuple[ManagedProcess, ...]:
        return tuple(self._processes)

    def ctr(self, *args: str, timeout: float = 300.0) -> str:
        """Run ``ctr`` against this node's containerd, in the CRI's namespace."""
        return _run(
            [_tool("ctr"), "--address", str(self.socket), "--namespace", "k8s.io", *args],
            timeout=timeout,
        )

    # -- start --------------------------------------------------------------------------

    def _start(self) -> None:
        for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "config"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        for hierarchy in _CGROUP_FS.iterdir():
            if hierarchy.is_dir() and (hierarchy / "cgroup.procs").exists():
                (hierarchy / CGROUP_ROOT).mkdir(exist_ok=True)
        pause = pause_image(self.binaries.pause)
        self.sandbox = push_image(
            pause.name, self.registry.target, "agentstack-pause", pause.name.rsplit(":", 1)[1]
        )
        self._start_containerd(self.sandbox)
        kubeconfig = self.data_dir / "config" / "node.kubeconfig"
        shutil.copyfile(self.plane.kubeconfig_path, kubeconfig)
        kubeconfig.chmod(0o600)
        self._start_kubelet(kubeconfig)
        self._start_kube_proxy(kubeconfig)
        self._start_scheduler(kubeconfig)
        self._start_coredns(kubeconfig)
        self._wait_node_schedulable()

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, log_path=self.logs_dir / f"{name}.log")
        process.start()
        self._processes.append(process)
        return process

    def _registry_hosts(self) -> Path:
        """containerd's registry configuration: the local registry speaks plain HTTP."""
        hosts = self.data_dir / "config" / "registries"
        address = self.registry.host
        (hosts / address).mkdir(parents=True, exist_ok=True)
        (hosts / address / "hosts.toml").write_text(
            f'server = "http://{address}"\n\n'
            f'[host."http://{address}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
        )
        return hosts

    def _start_containerd(self, pause: str) -> None:
        state = self.data_dir / "containerd"
        config = {
            "version": 2,
            "root": str(containerd_root()),
            "state": str(state / "state"),
            "grpc": {"address": str(self.socket)},
            "ttrpc": {"address": f"{self.socket}.ttrpc"},
            "metrics": {"address": ""},
            "plugins": {
                "io.containerd.grpc.v1.cri": {
                    "sandbox_image": pause,
                    "restrict_oom_score_adj": True,
                    "netns_mounts_under_state_dir": True,
                    "disable_apparmor": True,
                    "containerd": {
                        "snapshotter": "overlayfs",
                        "default_runtime_name": "runc",
                        "runtimes": {
                            "runc": {
                                "runtime_type": "io.containerd.runc.v2",
                                "options": {"SystemdCgroup": False},
                            }
                        },
                    },
                    "cni": {
                        "bin_dir": str(CNI_BIN_DIR),
                        "conf_dir": str(self.data_dir / "cni" / "net.d"),
                    },
                    "registry": {"config_path": str(self._registry_hosts())},
                },
                "io.containerd.internal.v1.opt": {"path": str(state / "opt")},
            },
        }
        import tomli_w

        path = self.data_dir / "config" / "containerd.toml"
        path.write_text(tomli_w.dumps(config))
        (self.data_dir / "cni" / "net.d" / "10-agentstack.conflist").write_text(
            json.dumps(self._cni_config(), indent=2)
        )
        containerd = self._spawn(
            "containerd", [_tool("containerd"), "--config", str(path), "--log-level", "warn"]
        )
        containerd.wait_ready(
            lambda: True if self.socket.exists() and self._ctr_ok() else None,
            timeout=60,
            what="serving",
        )

    def _ctr_ok(self) -> bool | None:
        try:
            self.ctr("version", timeout=10)
        except DevEnvError:
            return None
        return True

    def _cni_config(self) -> dict[str, object]:
        return {
            "cniVersion": "1.0.0",
            "name": "agentstack",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.data_dir / "cni" / "ipam"),
                        "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "loopback"},
            ],
        }

    def prune_images(self, keep: Iterable[str]) -> None:
        """Remove the dev kit's images that no reference in ``keep`` (``repo@digest`` or
        ``repo:tag``) names — each change of the code makes a new one, and containerd's
        store lives under the cache, across runs — and any imported by hand by earlier
        versions of the dev kit. Call it before pods use them."""
        kept = {*keep, self.sandbox}
        kept_digests = {ref.rsplit("@", 1)[1] for ref in kept if "@" in ref}
        stale = []
        for line in self.ctr("images", "ls").splitlines()[1:]:
            ref, _kind, digest, *_rest = line.split()
            name = ref.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
            pulled = ref.startswith(f"{self.registry.host}/")
            wanted = ref in kept or (pulled and digest in kept_digests)
            if name.startswith(_OWN_IMAGES) and not wanted:
                stale.append(ref)
        if stale:
            self.ctr("images", "rm", *stale)

    def _start_kubelet(self, kubeconfig: Path) -> None:
        resolv = self.data_dir / "config" / "resolv.conf"
        resolv.write_text(f"search {CLUSTER_DOMAIN}\n")
        healthz = free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{CGROUP_ROOT}",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": GATEWAY,
            "port": free_port(GATEWAY),
            "readOnlyPort": 0,
            "healthzBindAddress": LOOPBACK,
            "healthzPort": healthz,
            "clusterDNS": [GATEWAY],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": str(resolv),
            "podLogsDir": str(self.data_dir / "pod-logs"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.plane.kubelet_client_ca)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "failSwapOn": False,
            "serializeImagePulls": False,
            "imageGCHighThresholdPercent": 100,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%"},
            "registerWithTaints": [],
        }
        path = self.data_dir / "config" / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config))
        kubelet = self._spawn(
            "kubelet",
            [
                str(self.binaries.kubelet),
                f"--config={path}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.data_dir / 'kubelet'}",
                f"--cert-dir={self.data_dir / 'kubelet' / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={GATEWAY}",
                "--v=1",
            ],
        )
        kubelet.wait_ready(
            lambda: http_ok(f"http://{LOOPBACK}:{healthz}/healthz"), timeout=60, what="healthy"
        )

    def _start_kube_proxy(self, kubeconfig: Path) -> None:
        healthz, metrics = free_port(), free_port()
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "healthzBindAddress": f"{LOOPBACK}:{healthz}",
            "metricsBindAddress": f"{LOOPBACK}:{metrics}",
            "nodePortAddresses": [f"{GATEWAY}/32"],
            "iptables": {"localhostNodePorts": False},
            # Leave the kernel's conntrack settings alone (raising them needs
            # CAP_SYS_RESOURCE, which this machine's root lacks).
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }
        path = self.data_dir / "config" / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        proxy = self._spawn("kube-proxy", [str(self.binaries.kube_proxy), f"--config={path}"])
        proxy.wait_ready(
            lambda: http_ok(f"http://{LOOPBACK}:{healthz}/healthz"), timeout=60, what="healthy"
        )

    def _start_scheduler(self, kubeconfig: Path) -> None:
        port = free_port()
        scheduler = self._spawn(
            "kube-scheduler",
            [
                str(self.binaries.kube_scheduler),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={port}",
                "--leader-elect=false",
            ],
        )
        scheduler.wait_ready(
            lambda: http_ok(f"https://{LOOPBACK}:{port}/healthz", context=unverified_tls()),
            timeout=60,
            what="healthy",
        )

    def _start_coredns(self, kubeconfig: Path) -> None:
        ready = free_port()
        corefile = self.data_dir / "config" / "Corefile"
        corefile.write_text(
            f".:53 {{\n"
            f"    bind {GATEWAY}\n"
            f"    errors\n"
            f"    ready {LOOPBACK}:{ready}\n"
            f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
            f"        kubeconfig {kubeconfig} agentstack-dev\n"
            f"        pods insecure\n"
            f"    }}\n"
            f"    cache 5\n"
            f"}}\n"
        )
        coredns = self._spawn("coredns", [str(self.binaries.coredns), "-conf", str(corefile)])
        coredns.wait_ready(
            lambda: http_ok(f"http://{LOOPBACK}:{ready}/ready"), timeout=60, what="ready"
        )

    def _wait_node_schedulable(self, *, since: float = 0.0) -> None:
        """Until the node is Ready and untainted, as its kubelet reported at or after
        ``since`` (a Unix time: after a crash the API server still shows the last report
        from before it). A kubelet that exits meanwhile is started again: it exits when
        containerd's CRI service is not initialized yet, which ``ctr`` cannot see."""
        kubelet = next(p for p in self._processes if p.name == "kubelet")

        def schedulable() -> bool | None:
            if not kubelet.is_running():
                kubelet.restart()
                return None
            shown = self.plane.kubectl("get", "node", NODE_NAME, "-o", "json")
            if shown.returncode != 0:
                return None
            node = json.loads(shown.stdout)
            ready = any(
                c["type"] == "Ready"
                and c["status"] == "True"
                and _unix_time(c["lastHeartbeatTime"]) >= int(since)
                for c in node.get("status", {}).get("conditions", [])
            )
            tainted = bool(node.get("spec", {}).get("taints"))
            return True if ready and not tainted else None

        wait_until(schedulable, timeout=NODE_READY_TIMEOUT, what=f"node {NODE_NAME} Ready")

    # -- faults -------------------------------------------------------------------------

    def crash(self, pods: Iterable[str]) -> None:
        """The node's agents die and take the pods with ``pods`` uids with them: the
        kubelet and containerd SIGKILLed, then every process of those pods. Other pods
        (the in-chart Redis, which a real cluster keeps on another node or on a volume)
        keep running; containerd's shims, which outlive containerd, report the deaths
        when it comes back."""
        by_name = {process.name: process for process in self._processes}
        for name in ("kubelet", "containerd"):
            by_name[name].send_signal(signal.SIGKILL)
            by_name[name].wait_exit()
        uids = list(pods)

        def killed() -> bool | None:
            left = [pid for uid in uids for pid in self.pod_processes(uid)]
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return None if left else True

        wait_until(killed, timeout=30, what="the crashed pods' processes to die")

    def recover(self) -> None:
        """containerd, then the kubelet, started again over the state they had (as after
        a reboot): the kubelet finds its pods dead and starts them again."""
        started = time.time()
        by_name = {process.name: process for process in self._processes}
        containerd = by_name["containerd"]
        containerd.restart()
        containerd.wait_ready(
            lambda: True if self.socket.exists() and self._ctr_ok() else None,
            timeout=60,
            what="serving",
        )
        by_name["kubelet"].restart()
        self._wait_node_schedulable(since=started)

    @staticmethod
    def pod_processes(uid: str) -> list[int]:
        """The processes of the pod with ``uid``: its containers' cgroups
        (``…/kubepods/<class>/pod<uid>/<container>``; the pod's own holds none)."""
        pids: list[int] = []
        for directory in _cgroup_dirs():
            hierarchy = directory.relative_to(_CGROUP_FS).parts[0]
            if directory.parent.name == f"pod{uid}" and hierarchy == "pids":
                with contextlib.suppress(OSError):
                    pids += [int(p) for p in (directory / "cgroup.procs").read_text().split()]
        return pids

    def pod_pid(self, uid: str) -> int:
        """A process of the pod with ``uid``: a way into the pod's network namespace."""
        pids = self.pod_processes(uid)
        if not pids:
            raise DevEnvError(f"no process of pod {uid} on the node")
        return pids[0]

    @contextlib.contextmanager
    def cut_off(self, uid: str, port: int) -> Iterator[None]:
        """Inside, the pod with ``uid`` cannot reach TCP ``port`` anywhere: a rule in
        the pod's own network namespace drops what it sends there (connections already
        open included). Nothing else on the node is affected; the rule goes on exit."""
        rule = ["OUTPUT", "-p", "tcp", "--dport", str(port), "-j", "DROP"]
        enter = [_tool("nsenter"), "--target", str(self.pod_pid(uid)), "--net", _tool("iptables")]
        _run([*enter, "-I", *rule])
        try:
            yield
        finally:
            _run([*enter, "-D", *rule], check=False)

    # -- stop ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the node processes, then remove pods, shims, mounts and cgroups (the
        network goes with :class:`NodeHost`)."""
        by_name = {process.name: process for process in self._processes}
        for name in ("kube-scheduler", "coredns", "kube-proxy", "kubelet"):
            if name in by_name:
                by_name[name].stop()
        _kill_cgroup_processes()
        if "containerd" in by_name:
            by_name["containerd"].stop()
        self._processes.clear()
        proxy = self.binaries.kube_proxy
        if proxy.exists():
            subprocess.run([str(proxy), "--cleanup"], capture_output=True, timeout=60, check=False)
        stop_pods()


class NodeCluster(Service):
    """A whole cluster with its node: :class:`NodeHost`, the OCI registry its node pulls
    from, the control plane serving the node's address, and :class:`Node` — started in
    that order, stopped in the reverse one.

    The registry runs on :data:`~agentstack_devkit.registry.DEV_PORT` over the cache's
    storage, inside the machine's node lock (one node, so one such registry, at a time):
    image references stay the same across runs, and a layer pushed once stays pushed.
    """

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        apiserver_port: int | None = None,
        kubeconfig_path: Path | None = None,
        repo_root: Path | None = None,
    ) -> None:
        repo = repo_root or find_repo_root()
        self.host = NodeHost()
        self.registry = Registry(port=DEV_PORT, storage=dev_registry_dir())
        self.plane = ControlPlane(
            controlplane_binaries(repo),
            data_dir=data_dir,
            apiserver_port=apiserver_port,
            kubeconfig_path=kubeconfig_path,
            node_address=GATEWAY,
        )
        self.node = Node(self.plane, node_binaries(repo), self.registry)

    @property
    def processes(self) -> tuple[ManagedProcess, ...]:
        return (*self.registry.processes, *self.plane.processes, *self.node.processes)

    def _start(self) -> None:
        self.host.start()
        self.registry.start()
        self.plane.start()
        self.node.start()

    def stop(self) -> None:
        """Stop each part, even if another one's stop failed."""
        try:
            self.node.stop()
        finally:
            try:
                self.plane.stop()
            finally:
                try:
                    self.registry.stop()
                finally:
                    self.host.stop()
