"""The offline provider: deterministic, valid, meaningful actions with no API key.

It reads the JSON context block every agent prompt carries (``prompts``) and plays
the built-in roles the way a diligent model would, so a demo stack visibly moves:

- planner: drafts a three-task plan from the goal; when no task is open (done tasks
  leave the plan), opens the next iteration with fresh tasks, counting iterations in
  its memory;
- builder: takes the first task that is todo (revisions first), writes its artifact,
  marks it for review and tells the reviewer;
- reviewer: sends a first version back once when its name hashes odd (so the revise
  loop is exercised), accepts everything else;
- communicator: posts a progress line to the feed.

A builder offered tools calls the first one before it writes (arguments made from the
tool's input schema) and quotes the results in its artifact, so the offline demo shows
a tool call. A builder about to revise an artifact first recalls the task's title from
the stack's archive (its earlier versions, the reviewer's feedback) and quotes what it
found, so the offline demo shows recall. Every role acknowledges the inputs people
sent it with a feed post naming the input's number (so a demo shows an input's
effect). Custom roles answer their teammates' messages and keep a note in memory. The
same input always produces the same output, which is what tests and demos need.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from agentstack_runner.llm.base import ChatRequest, Completion, PermanentError
from agentstack_runner.prompts import extract_context, extract_round

MODELS = ("scripted-v1",)
ITERATIONS_TO_DECLARE = 2
"""Iterations a finite goal's scripted planner delivers before it declares the goal met."""
RECALLED_SHOWN = 3
"""Recalled items a builder quotes in its artifact."""


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _stable_odd(text: str) -> bool:
    return hashlib.sha256(text.encode()).digest()[0] % 2 == 1


def _teammate(document: dict[str, Any], role: str) -> str | None:
    return next((m["name"] for m in document.get("team", []) if m.get("role") == role), None)


def _plan(document: dict[str, Any]) -> list[dict[str, Any]]:
    return list(document.get("plan") or [])


def _planner(document: dict[str, Any]) -> dict[str, Any]:
    plan = _plan(document)
    goal = str(document.get("goal", "")).strip().rstrip(".")
    builder = _teammate(document, "builder")
    actions: list[dict[str, Any]] = []
    completion = document.get("completion") or {}
    if completion.get("state") == "Declared":
        return {"thought": "The goal is declared met; waiting for its confirmation.", "actions": []}
    memory = document.get("memory") or {}
    planned = int(memory.get("iteration", "0"))  # every iteration, for the task numbers
    # Iterations of this goal: a new goal (or criterion) starts them over.
    delivered = int(memory.get("goal_iterations", "0")) if memory.get("goal") == goal else 0
    if not plan and completion and delivered >= ITERATIONS_TO_DECLARE:
        summary = f"{delivered} iterations planned, built and reviewed for: {goal}"
        return {
            "thought": "Every planned task is done: the goal looks met.",
            "actions": [{"type": "declare_goal_met", "summary": summary}],
        }
    if not plan:
        iteration = planned + 1
        base = (iteration - 1) * 3
        titles = (
            f"Outline the approach to: {goal}",
            f"Produce a first complete draft for: {goal}",
            f"Check the draft against the goal and list improvements (iteration {iteration})",
        )
        tasks = [
            {"id": f"t{base + number}", "title": title, "status": "todo"}
            for number, title in enumerate(titles, start=1)
        ]
        actions.append({"type": "update_plan", "tasks": tasks})
        for key, value in (
            ("iteration", str(iteration)),
            ("goal", goal),
            ("goal_iterations", str(delivered + 1)),
        ):
            actions.append({"type": "update_memory", "key": key, "value": value})
        if builder:
            actions.append(
                {
                    "type": "send_message",
                    "to": builder,
                    "content": f"Iteration {iteration} planned: start with {tasks[0]['id']}.",
                }
            )
        thought = f"Planning iteration {iteration} of the work."
    else:
        thought = f"{len(plan)} task(s) still open; the plan stands."
        feedback = [m for m in document.get("inbox", []) if m.get("content")]
        if feedback:
            actions.append(
                {
                    "type": "update_memory",
                    "key": "last_feedback",
                    "value": str(feedback[-1]["content"])[:500],
                }
            )
    return {"thought": thought, "actions": actions}


