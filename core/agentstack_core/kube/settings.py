"""Where the API server is and how to prove who we are, as one typed value.

In a pod: the ServiceAccount's directory (its token, its CA) and the service address
the kubelet puts in the environment. The token file is read again once it is a minute
old: the kubelet rotates the projected token (hourly by default) and an old one stops
being accepted, so it is never read once and kept. Elsewhere — ``make dev``, the tests,
a laptop — the kubeconfig ``$KUBECONFIG`` names, read by the ``kubernetes`` package's
loader (contexts, exec plugins, inline certificates); its token is asked for again on
every call, so a refresh hook of that loader is honoured as its own client would.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kubernetes import client, config

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0
"""How old a token read from its file may get before it is read again (client-go's
period for the same file)."""


class Credentials(Protocol):
    """What a call sends as its ``Authorization`` header."""

    def authorization(self) -> str | None:
        """The header's value (``Bearer …``), or ``None`` to send none."""
        ...


@dataclass
class TokenFile:
    """A bearer token kept in a file that something else rotates (the kubelet)."""

    path: Path
    reread_seconds: float = TOKEN_REREAD_SECONDS
    clock: Callable[[], float] = time.monotonic
    _token: str = field(default="", repr=False)
    _read_at: float | None = field(default=None, repr=False)

    def authorization(self) -> str | None:
        now = self.clock()
        if self._read_at is None or now - self._read_at >= self.reread_seconds:
            self._token = self.path.read_text().strip()
            self._read_at = now
        return f"Bearer {self._token}" if self._token else None


@dataclass(frozen=True)
class ConfigurationCredentials:
    """The token of a ``kubernetes`` client configuration (a kubeconfig's), asked for
    on every call: its refresh hook, if the loader set one, runs as it would there."""

    configuration: client.Configuration

    def authorization(self) -> str | None:
        # The official client's lookup: ``BearerToken``, or ``authorization`` as
        # kubeconfig and in-cluster loading store it.
        token: str | None = self.configuration.get_api_key_with_prefix(
            "BearerToken", alias="authorization"
        )
        return token or None


@dataclass(frozen=True)
class Timeouts:
    """Seconds a call may take to connect, and to wait for each read (a server that
    stops answering fails the call; it never hangs the loop that made it)."""

    connect: float = 5.0
    read: float = 10.0


@dataclass(frozen=True)
class KubeSettings:
    """How to reach one API server."""

    server: str
    """Its URL (``https://host:port``)."""
    credentials: Credentials
    ca_file: str | None = None
    verify: bool = True
    cert_file: str | None = None
    key_file: str | None = None
    tls_server_name: str | None = None
    """The name its certificate is checked against, when not the URL's host."""
    timeouts: Timeouts = Timeouts()

    def ssl_context(self, *, client_certificate: bool = True) -> ssl.SSLContext | bool:
        """TLS for the server (``False`` for plain HTTP), with the client certificate
        unless ``client_certificate`` is off: a call made with someone else's token
        must not also prove our own identity (the API server would take the
        certificate's)."""
        if not self.server.startswith("https"):
            return False
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if client_certificate and self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def in_cluster(
    environ: Mapping[str, str] = os.environ, directory: Path = SERVICE_ACCOUNT_DIR
) -> KubeSettings | None:
    """The settings of a pod (its ServiceAccount), ``None`` outside one."""
    host = environ.get("KUBERNETES_SERVICE_HOST", "")
    port = environ.get("KUBERNETES_SERVICE_PORT", "")
    token = directory / "token"
    if not host or not port or not token.is_file():
        return None
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    ca = directory / "ca.crt"
    return KubeSettings(
        server=f"https://{host}:{port}",
        credentials=TokenFile(token),
        ca_file=str(ca) if ca.is_file() else None,
    )


def from_configuration(configuration: client.Configuration) -> KubeSettings:
    """The settings a ``kubernetes`` client configuration holds."""
    return KubeSettings(
        server=str(configuration.host).rstrip("/"),
        credentials=ConfigurationCredentials(configuration),
        ca_file=configuration.ssl_ca_cert,
        verify=bool(configuration.verify_ssl),
        cert_file=configuration.cert_file,
        key_file=configuration.key_file,
        tls_server_name=getattr(configuration, "tls_server_name", None),
    )


def from_kubeconfig(path: str | None = None) -> KubeSettings:
    """The settings of the kubeconfig at ``path`` (default ``$KUBECONFIG``, else
    ``~/.kube/config``), its current context."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=path, client_configuration=configuration)  # type: ignore[no-untyped-call]
    return from_configuration(configuration)


def load_settings() -> KubeSettings:
    """In a pod, its ServiceAccount; elsewhere the kubeconfig."""
    return in_cluster() or from_kubeconfig()
