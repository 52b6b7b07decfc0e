"""The operator's index reacting to watch events (real Redis; no API-server writes)."""

from __future__ import annotations

from typing import Any

import pytest

from agentstack_core.keys import StackRef
from agentstack_core.protocol import RedisClient
from agentstack_core.redis.tick import TickStore
from agentstack_operator.config import OperatorConfig
from agentstack_operator.coordinator import Operator
from agentstack_operator.parts import connect_parts
from tests.unit.operator_fakes import FakeKube

pytestmark = pytest.mark.asyncio


def _body(generation: int, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "team",
            "name": "demo",
            "uid": "uid-1",
            "generation": generation,
            "creationTimestamp": "2026-11-24T00:00:00Z",
        },
        "spec": {"goal": "g", "tickIntervalSeconds": 30},
        "status": status,
    }


async def test_the_echo_of_a_status_write_does_not_schedule_another(aredis: RedisClient) -> None:
    config = OperatorConfig()
    operator = Operator(config, connect_parts(config, FakeKube(), aredis))  # type: ignore[arg-type]
    await operator.observe(_body(1))
    assert "team/demo" in operator.status_writer.dirty  # a new stack: its status must be written
    assert (await TickStore(aredis, StackRef("team", "demo")).spec()) is not None
    record = operator.index["team/demo"]
    record.urgent = False
    operator.status_writer.discard("team/demo")  # as after a successful status write

    await operator.observe(_body(1, ticks=1, phase="Running"))  # the write, echoed by the watch
    assert operator.status_writer.dirty == set()

    await operator.observe(_body(2))  # a spec change is news
    assert "team/demo" in operator.status_writer.dirty