def _builder(document: dict[str, Any]) -> dict[str, Any]:
    plan = _plan(document)
    artifacts = {a["name"]: a for a in document.get("artifacts", [])}
    todo = [task for task in plan if task.get("status") in ("todo", "doing")]
    revisions = [task for task in todo if task.get("note")]
    candidates = revisions or todo
    if not candidates:
        return {"thought": "Nothing to build until the plan has open tasks.", "actions": []}
    task = candidates[0]
    name = f"{task['id']}.md"
    previous = artifacts.get(name)
    version = int(previous["version"]) + 1 if previous else 1
    content = (
        f"# {task['title']}\n\nVersion {version} for the goal: {document.get('goal', '')}\n"
        + (f"\nAddresses review feedback: {task['note']}\n" if task.get("note") else "")
        + "".join(
            f"\nFrom {r.get('tool')} ({r.get('outcome')}): {str(r.get('result'))[:300]}\n"
            for r in document.get("tool_results") or []
        )
        + "".join(
            f"\nRecalled {hit.get('kind')} {hit.get('ref')}: {str(hit.get('text'))[:200]}\n"
            for recalled in document.get("recalls") or []
            for hit in (recalled.get("found") or [])[:RECALLED_SHOWN]
        )
        + "".join(
            f"\nApproval {a.get('id')} for {a.get('tool')}: {a.get('state')}"
            + (f": {str(a['result'])[:300]}" if a.get("result") else "")
            + "\n"
            for a in document.get("approvals") or []
        )
    )
    actions: list[dict[str, Any]] = [
        {"type": "write_artifact", "name": name, "content": content, "task_id": task["id"]},
        {
            "type": "update_plan",
            "tasks": [{"id": task["id"], "title": task["title"], "status": "review"}],
        },
    ]
    reviewer = _teammate(document, "reviewer")
    if reviewer:
        actions.append(
            {"type": "send_message", "to": reviewer, "content": f"{name} is ready for review."}
        )
    return {"thought": f"Working on {task['id']} (version {version}).", "actions": actions}


def _confirmation(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The reviewer's (or the judge's) say on a declaration waiting for it: accepted
    when nothing is left open, else sent back."""
    completion = document.get("completion") or {}
    if completion.get("state") != "Declared":
        return []
    if document.get("plan"):
        verdict, reason = "reject", f"{len(document['plan'])} task(s) are still open"
    else:
        verdict, reason = "accept", f"every task is done; criterion: {completion['criterion']}"
    return [{"type": "confirm_goal_met", "verdict": verdict, "reason": reason}]


LONG_TERM_ENTRIES = 20
"""Entries the scripted consolidator keeps per section (the bound trims further)."""


def _consolidator(document: dict[str, Any]) -> dict[str, Any]:
    """Folds the archive items shown into the long-term memory, deterministically:
    inputs become facts, done tasks deliveries, dropped tasks decisions, review feedback
    lessons, and the newest feed post the open thread; each section newest first."""
    memory = document.get("long_term_memory") or {}
    added: dict[str, list[str]] = {name: [] for name in _SECTIONS}
    for item in document.get("archive") or []:
        text, ref = str(item.get("text", "")), str(item.get("ref", ""))
        kind = item.get("kind")
        if kind == "input":
            added["facts"].append(f"{ref} from {item.get('agent')}: {text[:200]}")
        elif kind == "task" and text.endswith("(dropped)"):
            added["decisions"].append(f"dropped {ref}: {text[:200]}")
        elif kind == "task":
            added["delivered"].append(f"{ref}: {text[:200]}")
        elif kind == "message" and "needs a revision:" in text:
            added["lessons"].append(text.split("needs a revision:", 1)[1].strip()[:200])
        elif kind == "post":
            added["open_threads"] = [text[:200]]
    merged: dict[str, Any] = {"type": "update_long_term_memory"}
    for name in _SECTIONS:
        newest = [*reversed(added[name]), *(memory.get(name) or [])]
        if name == "open_threads" and added[name]:
            newest = added[name]
        merged[name] = list(dict.fromkeys(newest))[:LONG_TERM_ENTRIES]
    count = len(document.get("archive") or [])
    return {"thought": f"Consolidated {count} archive item(s).", "actions": [merged]}


_SECTIONS = ("decisions", "facts", "delivered", "open_threads", "lessons")


def _judge(document: dict[str, Any]) -> dict[str, Any]:
    return {"thought": "Judging the declaration.", "actions": _confirmation(document)}


def _reviewer(document: dict[str, Any]) -> dict[str, Any]:
    waiting = [a for a in document.get("artifacts", []) if a.get("status") == "review"]
    builder = _teammate(document, "builder")
    completion = document.get("completion") or {}
    confirms = completion.get("confirm_by") == "Reviewer"
    actions: list[dict[str, Any]] = _confirmation(document) if confirms else []
    for artifact in waiting:
        if artifact.get("version") == 1 and _stable_odd(artifact["name"]):
            feedback = "Make the outcome explicit and add a concrete next step."
            actions.append(
                {
                    "type": "review_artifact",
                    "name": artifact["name"],
                    "verdict": "revise",
                    "feedback": feedback,
                }
            )
            if builder:
                actions.append(
                    {
                        "type": "send_message",
                        "to": builder,
                        "content": f"{artifact['name']} needs a revision: {feedback}",
                    }
                )
        else:
            actions.append(
                {
                    "type": "review_artifact",
                    "name": artifact["name"],
                    "verdict": "accept",
                    "feedback": "Meets the task.",
                }
            )
    thought = f"Reviewed {len(waiting)} artifact(s)." if waiting else "Nothing to review."
    return {"thought": thought, "actions": actions}


def _communicator(document: dict[str, Any]) -> dict[str, Any]:
    plan = _plan(document)  # open work only: done tasks have left it
    review = [task for task in plan if task.get("status") == "review"]
    line = f"{len(plan)} task(s) open"
    if review:
        line += f", {len(review)} in review"
    line += f"; next: {plan[0]['title']}" if plan else "; all planned work is done"
    return {
        "thought": "Reporting progress.",
        "actions": [
            {"type": "post_update", "content": line},
            {"type": "update_memory", "key": "last_report", "value": line},
        ],
    }


def _custom(document: dict[str, Any]) -> dict[str, Any]:
    inbox = document.get("inbox", [])
    actions: list[dict[str, Any]] = [
        {
            "type": "update_memory",
            "key": "ticks_seen",
            "value": str(int((document.get("memory") or {}).get("ticks_seen", "0")) + 1),
        }
    ]
    for message in [m for m in inbox if not m.get("input")][:3]:
        actions.append(
            {"type": "send_message", "to": message["from"], "content": "Noted, thank you."}
        )
    return {"thought": "Keeping notes.", "actions": actions}


def _wants_tool(document: dict[str, Any]) -> bool:
    """The builder consults the first tool it is offered before it writes (once a step)."""
    role = (document.get("agent") or {}).get("role")
    open_tasks = [t for t in _plan(document) if t.get("status") in ("todo", "doing")]
    return role == "builder" and bool(document.get("tools")) and bool(open_tasks)


def _revision(document: dict[str, Any]) -> dict[str, Any] | None:
    """The task a builder is about to revise (sent back with a note), if any: it recalls
    the task's history from the archive first (once a step)."""
    if (document.get("agent") or {}).get("role") != "builder":
        return None
    todo = [task for task in _plan(document) if task.get("status") in ("todo", "doing")]
    return next((task for task in todo if task.get("note")), None)


