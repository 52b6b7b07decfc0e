"""Who sees which stack: StackAccess over a fake cache and a fake Authorizer."""

from __future__ import annotations

import pytest

from agentstack_api.access import StackAccess
from agentstack_api.auth import User
from agentstack_api.errors import ApiError
from tests.unit import test_api_fakes as fakes

ALICE = User("alice")


def _access(allowed: set[str], *, tokens: dict[str, User] | None = None) -> StackAccess:
    cache = fakes.FakeCache(
        [
            fakes.stack("a", "one"),
            fakes.stack("a", "two", state="Paused"),
            fakes.stack("a", "three"),
            fakes.stack("b", "secret"),
            fakes.stack("c", "four", state="Paused"),
        ]
    )
    return StackAccess(cache, fakes.FakeAuthorizer(allowed, tokens=tokens))


@pytest.mark.asyncio
async def test_a_refused_caller_gets_403_whether_or_not_the_stack_exists() -> None:
    access = _access({"a"})
    for name in ("secret", "nope"):
        with pytest.raises(ApiError) as refused:
            await access.readable(ALICE, "b", name)
        assert (refused.value.status, refused.value.code) == (403, "Forbidden")
        assert "alice may not get agentstacks in b" in refused.value.message
    with pytest.raises(ApiError) as missing:
        await access.readable(ALICE, "a", "nope")
    assert (missing.value.status, missing.value.code) == (404, "NotFound")
    assert (await access.readable(ALICE, "a", "one"))["metadata"]["name"] == "one"


@pytest.mark.asyncio
async def test_rejected_credentials_are_401() -> None:
    access = _access({"a"}, tokens={"good": ALICE})
    assert await access.authenticate("Bearer good") == ALICE
    for header in (None, "Bearer bad", "Basic good"):
        with pytest.raises(ApiError) as rejected:
            await access.authenticate(header)
        assert (rejected.value.status, rejected.value.code) == (401, "Unauthorized")


@pytest.mark.asyncio
async def test_listing_shows_only_allowed_namespaces_in_order() -> None:
    access = _access({"a", "c"})
    listed = await access.listing(ALICE, limit=100)
    assert [(s.namespace, s.name) for s in listed.items] == [
        ("a", "one"),
        ("a", "three"),
        ("a", "two"),
        ("c", "four"),
    ]
    assert listed.nextCursor is None
    assert await access.listing(ALICE, limit=100, namespace="b") == listed.model_copy(
        update={"items": []}
    )


@pytest.mark.asyncio
async def test_listing_pages_resume_after_the_cursor_without_overlap() -> None:
    access = _access({"a", "b", "c"})
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await access.listing(ALICE, limit=2, cursor=cursor)
        pages += 1
        seen += [f"{s.namespace}/{s.name}" for s in page.items]
        if page.nextCursor is None:
            break
        assert page.nextCursor == seen[-1]
        cursor = page.nextCursor
    assert seen == ["a/one", "a/three", "a/two", "b/secret", "c/four"]
    assert pages == 3


@pytest.mark.asyncio
async def test_listing_filters_by_state_and_namespace() -> None:
    access = _access({"a", "b", "c"})
    paused = await access.listing(ALICE, limit=10, state="Paused")
    assert [s.name for s in paused.items] == ["two", "four"]
    assert [s.executionState for s in paused.items] == ["Paused", "Paused"]
    running_in_a = await access.listing(ALICE, limit=10, namespace="a", state="Running")
    assert [s.name for s in running_in_a.items] == ["one", "three"]


@pytest.mark.asyncio
async def test_a_listing_asks_once_per_namespace() -> None:
    access = _access({"a"})
    auth = access.auth
    assert isinstance(auth, fakes.FakeAuthorizer)
    await access.listing(ALICE, limit=100)
    assert auth.reviews == [("alice", "a"), ("alice", "b"), ("alice", "c")]
