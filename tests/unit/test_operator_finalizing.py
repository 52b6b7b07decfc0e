"""The cleanup finalizer: added once without overwriting anyone's, cleanup retried and
given up on in time, released exactly when the cleanup is over."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentstack_core.keys import StackRef
from agentstack_core.kube.errors import KubeError
from agentstack_operator import finalizing
from agentstack_operator.finalizing import (
    FINALIZER,
    Finalizer,
    adding,
    must_clean_up,
    releasing,
    removing,
)
from tests.helpers import Clock

from .operator_fakes import FakeKube, manifest

REF = StackRef("team", "demo")
OTHER = "example.com/keep"


def stored(kube: FakeKube, *, finalizers: list[str] | None = None, deleting: bool = False) -> None:
    body = manifest()
    body["metadata"]["resourceVersion"] = "7"
    if finalizers is not None:
        body["metadata"]["finalizers"] = finalizers
    if deleting:
        body["metadata"]["deletionTimestamp"] = "2026-11-28T00:00:00Z"
    kube.stacks[REF] = body


def finalizers_of(kube: FakeKube) -> list[str] | None:
    found: list[str] | None = kube.stacks[REF]["metadata"].get("finalizers")
    return found


class Cleanups:
    """The cleanup callable: fails ``failures`` times, then records success."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[tuple[StackRef, str]] = []
        self.done = asyncio.Event()

    async def __call__(self, ref: StackRef, uid: str) -> None:
        self.calls.append((ref, uid))
        if len(self.calls) <= self.failures:
            raise ConnectionError("Redis is down")
        self.done.set()


@given(
    st.one_of(st.none(), st.lists(st.sampled_from([OTHER, "a/b", FINALIZER]), max_size=3)),
    st.booleans(),
)
def test_the_patches_keep_every_other_finalizer(
    finalizers: list[str] | None, deleting: bool
) -> None:
    kube = FakeKube()
    stored(kube, finalizers=finalizers, deleting=deleting)
    body = kube.stacks[REF]
    patch = adding(body)
    if deleting or FINALIZER in (finalizers or []):
        assert patch is None
    else:
        assert patch is not None
        asyncio.run(kube.patch_stack(REF, patch))
        assert finalizers_of(kube) == [*(finalizers or []), FINALIZER]
        body = kube.stacks[REF]
    if not deleting:
        assert removing(body) is None  # not being deleted: nothing to release
        body["metadata"]["deletionTimestamp"] = "2026-11-28T00:00:00Z"
    release = removing(body)
    if FINALIZER not in (body["metadata"].get("finalizers") or []):
        assert release is None
        return
    assert release is not None
    before = list(body["metadata"]["finalizers"])
    asyncio.run(kube.patch_stack(REF, release))
    before.remove(FINALIZER)
    assert finalizers_of(kube) == before


@given(
    finalizers=st.lists(st.sampled_from(["a.example/x", "b.example/y", FINALIZER]), unique=True),
    deleting=st.booleans(),
)
def test_releasing_takes_only_this_finalizer_off_deleted_or_not(
    finalizers: list[str], deleting: bool
) -> None:
    """What uninstalling does (agentstack uninstall): no operator will put it back."""
    kube = FakeKube()
    stored(kube, finalizers=finalizers, deleting=deleting)
    patch = releasing(kube.stacks[REF])
    if FINALIZER not in finalizers:
        assert patch is None
        return
    assert patch is not None
    asyncio.run(kube.patch_stack(REF, patch))
    assert finalizers_of(kube) == [name for name in finalizers if name != FINALIZER]


@pytest.mark.asyncio
async def test_a_stale_view_never_overwrites_a_finalizer_added_meanwhile() -> None:
    kube = FakeKube()
    stored(kube)
    seen = copy.deepcopy(kube.stacks[REF])  # the watch event, before another controller's edit
    kube.stacks[REF]["metadata"]["finalizers"] = [OTHER]
    kube.stacks[REF]["metadata"]["resourceVersion"] = "8"
    await Finalizer(kube, Cleanups()).observe(seen)
    assert finalizers_of(kube) == [OTHER, FINALIZER]  # the first patch failed its test
    assert [patch[0]["op"] for _, patch in kube.stack_patches] == ["test", "test"]


@pytest.mark.asyncio
async def test_a_stack_that_has_it_is_left_alone() -> None:
    kube = FakeKube()
    stored(kube, finalizers=[FINALIZER])
    await Finalizer(kube, Cleanups()).observe(kube.stacks[REF])
    assert kube.stack_patches == []


@pytest.mark.asyncio
async def test_a_failing_add_is_logged_and_left_to_the_next_event() -> None:
    kube = FakeKube()
    stored(kube)
    kube.stack_patch_error = KubeError(503, "ServiceUnavailable", "unavailable")
    await Finalizer(kube, Cleanups()).observe(kube.stacks[REF])  # does not raise
    kube.stack_patch_error = None
    await Finalizer(kube, Cleanups()).observe(kube.stacks[REF])
    assert finalizers_of(kube) == [FINALIZER]


@pytest.mark.asyncio
async def test_a_deleted_stack_is_cleaned_up_once_then_released() -> None:
    kube = FakeKube()
    stored(kube, finalizers=[OTHER, FINALIZER], deleting=True)
    cleanups = Cleanups()
    finalizer = Finalizer(kube, cleanups)
    body = kube.stacks[REF]
    assert must_clean_up(body)
    for _ in range(3):  # several events of the same deletion: one cleanup
        await finalizer.observe(body)
    await asyncio.wait_for(cleanups.done.wait(), 5)
    await _idle(finalizer)
    assert cleanups.calls == [(REF, "uid-demo")]
    assert finalizers_of(kube) == [OTHER]


