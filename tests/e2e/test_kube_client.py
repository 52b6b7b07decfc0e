"""The async Kubernetes layer against a real kube-apiserver: every verb, a followed
collection, and each refusal as its typed error."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from kubernetes import client

from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    UnauthorizedError,
)
from agentstack_core.kube.following import follow
from agentstack_core.kube.manifests import Listing, ObjectMeta, WatchEvent
from agentstack_core.kube.paths import resource_path
from agentstack_core.kube.reviews import (
    SELF_SUBJECT_ACCESS_REVIEWS,
    SUBJECT_ACCESS_REVIEWS,
    TOKEN_REVIEWS,
    ResourceAttributes,
    ReviewedUser,
    allowed,
    self_subject_access_review,
    subject_access_review,
    token_review,
)
from agentstack_core.kube.settings import KubeSettings, from_kubeconfig
from agentstack_devkit.controlplane import ControlPlane
from tests.e2e.accounts import account


@pytest_asyncio.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    """The admin's client, configured from the control plane's kubeconfig."""
    kube = KubeClient(from_kubeconfig(str(control_plane.kubeconfig_path)))
    yield kube
    await kube.close()


def _configmaps(namespace: str, name: str | None = None) -> str:
    return resource_path("", "v1", "configmaps", namespace=namespace, name=name)


def _configmap(name: str, **data: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"made-by": "kube-client-test"}},
        "data": data,
    }


@pytest.mark.asyncio
async def test_an_object_goes_through_every_verb(kube: KubeClient, namespace: str) -> None:
    created = await kube.create(_configmaps(namespace), _configmap("one", a="1"))
    with pytest.raises(ConflictError):
        await kube.create(_configmaps(namespace), _configmap("one"))
    path = _configmaps(namespace, "one")
    assert (await kube.get(path))["data"] == {"a": "1"}
    listed = await kube.list(_configmaps(namespace), {"labelSelector": "made-by=kube-client-test"})
    assert [ObjectMeta.of(i).name for i in listed.items] == ["one"]
    assert listed.resource_version
    assert listed.kind == "ConfigMapList"

    replaced = await kube.replace(path, {**created, "data": {"a": "2"}})
    with pytest.raises(ConflictError):  # the version read first has moved on
        await kube.replace(path, {**created, "data": {"a": "3"}})
    assert ObjectMeta.of(replaced).resource_version != ObjectMeta.of(created).resource_version

    await kube.merge_patch(path, {"data": {"b": "1"}})
    await kube.json_patch(path, [{"op": "replace", "path": "/data/a", "value": "4"}])
    with pytest.raises(InvalidError):
        await kube.json_patch(path, [{"op": "test", "path": "/data/a", "value": "2"}])
    assert (await kube.get(path))["data"] == {"a": "4", "b": "1"}

    await kube.delete(path)
    with pytest.raises(NotFoundError) as gone:
        await kube.get(path)
    assert gone.value.reason == "NotFound"
    assert "one" in gone.value.message


@pytest.mark.asyncio
async def test_a_followed_collection_is_listed_then_watched(
    kube: KubeClient, namespace: str
) -> None:
    await kube.create(_configmaps(namespace), _configmap("before"))
    # Only the test's own: the controller manager adds kube-root-ca.crt to a new
    # namespace whenever it gets to it (on a loaded machine, after the list).
    following = follow(kube, _configmaps(namespace), {"labelSelector": "made-by=kube-client-test"})
    async with contextlib.aclosing(following):
        first = await anext(following)
        assert isinstance(first, Listing)
        assert "before" in [ObjectMeta.of(i).name for i in first.items]
        await kube.create(_configmaps(namespace), _configmap("after"))
        await kube.merge_patch(_configmaps(namespace, "after"), {"data": {"x": "1"}})
        await kube.delete(_configmaps(namespace, "before"))
        seen: list[tuple[str, str]] = []
        while len(seen) < 3:
            change = await anext(following)
            assert isinstance(change, WatchEvent)
            seen.append((change.type, ObjectMeta.of(change.object).name))
    assert seen == [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "before")]


@pytest.mark.asyncio
async def test_refusals_are_typed_and_a_callers_token_is_theirs_alone(
    kube: KubeClient, k8s_api: client.ApiClient, namespace: str
) -> None:
    await kube.create(_configmaps(namespace), _configmap("guarded"))
    stranger = KubeClient(
        KubeSettings(
            kube.settings.server,
            _Token("not-a-token"),
            ca_file=kube.settings.ca_file,
        )
    )
    try:
        with pytest.raises(UnauthorizedError):
            await stranger.get(_configmaps(namespace, "guarded"))
    finally:
        await stranger.close()
    token = account(k8s_api, namespace, "onlooker")  # may get stacks, nothing else
    with pytest.raises(ForbiddenError) as refused:
        await kube.merge_patch(_configmaps(namespace, "guarded"), {"data": {"x": "1"}}, token=token)
    assert "onlooker" in refused.value.message
    assert "data" not in await kube.get(_configmaps(namespace, "guarded"))


@pytest.mark.asyncio
async def test_reviews_say_who_a_token_is_and_what_it_may_do(
    kube: KubeClient, k8s_api: client.ApiClient, namespace: str
) -> None:
    token = account(k8s_api, namespace, "reviewed")
    user = ReviewedUser.of(await kube.create(TOKEN_REVIEWS, token_review(token)))
    assert user is not None
    assert user.username == f"system:serviceaccount:{namespace}:reviewed"
    assert "system:serviceaccounts" in user.groups
    assert ReviewedUser.of(await kube.create(TOKEN_REVIEWS, token_review("nope"))) is None

    get_stacks = ResourceAttributes("get", "agentstack.dev", "agentstacks", namespace)
    patch_stacks = ResourceAttributes("patch", "agentstack.dev", "agentstacks", namespace)
    for attributes, expected in ((get_stacks, True), (patch_stacks, False)):
        review = subject_access_review(attributes, user.username, user.groups, user.uid)
        assert allowed(await kube.create(SUBJECT_ACCESS_REVIEWS, review)) is expected
    own = self_subject_access_review(patch_stacks)  # the admin may
    assert allowed(await kube.create(SELF_SUBJECT_ACCESS_REVIEWS, own))


class _Token:
    def __init__(self, token: str) -> None:
        self.token = token

    def authorization(self) -> str | None:
        return f"Bearer {self.token}"
