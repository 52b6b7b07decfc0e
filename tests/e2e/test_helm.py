"""The helm the suite uses is the pinned release, and installs into the real cluster."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kubernetes import client

from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.toolchain import find_repo_root, helm_binary, helm_spec


def _helm(control_plane: ControlPlane, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
        KUBECONFIG=str(control_plane.kubeconfig_path),
    )
    return subprocess.run(
        [str(helm_binary()), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_helm_installs_a_chart_into_the_control_plane(
    control_plane: ControlPlane, k8s_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    version = _helm(control_plane, tmp_path, "version", "--template", "{{.Version}}")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == helm_spec(find_repo_root()).versions["helm"]

    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: smoke\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    installed = _helm(
        control_plane,
        tmp_path,
        "install",
        "smoke",
        str(chart),
        "--namespace",
        namespace,
        "--set",
        "greeting=bonjour",
        "--wait",
        "--timeout",
        "60s",
    )
    assert installed.returncode == 0, installed.stderr
    core = client.CoreV1Api(k8s_api)
    assert core.read_namespaced_config_map("smoke-greeting", namespace).data == {
        "greeting": "bonjour"
    }
    uninstalled = _helm(control_plane, tmp_path, "uninstall", "smoke", "--namespace", namespace)
    assert uninstalled.returncode == 0, uninstalled.stderr
    names = [cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items]
    assert "smoke-greeting" not in names
