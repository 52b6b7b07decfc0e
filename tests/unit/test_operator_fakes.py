"""The operator's fakes stay the classes they stand in for: same methods, same signatures.

Each fake in :mod:`tests.unit.operator_fakes` replaces one real neighbour of the parts
under test (``Kube``, the Redis lanes and results, the dispatcher, the status writer,
the leader's Events, and the rest of :class:`~agentstack_operator.parts.OperatorParts`).
A fake method the real class lacks, or takes other parameters than the real one, would
let a unit test pass against an API nobody calls: these tests fail instead. The fakes
keep real semantics where they have any (``patch_stack`` applies JSON patches with the
``jsonpatch`` library, not a re-implementation).
"""

from __future__ import annotations

import pytest

from agentstack_operator import folding, waking
from agentstack_operator.budgets import BudgetApi, Ledgers, RedisLedgers
from agentstack_operator.dispatching import Dispatcher, JobCreator, RedisLanes, TickSink
from agentstack_operator.finalizing import FinalizerKube
from agentstack_operator.folding import (
    ApprovalReader,
    RedisResults,
    ResultStream,
    Scheduler,
    StatusMarks,
    TickLedger,
    UsageCounters,
)
from agentstack_operator.kube import Kube
from agentstack_operator.parts import Credentials, Fleet, RedisFleet, Triggers
from agentstack_operator.secretchecking import SecretReader
from agentstack_operator.statuswriting import EventSink, LeaderEvents, StatusSink, StatusWriter
from agentstack_operator.tickcredentials import Ensures, SecretStore, TickCredentials
from agentstack_operator.triggering import TriggerApi, TriggerHub
from agentstack_operator.waking import RedisWakeups, WakeupSource
from tests.helpers import assert_same_signature, public_methods

from .operator_fakes import (
    FakeCredentials,
    FakeEvents,
    FakeFleet,
    FakeKube,
    FakeLanes,
    FakeLedgers,
    FakeResults,
    FakeScheduler,
    FakeStatus,
    FakeTriggers,
    FakeWakeups,
)

STAND_INS: list[tuple[type, type, tuple[type, ...]]] = [
    (
        FakeKube,
        Kube,
        (
            JobCreator,
            StatusSink,
            EventSink,
            SecretReader,
            SecretStore,
            FinalizerKube,
            TriggerApi,
            BudgetApi,
        ),
    ),
    (FakeLanes, RedisLanes, (TickSink,)),
    (FakeResults, RedisResults, (ResultStream, UsageCounters, ApprovalReader, TickLedger)),
    (FakeScheduler, Dispatcher, (Scheduler,)),
    (FakeStatus, StatusWriter, (StatusMarks,)),
    (FakeEvents, LeaderEvents, (folding.EventPoster, waking.EventPoster)),
    (FakeFleet, RedisFleet, (Fleet,)),
    (FakeWakeups, RedisWakeups, (WakeupSource,)),
    (FakeTriggers, TriggerHub, (Triggers,)),
    (FakeCredentials, TickCredentials, (Credentials, Ensures)),
    (FakeLedgers, RedisLedgers, (Ledgers,)),
]
"""(fake, the real class it stands in for, the Protocols the parts under test ask for)."""

METHODS = [
    pytest.param(fake, real, name, id=f"{fake.__name__}.{name}")
    for fake, real, _ in STAND_INS
    for name in public_methods(fake)
]
PROTOCOL_METHODS = [
    pytest.param(fake, real, protocol, name, id=f"{protocol.__name__}.{name}-{fake.__name__}")
    for fake, real, protocols in STAND_INS
    for protocol in protocols
    for name in public_methods(protocol)
]


@pytest.mark.parametrize(("fake", "real", "name"), METHODS)
def test_every_method_of_a_fake_is_the_real_classes_with_its_signature(
    fake: type, real: type, name: str
) -> None:
    assert name in public_methods(real), f"{real.__name__} has no method {name}"
    assert_same_signature(getattr(fake, name), getattr(real, name))


@pytest.mark.parametrize(("fake", "real", "protocol", "name"), PROTOCOL_METHODS)
def test_a_fake_answers_every_protocol_its_real_class_satisfies(
    fake: type, real: type, protocol: type, name: str
) -> None:
    """The parts under test ask for Protocols: whatever they may call, the fake has
    (and so does the real class, with the same parameters)."""
    for cls in (fake, real):
        assert name in public_methods(cls), f"{cls.__name__} has no method {name}"
        assert_same_signature(getattr(cls, name), getattr(protocol, name), annotations=False)


def test_every_fake_is_compared() -> None:
    """A new fake in operator_fakes joins :data:`STAND_INS`, or this fails."""
    from tests.unit import operator_fakes

    fakes = {
        value
        for name, value in vars(operator_fakes).items()
        if name.startswith("Fake") and isinstance(value, type)
    }
    assert fakes == {fake for fake, _, _ in STAND_INS}