@pytest.mark.asyncio
async def test_a_failing_cleanup_is_retried_and_the_stack_held_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(finalizing, "BACKOFF_MIN", 0.001)
    kube = FakeKube()
    stored(kube, finalizers=[FINALIZER], deleting=True)
    cleanups = Cleanups(failures=3)
    finalizer = Finalizer(kube, cleanups)
    await finalizer.observe(kube.stacks[REF])
    await asyncio.wait_for(cleanups.done.wait(), 5)
    await _idle(finalizer)
    assert len(cleanups.calls) == 4
    assert finalizers_of(kube) == []
    # The release came only after the cleanup succeeded: one patch, after the 4th call.
    assert len(kube.stack_patches) == 1


@pytest.mark.asyncio
async def test_a_cleanup_failing_past_the_timeout_is_given_up_and_released() -> None:
    kube = FakeKube()
    stored(kube, finalizers=[FINALIZER], deleting=True)
    clock = Clock(0.0)
    gave_up: list[tuple[StackRef, str, str]] = []

    async def report(ref: StackRef, uid: str, error: str) -> None:
        gave_up.append((ref, uid, error))

    cleanups = Cleanups(failures=10**6)

    async def advancing_sleep(seconds: float) -> None:
        clock.now += seconds
        await asyncio.sleep(0)

    finalizer = Finalizer(
        kube, cleanups, on_gave_up=report, timeout=10.0, clock=clock, sleep=advancing_sleep
    )
    await finalizer.observe(kube.stacks[REF])
    await _idle(finalizer)
    assert gave_up == [(REF, "uid-demo", "Redis is down")]
    assert finalizers_of(kube) == []
    assert clock.now <= 10.0  # given up on before the timeout passed
    assert 3 < len(cleanups.calls) < 10  # retried with back-off (0.5, 1, 2, 4 s …)


@pytest.mark.asyncio
async def test_a_stack_created_again_under_the_name_keeps_its_finalizer() -> None:
    """Released meanwhile (by another replica) and created again: the late release
    finds another object under the name and leaves its finalizer alone."""
    kube = FakeKube()
    stored(kube, finalizers=[FINALIZER], deleting=True)
    old = copy.deepcopy(kube.stacks[REF])
    old["metadata"]["finalizers"] = [OTHER, FINALIZER]  # a stale view: its test fails
    stored(kube, finalizers=[FINALIZER], deleting=True)  # the new one, being deleted too
    kube.stacks[REF]["metadata"]["uid"] = "uid-new"  # (its own cleanup must run first)
    finalizer = Finalizer(kube, Cleanups())
    await finalizer.observe(old)
    await _idle(finalizer)
    assert finalizers_of(kube) == [FINALIZER]
    assert len(kube.stack_patches) == 1  # the stale attempt only


@pytest.mark.asyncio
async def test_a_stack_gone_before_its_release_is_fine() -> None:
    kube = FakeKube()
    stored(kube, finalizers=[FINALIZER], deleting=True)
    body = kube.stacks.pop(REF)  # removed by hand meanwhile
    finalizer = Finalizer(kube, Cleanups())
    await finalizer.observe(body)
    await _idle(finalizer)
    assert len(kube.stack_patches) == 1  # one attempt, answered 404


async def _idle(finalizer: Finalizer, timeout: float = 5.0) -> None:
    await asyncio.wait_for(finalizer.wait(), timeout)
    assert finalizer.running == 0


def test_backoff_doubles_and_is_capped() -> None:
    waits: list[Any] = [finalizing.backoff(n) for n in range(10)]
    assert waits[:3] == [0.5, 1.0, 2.0]
    assert max(waits) == finalizing.BACKOFF_MAX


@pytest.mark.asyncio
async def test_a_hung_cleanup_attempt_is_cut_off_and_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(finalizing, "BACKOFF_MIN", 0.001)
    kube = FakeKube()
    stored(kube, finalizers=[FINALIZER], deleting=True)
    calls = 0
    done = asyncio.Event()

    async def hangs_once(ref: StackRef, uid: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # a Redis that never answers
        done.set()

    finalizer = Finalizer(kube, hangs_once, attempt_timeout=0.05)
    await finalizer.observe(kube.stacks[REF])
    await asyncio.wait_for(done.wait(), 5)
    await _idle(finalizer)
    assert calls == 2
    assert finalizers_of(kube) == []


@pytest.mark.asyncio
async def test_the_release_waits_for_the_api_server() -> None:
    kube = FakeKube()
    stored(kube, finalizers=[FINALIZER], deleting=True)
    kube.stack_patch_error = KubeError(503, "ServiceUnavailable", "unavailable")
    failed_releases = 0
    three_failed = asyncio.Event()
    resume = asyncio.Event()

    async def between_attempts(seconds: float) -> None:
        nonlocal failed_releases
        failed_releases += 1
        if failed_releases == 3:
            three_failed.set()
            await resume.wait()

    cleanups = Cleanups()
    finalizer = Finalizer(kube, cleanups, sleep=between_attempts)
    await finalizer.observe(kube.stacks[REF])
    await asyncio.wait_for(three_failed.wait(), 5)  # the API server failed it three times
    assert cleanups.calls == [(REF, "uid-demo")]
    assert finalizers_of(kube) == [FINALIZER]
    assert finalizer.running == 1
    kube.stack_patch_error = None  # ... and answers again
    resume.set()
    await _idle(finalizer)
    assert finalizers_of(kube) == []
    assert len(cleanups.calls) == 1  # the cleanup itself ran once
