"""The control plane the suite runs on is the real thing, not a stand-in.

Each test checks a behaviour only a real component has: a version stamped at build
time, structural-schema validation of a CustomResourceDefinition, garbage collection
and Jobs (kube-controller-manager), RBAC on a service-account token (kube-apiserver's
authenticator and authorizer), namespace finalization.
"""

from __future__ import annotations

import json
import secrets

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agentstack_devkit.controlplane import ControlPlane
from tests.helpers import bind_service_account, eventually, gone

GROUP = "smoke.agentstack.dev"


def test_version_is_the_pinned_release(
    control_plane: ControlPlane, k8s_api: client.ApiClient
) -> None:
    info = client.VersionApi(k8s_api).get_code()
    assert info.git_version == control_plane.binaries.kubernetes_version
    assert info.git_tree_state == "clean"


def test_kubectl_uses_the_written_kubeconfig(control_plane: ControlPlane) -> None:
    result = control_plane.kubectl("get", "namespaces", "-o", "name")
    assert result.returncode == 0, result.stderr
    assert {"namespace/default", "namespace/kube-system"} <= set(result.stdout.split())


def test_custom_resource_definition_serves_and_validates_objects(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    plural = f"widgets{secrets.token_hex(3)}"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {
                                        "size": {"type": "integer", "minimum": 1, "maximum": 10}
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    extensions = client.ApiextensionsV1Api(k8s_api)
    extensions.create_custom_resource_definition(crd)
    try:

        def established() -> bool | None:
            status = extensions.read_custom_resource_definition(f"{plural}.{GROUP}").status
            conditions = (status.conditions or []) if status else []
            return (
                True
                if any(c.type == "Established" and c.status == "True" for c in conditions)
                else None
            )

        eventually(established, "the CRD to be established")
        custom = client.CustomObjectsApi(k8s_api)

        def create(size: int) -> dict[str, object]:
            body = {
                "apiVersion": f"{GROUP}/v1",
                "kind": "Widget",
                "metadata": {"name": f"w{size}"},
                "spec": {"size": size},
            }
            result: dict[str, object] = custom.create_namespaced_custom_object(
                GROUP, "v1", namespace, plural, body
            )
            return result

        # Discovery of a new CRD can lag its Established condition by a moment.
        eventually(lambda: create(3), "the custom resource to be served")
        fetched = custom.get_namespaced_custom_object(GROUP, "v1", namespace, plural, "w3")
        assert fetched["spec"] == {"size": 3}

        with pytest.raises(ApiException) as rejected:
            create(42)
        assert rejected.value.status == 422
        assert "spec.size" in json.loads(rejected.value.body)["message"]
    finally:
        extensions.delete_custom_resource_definition(f"{plural}.{GROUP}")


def test_owned_object_is_garbage_collected_with_its_owner(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(k8s_api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="dependent",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
                    )
                ],
            )
        ),
    )
    core.delete_namespaced_config_map("owner", namespace)
    eventually(
        lambda: gone(lambda: core.read_namespaced_config_map("dependent", namespace)),
        "the garbage collector to delete the dependent",
    )


def _job(name: str, restart_policy: str) -> client.V1Job:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy=restart_policy,
                    containers=[client.V1Container(name="main", image="busybox", command=["true"])],
                )
            ),
        ),
    )


def test_job_template_is_validated_and_the_job_controller_creates_its_pod(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    batch = client.BatchV1Api(k8s_api)
    with pytest.raises(ApiException) as rejected:
        batch.create_namespaced_job(namespace, _job("invalid", restart_policy="Always"))
    assert rejected.value.status == 422
    assert "restartPolicy" in json.loads(rejected.value.body)["message"]

    batch.create_namespaced_job(namespace, _job("valid", restart_policy="Never"))
    core = client.CoreV1Api(k8s_api)

    def job_pods() -> list[client.V1Pod] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="job-name=valid").items
        return pods or None

    pods = eventually(job_pods, "the Job controller to create the Job's pod")
    assert pods[0].status.phase == "Pending"  # no kubelet: nothing ever runs it
    assert pods[0].metadata.owner_references[0].kind == "Job"


def _token_client(control_plane: ControlPlane, token: str) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = control_plane.url
    configuration.ssl_ca_cert = str(control_plane.ca_path)
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(configuration)


def test_service_account_token_is_forbidden_what_rbac_does_not_grant(
    control_plane: ControlPlane, k8s_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    token = core.create_namespaced_service_account_token(
        "reader",
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    ).status.token
    with _token_client(control_plane, token) as as_reader:
        reader_core = client.CoreV1Api(as_reader)
        with pytest.raises(ApiException) as forbidden:
            reader_core.list_namespaced_config_map(namespace)
        assert forbidden.value.status == 403

        rbac = client.RbacAuthorizationV1Api(k8s_api)
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="read-configmaps"),
                rules=[
                    client.V1PolicyRule(
                        api_groups=[""], resources=["configmaps"], verbs=["get", "list"]
                    )
                ],
            ),
        )
        bind_service_account(k8s_api, namespace, "reader", "read-configmaps")

        def allowed() -> bool | None:
            try:
                reader_core.list_namespaced_config_map(namespace)
            except ApiException as exc:
                if exc.status == 403:
                    return None
                raise
            return True

        eventually(allowed, "the RoleBinding to take effect")
        with pytest.raises(ApiException) as still_forbidden:
            reader_core.list_namespaced_secret(namespace)
        assert still_forbidden.value.status == 403


def test_deleted_namespace_is_finalized(k8s_api: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s_api)
    name = f"doomed-{secrets.token_hex(4)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(
        name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="content"))
    )
    core.delete_namespace(name)
    eventually(lambda: gone(lambda: core.read_namespace(name)), "the namespace to be deleted")
