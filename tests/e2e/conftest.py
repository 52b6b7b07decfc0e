"""Fixtures of the end-to-end suite: the CRD installed into the session's control plane."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from agentstack_operator.devenv.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "agentstack.dev_agentstacks.yaml"


@pytest.fixture(scope="session")
def crd(control_plane: ControlPlane, k8s_api: client.ApiClient) -> str:
    """Apply the project's CRD with kubectl and wait until it is established."""
    applied = control_plane.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
    assert applied.returncode == 0, applied.stderr
    waited = control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/agentstacks.agentstack.dev",
    )
    assert waited.returncode == 0, waited.stderr
    return "agentstacks.agentstack.dev"
