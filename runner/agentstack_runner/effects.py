"""From validated actions to Redis writes: pure, so every rule is testable without Redis.

:func:`plan_effects` takes an agent's actions and the state it saw, applies the
project's rules (a message needs a teammate as recipient, memory has a size cap, a
review needs an existing artifact…), and returns the list of write operations for the
step's atomic commit, plus what was applied and what was refused and why. A refused
action does not fail the step: it is recorded in the trace, as a model's mistakes
should be.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from agentstack_core.keys import StackKeys
from agentstack_core.records import FeedRecord, MessageRecord
from agentstack_core.state import (
    FEED_MAXLEN,
    INBOX_MAXLEN,
    AgentContext,
    Op,
    input_outcome,
    xadd_op,
)
from agentstack_runner.actions import (
    PostUpdate,
    Reply,
    ReviewArtifact,
    SendMessage,
    UpdateMemory,
    UpdatePlan,
    WriteArtifact,
)

MAX_MEMORY_KEYS = 100
MAX_PLAN_TASKS = 200
MAX_ARTIFACTS = 500


@dataclass
class Effects:
    ops: list[Op] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    """One short line per applied action, for the trace."""
    refused: list[str] = field(default_factory=list)
    """One line per refused action: what and why."""
    progressed: bool = False
    """Whether shared work moved: a message, an artifact, the plan or a review.

    Memory notes and feed posts alone do not count: a team that only reports "nothing
    to do" is idle, and the operator backs its interval off.
    """


def plan_effects(
    *,
    keys: StackKeys,
    agent: str,
    team: tuple[str, ...],
    tick_id: str,
    reply: Reply,
    context: AgentContext,
    now: float | None = None,
) -> Effects:
    """Translate ``reply``'s actions into write ops against the state in ``context``."""
    effects = Effects()
    moment = time.time() if now is None else now
    stamp = repr(moment)
    plan = [dict(task) for task in context.plan]
    plan_changed = False
    memory_keys = set(context.memory)
    artifacts = {name: dict(record) for name, record in context.artifacts.items()}

    def task(task_id: object) -> dict[str, Any] | None:
        return next((t for t in plan if t.get("id") == task_id), None) if task_id else None

    for action in reply.actions:
        if isinstance(action, SendMessage):
            if action.to not in team or action.to == agent:
                effects.refused.append(f"send_message to {action.to!r}: not a teammate")
                continue
            effects.ops.append(
                xadd_op(
                    keys.inbox(action.to),
                    MessageRecord(sender=agent, content=action.content, tick_id=tick_id, at=moment),
                    INBOX_MAXLEN,
                )
            )
            effects.applied.append(f"message to {action.to}")
            effects.progressed = True
        elif isinstance(action, UpdateMemory):
            if action.value is None:
                effects.ops.append(("HDEL", keys.memory(agent), [action.key]))
                memory_keys.discard(action.key)
                effects.applied.append(f"forgot {action.key}")
                continue
            if action.key not in memory_keys and len(memory_keys) >= MAX_MEMORY_KEYS:
                effects.refused.append(f"update_memory {action.key!r}: memory is full")
                continue
            memory_keys.add(action.key)
            effects.ops.append(("HSET", keys.memory(agent), [action.key, action.value]))
            effects.applied.append(f"remembered {action.key}")
        elif isinstance(action, WriteArtifact):
            previous = artifacts.get(action.name)
            if previous is None and len(artifacts) >= MAX_ARTIFACTS:
                effects.refused.append(f"write_artifact {action.name!r}: too many artifacts")
                continue
            record: dict[str, Any] = {
                "content": action.content,
                "status": "review",
                "author": agent,
                "task_id": action.task_id or (previous or {}).get("task_id"),
                "version": int((previous or {}).get("version", 0)) + 1,
                "tick_id": tick_id,
                "updated_at": stamp,
                "feedback": "",
            }
            artifacts[action.name] = record
            effects.ops.append(("HSET", keys.artifacts, [action.name, json.dumps(record)]))
            effects.applied.append(f"wrote {action.name} v{record['version']}")
            effects.progressed = True
        elif isinstance(action, UpdatePlan):
            for new in action.tasks:
                existing = task(new.id)
                if existing is None:
                    if len(plan) >= MAX_PLAN_TASKS:
                        effects.refused.append(f"update_plan {new.id!r}: plan is full")
                        continue
                    plan.append(new.model_dump(exclude_none=True))
                else:
                    existing.clear()
                    existing.update(new.model_dump(exclude_none=True))
                plan_changed = True
            effects.applied.append(f"plan: {len(action.tasks)} task(s)")
            effects.progressed = True
        elif isinstance(action, ReviewArtifact):
            reviewed = artifacts.get(action.name)
            if reviewed is None:
                effects.refused.append(f"review_artifact {action.name!r}: no such artifact")
                continue
            reviewed.update(
                status="accepted" if action.verdict == "accept" else "revise",
                feedback=action.feedback,
                reviewer=agent,
                updated_at=stamp,
            )
            effects.ops.append(("HSET", keys.artifacts, [action.name, json.dumps(reviewed)]))
            linked = task(reviewed.get("task_id"))
            if linked is not None:
                if action.verdict == "accept":
                    linked["status"] = "done"
                    linked.pop("note", None)
                else:
                    linked["status"] = "todo"
                    linked["note"] = action.feedback or "revise"
                plan_changed = True
            effects.applied.append(f"{action.verdict} {action.name}")
            effects.progressed = True
        elif isinstance(action, PostUpdate):
            effects.ops.append(
                xadd_op(
                    keys.feed,
                    FeedRecord(agent=agent, content=action.content, tick_id=tick_id, at=moment),
                    FEED_MAXLEN,
                )
            )
            effects.applied.append("posted an update")
    if plan_changed:
        effects.ops.append(("SET", keys.plan, [json.dumps(plan)]))
    if context.inbox:
        effects.ops.append(("HSET", keys.cursors, [agent, context.inbox[-1].id]))
    for message in context.inbox:
        if message.input:
            outcome = input_outcome(agent=agent, tick_id=tick_id, at=moment)
            effects.ops.append(("HSET", keys.input_outcomes, [str(message.input), outcome]))
            effects.applied.append(f"read input #{message.input}")
    return effects
