"""ServiceAccounts with exactly the rights a test grants, and their tokens."""

from __future__ import annotations

from kubernetes import client

from agentstack_devkit.controlplane import bind_service_account


def account(k8s_api: client.ApiClient, namespace: str, name: str, *resources: str) -> str:
    """A ServiceAccount allowed ``get`` on stacks and ``create`` on ``resources``;
    returns its token."""
    core = client.CoreV1Api(k8s_api)
    rbac = client.RbacAuthorizationV1Api(k8s_api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    rules = [
        client.V1PolicyRule(api_groups=["agentstack.dev"], resources=["agentstacks"], verbs=["get"])
    ]
    if resources:
        rules.append(
            client.V1PolicyRule(
                api_groups=["agentstack.dev"], resources=list(resources), verbs=["create"]
            )
        )
    rbac.create_namespaced_role(
        namespace, client.V1Role(metadata=client.V1ObjectMeta(name=name), rules=rules)
    )
    bind_service_account(k8s_api, namespace, name, name)
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    return str(core.create_namespaced_service_account_token(name, namespace, request).status.token)
