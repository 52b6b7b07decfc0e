"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

No kubelet and no nodes: pods stay Pending, which is all an operator's tests need. The
controller manager supplies what a bare API server lacks — garbage collection of owned
objects, namespace deletion, the Job controller, service accounts and their tokens.

The flags follow envtest's choices (controller-runtime ``pkg/internal/testing``): a
secure port on 127.0.0.1, a serving certificate the API server generates into its cert
dir, RBAC authorization, one RSA key for signing and verifying service-account tokens.
The admin authenticates with a static bearer token in ``system:masters``; that keeps
the kubeconfig a plain file with no client certificate to mint.

Layout of the data directory (reused as is when it is given and already populated, so
a restarted dev cluster keeps its objects and its admin token)::

    etcd/          etcd's data
    certs/         kube-apiserver's generated serving certificate (apiserver.crt)
    kcm-certs/     kube-controller-manager's serving certificate
    pki/           sa.key (service-account signing key), tokens.csv (admin token)
    logs/          one log file per process
    kcm.kubeconfig the controller manager's credentials
"""

from __future__ import annotations

import base64
import secrets
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from agentstack_devkit.processes import (
    LOOPBACK,
    DevEnvError,
    ManagedProcess,
    Service,
    free_port,
    http_ok,
    pick_port,
    unverified_tls,
    wait_until,
)
from agentstack_devkit.toolchain import Binaries

ETCD_READY_TIMEOUT = 30.0
APISERVER_READY_TIMEOUT = 120.0
CONTROLLER_MANAGER_READY_TIMEOUT = 60.0

# The controllers an operator's tests rely on; the rest (node lifecycle, IPAM, cloud,
# certificates) have nothing to do without nodes and only add load.
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "job-controller",
    "ttl-after-finished-controller",
    "cronjob-controller",
    "deployment-controller",
    "replicaset-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "resourcequota-controller",
)

NODE_CONTROLLERS = (
    "node-lifecycle-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "statefulset-controller",
    "daemonset-controller",
    "disruption-controller",
)
"""What a cluster with a node needs besides: the not-ready taint lifted from a Ready
node, Services' endpoints, StatefulSets (the chart's Redis), PodDisruptionBudgets."""

SERVICE_CIDR = "10.0.0.0/24"
"""The Service (ClusterIP) range; the node routes it nowhere but through kube-proxy."""


def _rsa_private_key_pem() -> bytes:
    """A fresh RSA key for service-account tokens (one key signs and verifies)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.TraditionalOpenSSL,
        encryption_algorithm=serialization.NoEncryption(),
    )


def _kubelet_client_pki(pki: Path) -> tuple[Path, Path, Path]:
    """A CA the kubelet trusts and the API server's client certificate signed by it.

    The API server presents it to the kubelet for logs, exec and port-forward; the
    kubelet accepts no anonymous caller, so a pod on the node cannot use the kubelet's
    API. Generated once per data directory.
    """
    ca_path, cert_path, key_path = (
        pki / "kubelet-client-ca.crt",
        pki / "kubelet-client.crt",
        pki / "kubelet-client.key",
    )
    if ca_path.exists() and cert_path.exists() and key_path.exists():
        return ca_path, cert_path, key_path
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    lifetime = datetime.timedelta(days=365)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentstack-dev-kubelet-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
            x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-kubelet-client"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


