"""What an agent is told: its role's system prompt, and the state it acts on.

The user message carries the agent's view of the stack as one fenced JSON block
(:func:`render_context`). Real models read it as structured context; the offline
``scripted`` provider parses it back (:func:`extract_context`) to act
deterministically on the same information a real model would get.

The block is compact JSON encoded by ``orjson``: indentation costs prompt tokens on
every call and, through the standard library's pure-Python indenting encoder, was one
of the runner's larger costs per agent step.
"""

from __future__ import annotations

from typing import Any

import orjson

from agentstack_core.spec import AgentSpec, StackSpec
from agentstack_core.state import AgentContext, InboxMessage
from agentstack_runner.actions import SCHEMA_HINT

ROLE_PROMPTS = {
    "planner": (
        "You are the planner of a small autonomous team. Turn the goal, the reviewer's "
        "feedback and the team's messages into a short plan of concrete tasks "
        "(update_plan), and tell the builder what to do next (send_message)."
    ),
    "builder": (
        "You are the builder. Take the next task that is todo or sent back for revision, "
        "produce its artifact (write_artifact with the task's id), mark the task for "
        "review (update_plan) and ask the reviewer to look at it (send_message)."
    ),
    "reviewer": (
        "You are the reviewer. Review every artifact waiting for review against the goal "
        "and its task: accept it, or send it back with specific feedback "
        "(review_artifact)."
    ),
    "communicator": (
        "You are the communicator. Write one short progress update for the people "
        "watching this team (post_update): what was done, what is next, any blocker."
    ),
}

ARTIFACT_PREVIEW_CHARS = 1_500
ARTIFACTS_IN_CONTEXT = 12
"""Artifacts shown per prompt: those awaiting review or revision first, then the most
recently updated. Without a bound, every prompt of a long-lived stack grows with all the
work it ever produced (and so do tokens and runner CPU)."""
_BLOCK_START = "```json\n"
_BLOCK_END = "\n```"


def system_prompt(agent: AgentSpec) -> str:
    base = agent.system_prompt or ROLE_PROMPTS.get(agent.role, "")
    return f"{base}\n\n{SCHEMA_HINT}"


def context_document(
    spec: StackSpec, agent: AgentSpec, context: AgentContext, *, stack: str, tick_id: str
) -> dict[str, Any]:
    """The agent's view as plain data (also what the scripted provider reads)."""
    return {
        "stack": stack,
        "tick": tick_id,
        "goal": spec.goal,
        "agent": {"name": agent.name, "role": agent.role},
        "team": [{"name": member.name, "role": member.role} for member in spec.agents],
        "plan": context.plan,
        "artifacts": [
            {
                "name": name,
                "status": record.get("status"),
                "version": record.get("version"),
                "author": record.get("author"),
                "task_id": record.get("task_id"),
                "feedback": record.get("feedback", ""),
                "content": str(record.get("content", ""))[:ARTIFACT_PREVIEW_CHARS],
            }
            for name, record in _relevant(context.artifacts)
        ],
        "recent_updates": context.feed,
        "memory": context.memory,
        "inbox": [_inbox_entry(m) for m in context.inbox],
    }


def _inbox_entry(message: InboxMessage) -> dict[str, Any]:
    """A message as the agent sees it; an input (from a person or a system, not a
    teammate) carries its number."""
    entry: dict[str, Any] = {"from": message.sender, "content": message.content}
    if message.input:
        entry["input"] = message.input
    return entry


def _relevant(artifacts: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    def rank(item: tuple[str, dict[str, Any]]) -> tuple[bool, float]:
        _name, record = item
        pending = record.get("status") in ("review", "revise")
        return (not pending, -float(record.get("updated_at") or 0))

    chosen = sorted(artifacts.items(), key=rank)[:ARTIFACTS_IN_CONTEXT]
    return sorted(chosen)


def render_context(document: dict[str, Any]) -> str:
    return (
        f"Current state of your team, as JSON:\n{_BLOCK_START}"
        + orjson.dumps(document).decode()
        + f"{_BLOCK_END}\nDecide your actions for this tick."
    )


def extract_context(text: str) -> dict[str, Any] | None:
    start = text.find(_BLOCK_START)
    end = text.find(_BLOCK_END, start + len(_BLOCK_START)) if start >= 0 else -1
    if end < 0:
        return None
    try:
        document = orjson.loads(text[start + len(_BLOCK_START) : end])
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def summary(document: dict[str, Any]) -> str:
    """A one-line prompt summary for the trace (the full prompt is not stored)."""
    plan = document.get("plan") or []
    done = sum(1 for task in plan if task.get("status") == "done")
    return (
        f"inbox {len(document.get('inbox') or [])} msg, plan {done}/{len(plan)} done, "
        f"{len(document.get('artifacts') or [])} artifacts, "
        f"{len(document.get('memory') or {})} memory keys"
    )
