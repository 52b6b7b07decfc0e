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

from collections.abc import Sequence
from typing import Any

import orjson

from agentstack_core.records import GoalRecord
from agentstack_core.spec import AgentSpec, Completion, StackSpec
from agentstack_runner.actions import SCHEMA_HINT
from agentstack_runner.workingset import WorkingSet

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
    "consolidator": (
        "You keep this team's long-term memory. Fold the archive items shown (closed "
        "tasks, artifact versions, inputs, messages, feed posts) into it: decisions, facts "
        "people and systems gave (inputs), what was delivered, open threads, and lessons "
        "from reviews — each section newest first, short entries, within long_term_tokens. "
        "Keep what still matters, drop what no longer does. Answer with one "
        "update_long_term_memory action holding the whole memory as it should now stand."
    ),
    "judge": (
        "You are the judge of this team's finite goal. A teammate declared the goal met "
        "(see completion). Decide by the criterion alone whether it is, from the state "
        "shown: answer with one confirm_goal_met action, accept or reject, and a reason."
    ),
}

_BLOCK_START = "```json\n"
_BLOCK_END = "\n```"
_RESULTS_START = "```tool-results\n"
_RECALLS_START = "```recall-results\n"
_RESULTS_END = "\n```"


def system_prompt(agent: AgentSpec) -> str:
    base = agent.system_prompt or ROLE_PROMPTS.get(agent.role, "")
    return f"{base}\n\n{SCHEMA_HINT}"


def context_document(
    spec: StackSpec,
    agent: AgentSpec,
    shown: WorkingSet,
    *,
    stack: str,
    tick_id: str,
    tools: list[dict[str, Any]] | None = None,
    approvals: list[dict[str, Any]] | None = None,
    goal: GoalRecord | None = None,
) -> dict[str, Any]:
    """The agent's view as plain data (also what the scripted provider reads): the
    stack, its goal and team, and its working set (``shown``, with ``omitted`` counts
    when something did not fit); ``tools``: the tools it may call (name, description,
    input schema), listed only when there are; ``approvals``: its tool calls that wait
    for a person, or were decided since it last looked (and the results of approved
    ones, run just now); ``goal``: where a finite goal stands (its ``completion``)."""
    document: dict[str, Any] = {
        "stack": stack,
        "tick": tick_id,
        "goal": spec.goal,
        "agent": {"name": agent.name, "role": agent.role},
        "team": [{"name": member.name, "role": member.role} for member in spec.agents],
        **shown.sections(),
    }
    if shown.omitted:
        document["omitted"] = dict(sorted(shown.omitted.items()))
    if spec.completion is not None:
        document["completion"] = _completion(spec.completion, spec.goal_id, goal)
    if shown.archive:
        document["long_term_tokens"] = spec.memory.long_term_tokens
    if tools:
        document["tools"] = tools
    if approvals:
        document["approvals"] = approvals
    return document


def _completion(completion: Completion, goal_id: str, goal: GoalRecord | None) -> dict[str, Any]:
    """A finite goal as agents see it: what "met" means, who confirms, where it stands
    (``Open``: not declared met for this goal)."""
    view: dict[str, Any] = {
        "criterion": completion.criterion,
        "confirm_by": completion.confirm_by,
        "state": "Open",
    }
    if goal is not None and goal.goal_id == goal_id:
        view.update(
            state=goal.state,
            summary=goal.summary,
            declared_by=goal.declared_by,
            verdict=goal.verdict,
        )
    return view


def render_context(document: dict[str, Any]) -> str:
    return (
        f"Current state of your team, as JSON:\n{_BLOCK_START}"
        + orjson.dumps(document).decode()
        + f"{_BLOCK_END}\nDecide your actions for this tick."
    )


def render_round(tools: Sequence[dict[str, Any]], recalls: Sequence[dict[str, Any]]) -> str:
    """What a round of lookups found, for the model's next answer: the results of its
    tool calls (each ``tool``, ``outcome``, ``result``) and of its recalls (each
    ``recall``, ``mode``, ``found``), each list a block of its own."""
    blocks = []
    if tools:
        blocks.append(
            f"Results of your tool calls, as JSON:\n{_RESULTS_START}"
            + orjson.dumps(list(tools)).decode()
            + _RESULTS_END
        )
    if recalls:
        blocks.append(
            f"What your recalls found in the stack's archive, as JSON:\n{_RECALLS_START}"
            + orjson.dumps(list(recalls)).decode()
            + _RESULTS_END
        )
    return (
        "\n".join(blocks) + "\nAnswer again with the JSON object: your actions now that you "
        "have these results (call tools or recall again only if you must)."
    )


def extract_round(text: str) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
    """The tool results and the recalls :func:`render_round` wrote into ``text``
    (``None``: none of that kind)."""
    tools = _between(text, _RESULTS_START, _RESULTS_END)
    recalls = _between(text, _RECALLS_START, _RESULTS_END)
    return (
        tools if isinstance(tools, list) else None,
        recalls if isinstance(recalls, list) else None,
    )


def _between(text: str, start_mark: str, end_mark: str) -> Any:
    start = text.find(start_mark)
    end = text.find(end_mark, start + len(start_mark)) if start >= 0 else -1
    if end < 0:
        return None
    try:
        return orjson.loads(text[start + len(start_mark) : end])
    except orjson.JSONDecodeError:
        return None


def extract_context(text: str) -> dict[str, Any] | None:
    document = _between(text, _BLOCK_START, _BLOCK_END)
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
