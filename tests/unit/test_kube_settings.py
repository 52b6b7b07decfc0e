"""The async Kubernetes layer's settings: a pod's ServiceAccount (its token read again
as the kubelet rotates it), else a kubeconfig; TLS with or without our certificate."""

from __future__ import annotations

import ssl
from pathlib import Path

from kubernetes import client

from agentstack_core.kube.settings import (
    ConfigurationCredentials,
    KubeSettings,
    TokenFile,
    from_configuration,
    in_cluster,
)
from tests.helpers import Clock

POD_ENV = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def _service_account(directory: Path, token: str = "first") -> Path:  # noqa: S107
    (directory / "token").write_text(token + "\n")
    return directory


def test_outside_a_pod_there_are_no_in_cluster_settings(tmp_path: Path) -> None:
    assert in_cluster({}, _service_account(tmp_path)) is None
    assert in_cluster(POD_ENV, tmp_path / "absent") is None


def test_a_pod_reaches_the_service_address_with_its_token_and_ca(tmp_path: Path) -> None:
    directory = _service_account(tmp_path)
    (directory / "ca.crt").write_text("not read until a call")
    settings = in_cluster(POD_ENV, directory)
    assert settings is not None
    assert settings.server == "https://10.0.0.1:443"
    assert settings.ca_file == str(directory / "ca.crt")
    assert settings.credentials.authorization() == "Bearer first"


def test_an_ipv6_service_address_is_bracketed(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    settings = in_cluster(env, _service_account(tmp_path))
    assert settings is not None
    assert settings.server == "https://[fd00::1]:6443"


def test_a_rotated_token_is_read_again_once_the_old_one_is_a_minute_old(tmp_path: Path) -> None:
    path = _service_account(tmp_path) / "token"
    clock = Clock(0.0)
    token = TokenFile(path, clock=clock)
    assert token.authorization() == "Bearer first"
    path.write_text("second")
    clock.now += 59
    assert token.authorization() == "Bearer first"  # not read on every call
    clock.now += 1
    assert token.authorization() == "Bearer second"


def test_an_empty_token_file_sends_no_authorization(tmp_path: Path) -> None:
    assert TokenFile(_service_account(tmp_path, "") / "token").authorization() is None


def test_a_kubeconfig_configuration_is_asked_for_its_token_on_every_call() -> None:
    configuration = client.Configuration(host="https://127.0.0.1:6443/")
    configuration.api_key = {"authorization": "Bearer one"}
    settings = from_configuration(configuration)
    assert settings.server == "https://127.0.0.1:6443"
    assert settings.credentials.authorization() == "Bearer one"
    configuration.api_key = {"authorization": "Bearer two"}  # what a refresh hook does
    assert settings.credentials.authorization() == "Bearer two"
    assert ConfigurationCredentials(client.Configuration()).authorization() is None


def test_plain_http_has_no_tls_and_https_verifies_by_default() -> None:
    none = TokenFile(Path("/nonexistent"))
    assert KubeSettings("http://127.0.0.1:8080", none).ssl_context() is False
    context = KubeSettings("https://127.0.0.1:6443", none).ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    unverified = KubeSettings("https://127.0.0.1:6443", none, verify=False).ssl_context()
    assert isinstance(unverified, ssl.SSLContext)
    assert unverified.verify_mode is ssl.CERT_NONE


def test_a_call_as_someone_else_leaves_our_client_certificate_out(tmp_path: Path) -> None:
    settings = KubeSettings(
        "https://127.0.0.1:6443",
        TokenFile(tmp_path / "unused"),
        cert_file=str(tmp_path / "absent.crt"),
        key_file=str(tmp_path / "absent.key"),
    )
    # Without the certificate nothing is loaded (the absent files are never opened).
    assert isinstance(settings.ssl_context(client_certificate=False), ssl.SSLContext)
