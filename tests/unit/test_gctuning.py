"""Freezing after full collections, with the real collector: what a full collection
kept is frozen, younger collections freeze nothing, and a thaw gives it all back."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from agentstack_operator.config import OperatorConfig
from agentstack_operator.gctuning import FullCollectionFreezer, tune_collector
from tests.helpers import Clock


@pytest.fixture
def clock() -> Iterator[Clock]:
    yield Clock(0.0)
    gc.unfreeze()


def test_a_full_collection_freezes_its_survivors_and_a_thaw_returns_them(clock: Clock) -> None:
    freezer = FullCollectionFreezer(thaw_seconds=60.0, clock=clock)
    kept = [{"stack": n} for n in range(1000)]
    freezer.install()
    try:
        gc.collect(1)  # a younger generation: nothing frozen
        assert freezer.freezes == 0
        gc.collect()
        assert freezer.freezes == 1
        frozen = gc.get_freeze_count()
        assert frozen >= len(kept)  # the survivors, ``kept`` among them
        assert id(kept) not in {id(obj) for obj in gc.get_objects()}  # out of every generation

        clock.now = 61.0  # the period is over: this full collection thaws ...
        gc.collect()
        assert (freezer.thaws, gc.get_freeze_count()) == (1, 0)
        gc.collect()  # ... and the next one walks everything, then freezes again
        assert freezer.freezes == 2
        assert gc.get_freeze_count() >= len(kept)
    finally:
        freezer.uninstall()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert freezer.freezes == 2  # uninstalled: no more freezing


def test_garbage_is_never_frozen(clock: Clock) -> None:
    class Node:
        other: object = None

    freezer = FullCollectionFreezer(thaw_seconds=60.0, clock=clock)
    freezer.install()
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle ...
        witness = weakref.ref(a)
        del a, b  # ... that is garbage now
        gc.collect()
        assert freezer.freezes == 1
        assert witness() is None  # collected, not frozen alive
    finally:
        freezer.uninstall()


def test_tuning_sets_the_young_threshold_and_undoes_everything() -> None:
    before = gc.get_threshold()
    undo = tune_collector(20_000, 60.0)
    try:
        assert gc.get_threshold() == (20_000, *before[1:])
        gc.collect()
        assert gc.get_freeze_count() > 0  # the freezer is installed
    finally:
        undo()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    undo = tune_collector(0, 0)  # both off: CPython's collector as it was
    try:
        assert gc.get_threshold() == before
        gc.collect()
        assert gc.get_freeze_count() == 0
    finally:
        undo()


def test_the_settings_come_from_the_environment_and_negatives_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (OperatorConfig.from_env().gc_gen0_threshold, OperatorConfig().gc_thaw_seconds) == (
        20_000,
        3600.0,
    )
    monkeypatch.setenv("AGENTSTACK_GC_GEN0_THRESHOLD", "0")
    monkeypatch.setenv("AGENTSTACK_GC_THAW_SECONDS", "600")
    config = OperatorConfig.from_env()
    assert (config.gc_gen0_threshold, config.gc_thaw_seconds) == (0, 600.0)
    monkeypatch.setenv("AGENTSTACK_GC_THAW_SECONDS", "-1")
    with pytest.raises(ValueError, match="AGENTSTACK_GC_THAW_SECONDS=-1: must be 0"):
        OperatorConfig.from_env()
