"""Evals scored by the real engine after real ticks, against real Redis."""

from __future__ import annotations

import json

import pytest

from agentstack_core.evals import decode_scores
from agentstack_core.keys import StackKeys
from agentstack_core.protocol import RedisClient
from tests.integration.support import STACK, make_engine, publish, request

KEYS = StackKeys(STACK)
pytestmark = pytest.mark.asyncio

EVALS = [
    {"name": "on-topic", "artifacts": "*.md", "pattern": "offsite"},
    {
        "name": "shape",
        "artifacts": "t*.md",
        "sections": ["Addresses review feedback"],
        "minLength": 10,
    },
    {"name": "tools", "toolSuccess": True},
]


async def test_a_tick_is_scored_by_its_artifacts_into_its_result_and_history(
    aredis: RedisClient,
) -> None:
    await publish(aredis, {"goal": "Plan a team offsite", "evals": EVALS})
    result = (await make_engine(aredis).execute(request(1))).result
    assert result is not None
    artifacts = {n: json.loads(r) for n, r in (await aredis.hgetall(KEYS.artifacts)).items()}
    assert list(artifacts) == ["t1.md"]
    assert artifacts["t1.md"]["tick_id"] == request(1).tick_id
    # on-topic: its one check holds; shape: minLength holds, the section does not;
    # tools: no tool was called, so no score.
    assert decode_scores(result.scores) == {"on-topic": 1.0, "shape": 0.5}
    ((_id, entry),) = await aredis.xrange(KEYS.history)
    assert decode_scores(entry["scores"]) == {"on-topic": 1.0, "shape": 0.5}


async def test_a_tick_that_wrote_nothing_matching_has_no_score(aredis: RedisClient) -> None:
    await publish(aredis, {"goal": "Write release notes", "evals": EVALS[:1]})
    engine = make_engine(aredis)
    first = (await engine.execute(request(1))).result
    assert first is not None
    assert decode_scores(first.scores) == {"on-topic": 0.0}  # written, off topic
    await publish(aredis, {"goal": "Write release notes"})  # evals gone: nothing scored
    second = (await engine.execute(request(2))).result
    assert second is not None
    assert second.scores == ""
