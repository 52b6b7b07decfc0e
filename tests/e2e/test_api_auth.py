"""The read API with Kubernetes authentication: a caller sees what RBAC lets them get."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
import redis
from kubernetes import client

from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.fleet import Fleet
from tests.e2e.stacks import Stacks
from tests.helpers import eventually


@pytest.fixture(scope="module")
def setting(
    fleet: Fleet, k8s_api: client.ApiClient, redis_reader: redis.Redis
) -> Iterator[tuple[httpx.Client, list[Stacks]]]:
    """An API with authentication on, and stacks in two namespaces."""
    core = client.CoreV1Api(k8s_api)
    namespaces = [f"auth-{secrets.token_hex(3)}-{n}" for n in ("a", "b")]
    for name in namespaces:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    _process, port = fleet.api(
        AGENTSTACK_API_AUTH="kubernetes", AGENTSTACK_API_AUTH_CACHE_SECONDS="1"
    )
    groups = [Stacks(k8s_api, name, redis_reader) for name in namespaces]
    for stacks in groups:
        stacks.create("visible")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        eventually(
            lambda: True if http.get("/readyz").status_code == 200 else None,
            "the API's cache to load",
        )
        yield http, groups
    for name in namespaces:
        core.delete_namespace(name)


def _token(k8s_api: client.ApiClient, namespace: str, account: str) -> str:
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=account))
    )
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    return str(
        core.create_namespaced_service_account_token(account, namespace, request).status.token
    )


def test_no_or_bad_credentials_see_nothing(
    setting: tuple[httpx.Client, list[Stacks]],
) -> None:
    http, (first, _second) = setting
    detail = f"/api/v1/namespaces/{first.namespace}/stacks/visible"
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
        paths = (
            "/api/v1/stacks",
            detail,
            f"{detail}/traces",
            f"{detail}/traces/stream",
            f"{detail}/search?q=draft",
        )
        for path in paths:
            response = http.get(path, headers=headers)
            assert response.status_code == 401, (path, headers, response.text)
            assert response.json()["error"]["code"] == "Unauthorized"


def test_rbac_decides_which_stacks_a_caller_sees(
    setting: tuple[httpx.Client, list[Stacks]],
    k8s_api: client.ApiClient,
    control_plane: ControlPlane,
) -> None:
    http, (first, second) = setting
    token = _token(k8s_api, first.namespace, "dashboard")
    headers = {"Authorization": f"Bearer {token}"}
    detail = f"/api/v1/namespaces/{first.namespace}/stacks/visible"

    listed = http.get("/api/v1/stacks", headers=headers)
    assert listed.status_code == 200
    assert listed.json()["items"] == []
    for path in (detail, f"{detail}/search?q=draft"):
        forbidden = http.get(path, headers=headers)
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["code"] == "Forbidden"

    rbac = client.RbacAuthorizationV1Api(k8s_api)
    rbac.create_namespaced_role(
        first.namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="read-stacks"),
            rules=[
                client.V1PolicyRule(
                    api_groups=["agentstack.dev"], resources=["agentstacks"], verbs=["get"]
                )
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        first.namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="dashboard-reads-stacks"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="read-stacks"
            ),
            subjects=[
                client.RbacV1Subject(
                    kind="ServiceAccount", name="dashboard", namespace=first.namespace
                )
            ],
        ),
    )
    eventually(
        lambda: True if http.get(detail, headers=headers).status_code == 200 else None,
        "the grant to take effect (after the 1 s decision cache)",
    )
    names = {
        (s["namespace"], s["name"])
        for s in http.get("/api/v1/stacks", headers=headers).json()["items"]
    }
    assert names == {(first.namespace, "visible")}  # not the other namespace's stack
    other = http.get(f"/api/v1/namespaces/{second.namespace}/stacks/visible", headers=headers)
    assert other.status_code == 403
    searched = http.get(f"{detail}/search", params={"q": "draft"}, headers=headers)
    assert searched.status_code == 200  # get on the stack is all a search needs
    assert searched.json()["terms"] == ["draft"]
    hidden = f"/api/v1/namespaces/{second.namespace}/stacks/visible/search"
    assert http.get(hidden, params={"q": "draft"}, headers=headers).status_code == 403
    # The admin (system:masters) sees both.
    admin = {"Authorization": f"Bearer {control_plane.admin_token}"}
    everything = http.get("/api/v1/stacks", headers=admin).json()["items"]
    assert {(first.namespace, "visible"), (second.namespace, "visible")} <= {
        (s["namespace"], s["name"]) for s in everything
    }


def test_cors_is_off_unless_configured(fleet: Fleet) -> None:
    _process, port = fleet.api(AGENTSTACK_API_CORS_ORIGINS="https://dash.example")
    origin = {"Origin": "https://dash.example"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        allowed = http.get("/healthz", headers=origin)
        assert allowed.headers["access-control-allow-origin"] == "https://dash.example"
        preflight = http.options(
            "/api/v1/stacks",
            headers={
                **origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200
        other = http.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