def _lookups(
    document: dict[str, Any], tools: list[Any] | None, recalls: list[Any] | None
) -> list[dict[str, Any]]:
    """What the agent looks up before it acts: the first tool (if offered, not yet
    called), the task it revises (if any, not yet recalled) — both in one round."""
    actions: list[dict[str, Any]] = []
    if tools is None and _wants_tool(document):
        actions += _call_first_tool(document)["actions"]
    revision = _revision(document)
    if recalls is None and revision is not None:
        actions.append({"type": "recall", "query": str(revision["title"]), "limit": 3})
    return actions


def _arguments(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """Arguments that satisfy a simple input schema: its required properties filled."""
    samples = {"string": text, "integer": 2, "number": 2.0, "boolean": True}
    properties = schema.get("properties") or {}
    return {
        name: samples.get(str((properties.get(name) or {}).get("type")), text)
        for name in schema.get("required") or []
    }


def _call_first_tool(document: dict[str, Any]) -> dict[str, Any]:
    tool = document["tools"][0]
    task = next(t for t in _plan(document) if t.get("status") in ("todo", "doing"))
    arguments = _arguments(tool.get("input_schema") or {}, str(task.get("title", "")))
    return {
        "thought": f"Consulting {tool['name']} before working on {task['id']}.",
        "actions": [{"type": "call_tool", "tool": tool["name"], "arguments": arguments}],
    }


def _inputs_acknowledged(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "type": "post_update",
            "content": f"Input #{m['input']} from {m.get('from')}: {str(m.get('content'))[:200]}",
        }
        for m in document.get("inbox", [])
        if m.get("input")
    ]


_ROLES = {
    "planner": _planner,
    "builder": _builder,
    "reviewer": _reviewer,
    "communicator": _communicator,
    "judge": _judge,
    "consolidator": _consolidator,
}


class ScriptedProvider:
    """Deterministic offline provider; the model name must be one of :data:`MODELS`."""

    name = "scripted"

    async def complete(self, request: ChatRequest) -> Completion:
        if request.model not in MODELS:
            raise PermanentError(
                f"scripted: unknown model {request.model!r} (available: {', '.join(MODELS)})"
            )
        contents = [message.get("content", "") for message in request.messages]
        document = next((d for d in map(extract_context, contents) if d is not None), None)
        tools, recalls = extract_round(contents[-1]) if len(contents) > 2 else (None, None)
        lookups = _lookups(document, tools, recalls) if document is not None else []
        if document is None:
            reply: dict[str, Any] = {"thought": "No context block found.", "actions": []}
        elif lookups:
            reply = {"thought": "Looking things up before acting.", "actions": lookups}
        else:
            if tools:
                document = {**document, "tool_results": tools}
            if recalls:
                document = {**document, "recalls": recalls}
            role = str((document.get("agent") or {}).get("role", ""))
            reply = _ROLES.get(role, _custom)(document)
            reply["actions"] = [*_inputs_acknowledged(document), *reply["actions"]]
        content = json.dumps(reply)
        prompt_text = "".join(message.get("content", "") for message in request.messages)
        return Completion(content, _tokens(prompt_text), _tokens(content), "stop", request.model)
