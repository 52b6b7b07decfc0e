"""A stack's life in Redis: the operator publishes its spec, and deletes it whole.

The spec hash is the stack's life: every write script of the tick path checks it
(``alive.lua``), so once :func:`delete_stack` has removed it, no tick in flight can
write a key again — and every key a script creates is named in the stack's index set,
so deletion removes exactly the stack's keys without scanning the keyspace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import RedisClient
from agentstack_core.records import PublishedSpec
from agentstack_core.redis.script import LuaScript

UNLINK_BATCH = 500


@dataclass(frozen=True)
class _Publish:
    published: PublishedSpec


_PUBLISH = LuaScript(
    __file__, "publish", keys=("spec", "index"), args=_Publish, hashes={"spec": PublishedSpec}
)


async def publish_spec(
    client: RedisClient, stack: StackRef, generation: int, spec: dict[str, Any], uid: str = ""
) -> bool:
    """Make ``spec`` at ``generation`` the one runners execute (the operator calls this).

    Returns ``False`` when a newer generation of the same incarnation is published
    already (a replica with a stale view must not roll a stack back).
    """
    record = PublishedSpec(
        generation=generation,
        spec=json.dumps(spec, sort_keys=True),
        state=str(spec.get("executionState", "Running")),
        uid=uid,
    )
    result = await _PUBLISH(client, _Publish(published=record), keys=StackKeys(stack))
    return bool(result == 1)


async def delete_stack(client: RedisClient, stack: StackRef) -> int:
    """Remove every key of ``stack``; returns how many were deleted.

    The spec goes first: from then on every write script finds the stack gone, so no
    tick in flight can add a key behind the clean-up. Then the keys the index names,
    then the index.
    """
    redis: Any = client  # see RedisClient: redis-py's annotations don't fit
    keys = StackKeys(stack)
    deleted = int(await redis.unlink(keys.spec))
    names = sorted({str(key) for key in await redis.smembers(keys.index)})
    for start in range(0, len(names), UNLINK_BATCH):
        deleted += int(await redis.unlink(*names[start : start + UNLINK_BATCH]))
    deleted += int(await redis.unlink(keys.index))
    return deleted