def build_kubeconfig(*, server: str, ca_path: Path, token: str, user: str) -> dict[str, Any]:
    """A single-context kubeconfig for ``user`` authenticating by bearer token."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "agentstack-dev",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_path.read_bytes()).decode(
                        "ascii"
                    ),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": "agentstack-dev", "context": {"cluster": "agentstack-dev", "user": user}}
        ],
        "current-context": "agentstack-dev",
        "preferences": {},
    }


class PortForward(ManagedProcess):
    """``kubectl port-forward`` that comes back on the same port when it ends.

    kubectl ends a port-forward when the pod behind it goes (a rollout, an upgrade, a
    restart) or its stream breaks; the addresses the dev environment printed must outlive
    that, so the liveness check (:meth:`check_alive`, which ``agentstack dev`` calls
    every second) starts it again instead of reporting a crash.
    """

    def start(self) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        super().start()
        try:
            # Not wait_ready: its liveness check would be ours, which restarts.
            wait_until(
                lambda: True if b"Forwarding from" in self._log_since(offset) else None,
                timeout=60,
                what=f"{self.name} to be forwarding",
                alive=lambda: ManagedProcess.check_alive(self),
            )
        except BaseException:
            self.stop()
            raise

    def _log_since(self, offset: int) -> bytes:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read()

    def check_alive(self) -> None:
        if not self.is_running():
            self.restart()


class ControlPlane(Service):
    """etcd + kube-apiserver + kube-controller-manager, started and stopped together.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``data_dir``
    ``None`` means a temporary directory that is removed on stop.
    """

    def __init__(
        self,
        binaries: Binaries,
        *,
        data_dir: Path | None = None,
        apiserver_port: int | None = None,
        kubeconfig_path: Path | None = None,
        node_address: str | None = None,
    ) -> None:
        """``node_address``: serve a node on that host address (the pod bridge's
        gateway) instead of loopback only — pods reach the API server there, through
        the ``kubernetes`` Service's endpoint, and the node controllers run."""
        self.binaries = binaries
        self.node_address = node_address
        self.host = node_address or LOOPBACK
        self._owns_data_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="agentstack-controlplane-"))
            if data_dir is None
            else data_dir.resolve()
        )
        self._requested_port = apiserver_port
        self.apiserver_port = 0
        self.kubeconfig_path = kubeconfig_path or self.data_dir / "kubeconfig"
        self.admin_token = ""
        self._processes: list[ManagedProcess] = []

    # -- public surface -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.apiserver_port}"

    @property
    def kubelet_client_ca(self) -> Path:
        """The CA a kubelet must trust for the API server's client certificate."""
        return self.data_dir / "pki" / "kubelet-client-ca.crt"

    @property
    def ca_path(self) -> Path:
        """The API server's generated serving certificate chain, usable as a CA bundle."""
        return self.data_dir / "certs" / "apiserver.crt"

    @property
    def processes(self) -> tuple[ManagedProcess, ...]:
        """The running processes, in start order (etcd, apiserver, controller manager)."""
        return tuple(self._processes)

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    def stop(self) -> None:
        """Stop every process started here (last started, first stopped)."""
        while self._processes:
            self._processes.pop().stop()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kubectl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this cluster as the admin."""
        return subprocess.run(
            [str(self.binaries.kubectl), "--kubeconfig", str(self.kubeconfig_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def port_forward(
        self, namespace: str, target: str, remote: int, *, name: str
    ) -> tuple[PortForward, int]:
        """``kubectl port-forward`` of ``target`` (``svc/NAME``, ``pod/NAME``) to a free
        loopback port, started and forwarding; the caller stops the process."""
        port = free_port()
        forward = PortForward(
            name,
            [
                str(self.binaries.kubectl),
                "--kubeconfig",
                str(self.kubeconfig_path),
                "port-forward",
                "--namespace",
                namespace,
                f"--address={LOOPBACK}",
                target,
                f"{port}:{remote}",
            ],
            log_path=self.logs_dir / f"{name}.log",
        )
        forward.start()
        return forward, port

    def apply_crd(self, path: Path, name: str, timeout: float = 60.0) -> None:
        """Apply a CRD (server-side) and wait until the API server serves it.

        Polls the Established condition rather than ``kubectl wait``, which fails at once
        when the new CRD has no status yet.
        """
        applied = self.kubectl("apply", "--server-side", "-f", str(path))
        if applied.returncode != 0:
            raise DevEnvError(f"kubectl apply {path} failed: {applied.stderr.strip()}")
        jsonpath = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
        wait_until(
            lambda: (
                True
                if self.kubectl("get", f"crd/{name}", "-o", jsonpath).stdout.strip() == "True"
                else None
            ),
            timeout=timeout,
            what=f"the CRD {name} to be established",
        )

    def apply_project_crds(self, repo: Path, timeout: float = 60.0) -> list[str]:
        """Apply every CRD of the checkout (``crds/*.yaml``: AgentStack, AgentBudget) and
        wait until each is served; returns their names."""
        names = []
        for path in sorted((repo / "crds").glob("*.yaml")):
            name = str(yaml.safe_load(path.read_text())["metadata"]["name"])
            self.apply_crd(path, name, timeout=timeout)
            names.append(name)
        return names

    # -- start-up -----------------------------------------------------------------------

    def _start(self) -> None:
        self.apiserver_port = pick_port(
            self._requested_port, host=self.host, purpose="kube-apiserver"
        )
        for sub in ("etcd", "certs", "kcm-certs", "pki", "logs"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        sa_key, tokens = self._credentials()
        etcd_url = self._start_etcd()
        self._start_apiserver(etcd_url, sa_key, tokens)
        self._write_kubeconfig(self.kubeconfig_path, token=self.admin_token, user="admin")
        self._start_controller_manager(sa_key)
        self._wait_for_default_service_account()

    def _credentials(self) -> tuple[Path, Path]:
        pki = self.data_dir / "pki"
        sa_key = pki / "sa.key"
        if not sa_key.exists():
            sa_key.write_bytes(_rsa_private_key_pem())
            sa_key.chmod(0o600)
        tokens = pki / "tokens.csv"
        if tokens.exists():
            self.admin_token = tokens.read_text().split(",", 1)[0]
        else:
            self.admin_token = secrets.token_urlsafe(32)
            tokens.write_text(f'{self.admin_token},admin,agentstack-admin,"system:masters"\n')
            tokens.chmod(0o600)
        return sa_key, tokens

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, log_path=self.logs_dir / f"{name}.log")
        process.start()
        self._processes.append(process)
        return process

    def _start_etcd(self) -> str:
        client_port, peer_port = free_port(), free_port()
        client_url = f"http://{LOOPBACK}:{client_port}"
        peer_url = f"http://{LOOPBACK}:{peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=agentstack-dev",
                f"--data-dir={self.data_dir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=agentstack-dev={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        etcd.wait_ready(
            lambda: http_ok(f"{client_url}/health", expect=b'"health":"true"'),
            timeout=ETCD_READY_TIMEOUT,
            what="healthy",
        )
        return client_url

    def _node_apiserver_args(self) -> list[str]:
        if self.node_address is None:
            # Loopback endpoints for the `kubernetes` Service are invalid; nothing
            # in-cluster needs that Service without a node.
            return ["--endpoint-reconciler-type=none"]
        _ca, cert, key = _kubelet_client_pki(self.data_dir / "pki")
        return [
            "--endpoint-reconciler-type=lease",
            f"--kubelet-client-certificate={cert}",
            f"--kubelet-client-key={key}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _start_apiserver(self, etcd_url: str, sa_key: Path, tokens: Path) -> None:
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={self.data_dir / 'certs'}",
                f"--secure-port={self.apiserver_port}",
                f"--bind-address={self.host}",
                f"--advertise-address={self.host}",
                *self._node_apiserver_args(),
                "--authorization-mode=RBAC",
                f"--token-auth-file={tokens}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                f"--service-account-issuer=https://{self.host}:{self.apiserver_port}",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                "--profiling=false",
            ],
        )
        context = unverified_tls()  # the cert is generated during start-up
        apiserver.wait_ready(
            lambda: http_ok(
                f"{self.url}/readyz", token=self.admin_token, context=context, expect=b"ok"
            ),
            timeout=APISERVER_READY_TIMEOUT,
        )
        if not self.ca_path.exists():
            raise DevEnvError(f"kube-apiserver did not write its certificate to {self.ca_path}")

    def _write_kubeconfig(self, path: Path, *, token: str, user: str) -> None:
        config = build_kubeconfig(server=self.url, ca_path=self.ca_path, token=token, user=user)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    def _start_controller_manager(self, sa_key: Path) -> None:
        kubeconfig = self.data_dir / "kcm.kubeconfig"
        self._write_kubeconfig(kubeconfig, token=self.admin_token, user="admin")
        port = free_port()
        kcm = self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--secure-port={port}",
                f"--bind-address={LOOPBACK}",
                f"--cert-dir={self.data_dir / 'kcm-certs'}",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={self.ca_path}",
                "--use-service-account-credentials=true",
                f"--controllers={','.join(self._controllers())}",
                # A quota of a CRD made just before it (an AgentBudget's maxStacks on a
                # fresh plane) is counted only once the quota monitor has discovered the
                # CRD (every 30 s) and the quota is synced again: every 5 min by default,
                # refusing every stack ("status unknown for quota") until then.
                "--resource-quota-sync-period=10s",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )
        kcm.wait_ready(
            lambda: http_ok(
                f"https://{LOOPBACK}:{port}/healthz", context=unverified_tls(), expect=b"ok"
            ),
            timeout=CONTROLLER_MANAGER_READY_TIMEOUT,
            what="healthy",
        )

    def _controllers(self) -> tuple[str, ...]:
        return CONTROLLERS if self.node_address is None else (*CONTROLLERS, *NODE_CONTROLLERS)

    def _wait_for_default_service_account(self) -> None:
        """Pods need their namespace's ``default`` ServiceAccount: wait for the first one."""
        context = ssl.create_default_context(cafile=str(self.ca_path))
        kcm = self._processes[-1]
        kcm.wait_ready(
            lambda: http_ok(
                f"{self.url}/api/v1/namespaces/default/serviceaccounts/default",
                token=self.admin_token,
                context=context,
            ),
            timeout=CONTROLLER_MANAGER_READY_TIMEOUT,
            what="creating service accounts",
        )


def bind_service_account(
    api: client.ApiClient, namespace: str, account: str, role: str, *, kind: str = "Role"
) -> None:
    """Bind the ServiceAccount ``account`` of ``namespace`` to ``role`` (a Role there, or
    a ClusterRole with ``kind``) in that namespace, with a RoleBinding named
    ``<account>-<role>``."""
    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=f"{account}-{role}"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind=kind, name=role),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name=account, namespace=namespace)
            ],
        ),
    )
