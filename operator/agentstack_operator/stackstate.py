"""What the operator knows about one stack, and the pure rules that evolve it.

A :class:`StackRecord` lives in the operator's in-memory index. Watch events update
its spec side (:func:`apply_manifest`), tick results its run side (:func:`fold_result`);
both return the Kubernetes Events the change deserves. :func:`conditions_for` and
:func:`status_for` derive the ``/status`` body from the record, so status is a function
of state, written on change by the status writer, never accumulated by hand.

Conditions follow the Kubernetes API conventions: every type is present from the first
visit, with status, a CamelCase reason, a message, the generation it was computed for,
and a ``lastTransitionTime`` that moves only when the status flips. Their types and
reasons, the phase and the Events' reasons are the core's enums
(:mod:`agentstack_core.reasons`). What holds a stack back is weighed once
(:attr:`StackRecord.hold`); ``Ready``, ``Ticking`` and the phase all report that one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from agentstack_core.approvals import FINAL, Approval, ApprovalState
from agentstack_core.budget import Usage, exhausted
from agentstack_core.completion import goal_met, pending
from agentstack_core.endpoints import EndpointPolicy
from agentstack_core.evals import decode_scores, rolling
from agentstack_core.keys import StackRef
from agentstack_core.messages import TickKind, TickResult
from agentstack_core.namespacebudget import Level, NamespaceVerdict
from agentstack_core.pricing import format_usd
from agentstack_core.reasons import (
    Blocked,
    ConditionReason,
    ConditionType,
    EventReason,
    Outcome,
    Phase,
    StallReason,
)
from agentstack_core.records import GoalRecord, GoalState
from agentstack_core.spec import (
    DEFAULTS,
    ExecutionState,
    Executor,
    IdleBackoff,
    MissedTickPolicy,
    Schedule,
    SpecError,
    StackSpec,
    execution_state_of,
    parse_spec,
)
from agentstack_operator.scheduling import Calendar, calendar_of, effective_interval

DEGRADED_AFTER = 3
"""Consecutive failed ticks that make a stack Degraded (and start failure back-off)."""

NO_GATEWAYS = EndpointPolicy()
"""The policy with no allow-listed endpoint: the platform's keys go to the providers'
public endpoints only."""

HOLD_PHASES: dict[Blocked, Phase] = {
    Blocked.INVALID_SPEC: Phase.INVALID,
    Blocked.ENDPOINT_NOT_ALLOWED: Phase.INVALID,
    Blocked.SECRET_NOT_FOUND: Phase.WAITING,
    Blocked.JOB_CREDENTIALS_UNAVAILABLE: Phase.WAITING,
    Blocked.TRIGGER_NOT_ALLOWED: Phase.WAITING,
    Blocked.COMPLETED: Phase.COMPLETED,
    Blocked.BUDGET_EXCEEDED: Phase.BUDGET_EXCEEDED,
}
"""The phase a held stack shows."""
NOT_READY = frozenset(
    {
        Blocked.INVALID_SPEC,
        Blocked.ENDPOINT_NOT_ALLOWED,
        Blocked.SECRET_NOT_FOUND,
        Blocked.JOB_CREDENTIALS_UNAVAILABLE,
        Blocked.TRIGGER_NOT_ALLOWED,
    }
)
"""Holds that come from the spec or its references: the stack is not ``Ready``, and its
phase says why whatever its state. A spent budget only holds a running stack's ticks."""


_STALL_REASONS = frozenset(reason.value for reason in StallReason)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about the stack."""

    reason: str
    """An :class:`~agentstack_core.reasons.EventReason` (or, for a decision on a tool
    call, the reason its wake-up carries)."""
    message: str
    warning: bool = False


class EventPoster(Protocol):
    """Where a stack's Events go (the leader posts them; a standby drops them)."""

    async def post(self, record: StackRecord, events: Sequence[Event]) -> None: ...


class Hold(NamedTuple):
    """Why a stack may not tick even if Running, and the detail people read."""

    reason: Blocked
    message: str


@dataclass(frozen=True)
class LastTick:
    tick_id: str
    outcome: str
    reason: str
    message: str
    finished_at: float
    duration: float


@dataclass
class StackRecord:
    ref: StackRef
    uid: str
    generation: int = 0
    created_at: float = 0.0
    forked_from: str = ""
    """For a fork: ``namespace/name@tick`` it started from (its annotation)."""
    evals: dict[str, dict[str, float]] = field(default_factory=dict)
    """Each eval's rolling mean and scored ticks (:func:`agentstack_core.evals.rolling`)."""
    raw_spec: dict[str, Any] = field(default_factory=dict)
    spec: StackSpec | None = None
    problems: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """What the platform's endpoint policy refuses in a valid spec (a ``baseURL`` that
    would receive the platform's key): the stack waits until the author fixes it."""
    missing_secrets: list[str] = field(default_factory=list)
    credentials_problem: str = ""
    """Why the namespace's tick pods have no Redis credentials (``executor: job``,
    :mod:`.tickcredentials`): what a person must grant."""
    forbidden_triggers: list[str] = field(default_factory=list)
    """Why triggers of the spec may not watch what they name (:mod:`.triggering`)."""
    resumed: bool = False
    """Set when the stack went from Paused back to Running (Paused=False, Resumed)."""

    # run side
    usage: Usage = field(default_factory=Usage)
    """The counters as Redis counted them (:func:`apply_usage` copies them)."""
    last_tick: LastTick | None = None
    budget_message: str = ""
    namespace_budget: NamespaceVerdict | None = None
    """What the namespace's ``AgentBudget`` objects allow (:mod:`.budgets`; ``None``:
    it has none)."""
    next_due: float | None = None
    """When the dispatcher sends the next tick."""
    next_slot: float | None = None
    """The grid slot that tick belongs to (its id); before ``next_due`` for a tick that
    starts a run or catches up a missed period."""
    active_job: str | None = None
    tool_problems: str = ""
    """What the last tick said of the tool servers it could not use (empty: none)."""
    awaiting: list[str] = field(default_factory=list)
    """Tool calls waiting for a person's approval: ``id (agent: tool)``, oldest first."""
    announced: set[str] = field(default_factory=set)
    """Approval ids whose request was announced with an Event."""
    wake_pending: bool = False
    """An input asked for a tick at once that no tick sent since can have read."""
    wake_tick: str | None = None
    """The tick sent to answer a wake-up, until its result is folded."""
    goal: GoalRecord | None = None
    """Where a finite goal stands, as Redis keeps it (:func:`apply_goal` copies it)."""
    sleep_tick: str | None = None
    """The consolidation tick sent, until its result is folded."""
    sleep_behind: bool = False
    """The last consolidation left archive items it did not reach."""
    idle_reason: str = ""
    """Why the last idle tick made no progress (a :class:`StallReason`; empty: none
    seen since the operator started)."""

    # status bookkeeping
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    urgent: bool = True
    revision: int = 0
    """Bumped on every change, so a status write that raced a change keeps it dirty."""
    last_status_write: float = 0.0
    _calendar: tuple[StackSpec, Calendar] | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return str(self.ref)

    @property
    def state(self) -> ExecutionState:
        return self.spec.execution_state if self.spec else execution_state_of(self.raw_spec)

    @property
    def executor(self) -> Executor:
        return (self.spec or DEFAULTS).executor

    @property
    def missed_tick_policy(self) -> MissedTickPolicy:
        return (self.spec or DEFAULTS).missed_tick_policy

    @property
    def idle_backoff(self) -> IdleBackoff | None:
        return (self.spec or DEFAULTS).idle_backoff

    @property
    def consolidation_due(self) -> bool:
        """Whether a consolidation tick is owed: ``consolidateEveryTicks`` ticks ran
        since the last one (or since the start), or the last one did not reach every
        archive item — and none is on its way."""
        every = self.spec.memory.consolidate_every_ticks if self.spec is not None else 0
        if not every or self.sleep_tick is not None or not self.should_tick:
            return False
        return self.sleep_behind or self.usage.ticks >= (self.usage.sleeps + 1) * every

    @property
    def stalled(self) -> bool:
        """Too many idle ticks in a row (``spec.stalledAfterIdleTicks``)."""
        return self.spec is not None and self.usage.idle >= self.spec.stalled_after_idle_ticks

    @property
    def stall_reason(self) -> StallReason:
        """Why the stack stalls: the last idle tick's reason, else the one its status
        said before (an operator that restarted has seen no tick yet)."""
        before = str(self.conditions.get(ConditionType.STALLED, {}).get("reason") or "")
        for reason in (self.idle_reason, before):
            if reason in _STALL_REASONS:
                return StallReason(reason)
        return StallReason.NOTHING_TO_DO

    @property
    def calendar(self) -> Calendar | None:
        """The fires a scheduled stack ticks on (``None``: it ticks on an interval)."""
        spec = self.spec
        if spec is None or spec.schedule is None:
            return None
        if self._calendar is None or self._calendar[0] is not spec:
            self._calendar = (spec, calendar_of(spec.schedule, self.uid, self.created_at))
        return self._calendar[1]

    @property
    def interval(self) -> float:
        """The interval in force: the one the stack asks for, stretched by its
        namespace's budget or quota when they throttle it (:mod:`.budgets`)."""
        verdict = self.namespace_budget
        return self.requested_interval * (verdict.factor if verdict is not None else 1.0)

    @property
    def requested_interval(self) -> float:
        """The interval after idle and failure back-off (a scheduled stack's is its
        schedule's usual gap, stretched the same way)."""
        calendar = self.calendar
        if calendar is not None:
            base = calendar.usual_gap
        else:
            base = (self.spec or DEFAULTS).tick_interval_seconds
        return effective_interval(
            base,
            idle_streak=self.usage.idle,
            failures=self.usage.failures,
            idle=self.idle_backoff,
        )

    @property
    def extra_wait(self) -> float:
        """How much longer than its schedule's usual gap a scheduled stack waits after a
        tick while back-off stretches it (fires in between are skipped)."""
        calendar = self.calendar
        return 0.0 if calendar is None else max(0.0, self.interval - calendar.usual_gap)

    @property
    def cadence(self) -> tuple[float, Schedule | None]:
        """What the schedule follows: an edit that changes it moves the next tick."""
        return (self.interval, self.spec.schedule if self.spec is not None else None)

    @property
    def hold(self) -> Hold | None:
        """Why the stack may not tick even if Running; ``None`` when it may.

        The one place the holds are weighed: the first that applies, in
        :class:`~agentstack_core.reasons.Blocked`'s order (an invalid spec, a refused
        endpoint, a missing Secret, tick Jobs without credentials, a trigger not
        allowed, a finite goal met, a spent budget), is the one every condition and the
        phase report.
        """
        if self.problems:
            return Hold(Blocked.INVALID_SPEC, "; ".join(self.problems))
        if self.refused:
            return Hold(Blocked.ENDPOINT_NOT_ALLOWED, "; ".join(self.refused))
        if self.missing_secrets:
            return Hold(Blocked.SECRET_NOT_FOUND, "waiting for " + ", ".join(self.missing_secrets))
        if self.credentials_problem:
            return Hold(Blocked.JOB_CREDENTIALS_UNAVAILABLE, self.credentials_problem)
        if self.forbidden_triggers:
            return Hold(Blocked.TRIGGER_NOT_ALLOWED, "; ".join(self.forbidden_triggers))
        met = self.met
        if met is not None:
            return Hold(Blocked.COMPLETED, met[1])
        if self.budget_message:
            return Hold(Blocked.BUDGET_EXCEEDED, self.budget_message)
        if self.namespace_budget is not None and self.namespace_budget.holds:
            return Hold(Blocked.BUDGET_EXCEEDED, self.namespace_budget.message)
        return None

    @property
    def met(self) -> tuple[ConditionReason, str] | None:
        """Why the stack's finite goal is met (``None``: it is not, or is ongoing)."""
        return goal_met(self.spec, self.usage, self.goal) if self.spec is not None else None

    @property
    def degraded(self) -> bool:
        """Too many failed ticks in a row (:data:`DEGRADED_AFTER`)."""
        return self.usage.failures >= DEGRADED_AFTER

    @property
    def should_tick(self) -> bool:
        return self.state is ExecutionState.RUNNING and self.hold is None

    def mark_dirty(self, *, urgent: bool = False) -> None:
        self.urgent = self.urgent or urgent
        self.revision += 1


def apply_manifest(
    record: StackRecord, body: dict[str, Any], endpoints: EndpointPolicy = NO_GATEWAYS
) -> list[Event]:
    """Take a new manifest into ``record``; returns the Events its changes call for.

    ``endpoints`` is the platform's policy of where its own LLM keys may go; a spec
    that would send them elsewhere is refused (``EndpointNotAllowed``) until it brings
    its own key or its endpoint is allow-listed.
    """
    events: list[Event] = []
    meta = body.get("metadata") or {}
    generation = int(meta.get("generation") or 0)
    if generation == record.generation and record.raw_spec:
        return events
    before = record.state if record.raw_spec else None
    had_problems = bool(record.problems or record.refused)
    record.generation = generation
    record.raw_spec = dict(body.get("spec") or {})
    try:
        record.spec = parse_spec(record.raw_spec)
        record.problems = []
        record.refused = endpoints.problems(record.spec)
    except SpecError as exc:
        record.spec = None
        record.problems = exc.problems
        record.refused = []
    if record.problems and not had_problems:
        events.append(Event(EventReason.INVALID_SPEC, "; ".join(record.problems), warning=True))
    elif record.refused and not had_problems:
        events.append(
            Event(EventReason.ENDPOINT_NOT_ALLOWED, "; ".join(record.refused), warning=True)
        )
    elif had_problems and not (record.problems or record.refused):
        events.append(Event(EventReason.SPEC_ACCEPTED, "the spec is valid again"))
    after = record.state
    if before is None:
        if after is ExecutionState.RUNNING and not (record.problems or record.refused):
            events.append(Event(EventReason.STARTED, "the stack starts ticking"))
    elif before is not after:
        record.resumed = before is ExecutionState.PAUSED and after is ExecutionState.RUNNING
        if after is ExecutionState.PAUSED:
            events.append(Event(EventReason.PAUSED, "ticks stop; memory and messages are kept"))
        elif after is ExecutionState.STOPPED:
            events.append(Event(EventReason.STOPPED, "the run has ended; memory is kept"))
        elif record.problems or record.refused:
            pass  # an invalid spec does not start; InvalidSpec says why
        elif record.resumed:
            events.append(
                Event(EventReason.RESUMED, "ticks continue; missed ticks are not replayed")
            )
        else:
            events.append(Event(EventReason.STARTED, "the stack starts a new run"))
    record.mark_dirty(urgent=True)
    return events


def fold_result(record: StackRecord, result: TickResult) -> None:
    """Take a tick's result into ``record``: its last tick, and the Job it ends.

    Counters are not touched here: the atomic finish of every tick keeps them in the
    stack's usage hash, and :func:`apply_usage` copies them. So folding the same result
    twice (a batch folded but not acknowledged, then claimed again; a duplicate
    delivery republishing a recorded outcome) changes nothing.
    """
    if result.generation > record.generation or result.finished_at < record.created_at:
        return  # not this incarnation of the stack
    if record.active_job == result.tick_id:
        record.active_job = None
    if result.kind is TickKind.SLEEP:  # a consolidation: in the history, not the last tick
        if record.sleep_tick == result.tick_id:
            record.sleep_tick = None
            record.sleep_behind = result.behind
        return
    if record.last_tick is not None and result.finished_at <= record.last_tick.finished_at:
        return  # older than the last tick, or that very tick again
    if result.outcome is not Outcome.DROPPED:  # a dropped tick called no tool
        record.tool_problems = result.tool_problems
    if result.idle:
        record.idle_reason = result.idle
    if result.scores:
        record.evals = rolling(record.evals, decode_scores(result.scores))
    record.last_tick = LastTick(
        tick_id=result.tick_id,
        outcome=result.outcome.value,
        reason=result.reason,
        message=result.message,
        finished_at=result.finished_at,
        duration=result.duration,
    )
    record.mark_dirty()


def apply_approvals(record: StackRecord, records: Sequence[Approval]) -> list[Event]:
    """Take the stack's approval records into ``record`` (what waits); returns an
    ``ApprovalRequested`` Event for each request not announced before."""
    pending = [a for a in records if a.state == ApprovalState.PENDING]
    record.awaiting = [f"{a.id} ({a.agent}: {a.tool})" for a in pending]
    events = [
        Event(
            EventReason.APPROVAL_REQUESTED,
            f"{a.agent} asks to call {a.tool} with {a.arguments[:300]}; decide with "
            f"kubectl agentstack approve|deny {record.ref.name} {a.id}",
        )
        for a in pending
        if a.id not in record.announced
    ]
    record.announced = {a.id for a in records if a.state not in FINAL}
    record.mark_dirty(urgent=True)
    return events


def apply_goal(record: StackRecord, goal: GoalRecord | None) -> list[Event]:
    """Copy where the finite goal stands, as Redis keeps it; returns the Events of a
    declaration and of a rejection (a goal met is the ``Completed`` hold's Event)."""
    if goal == record.goal:
        return []
    record.goal = goal
    record.mark_dirty(urgent=True)
    if goal is None or record.spec is None or goal.goal_id != record.spec.goal_id:
        return []
    if goal.state is GoalState.DECLARED:
        message = f"{goal.declared_by} declared the goal met: {goal.summary}"
        return [Event(EventReason.GOAL_DECLARED, message)]
    if goal.state is GoalState.REJECTED:
        message = f"{goal.decided_by} rejected the goal as met: {goal.verdict}"
        return [Event(EventReason.GOAL_REJECTED, message)]
    return []


def tools_event(problems: str) -> Event:
    """The Event of a change of the stack's ``ToolsDegraded`` condition."""
    if problems:
        return Event(EventReason.TOOL_SERVER_UNAVAILABLE, problems, warning=True)
    return Event(EventReason.TOOL_SERVERS_RECOVERED, "every tool server answered the last tick")


def apply_usage(record: StackRecord, usage: Usage) -> list[Event]:
    """Copy the stack's counters as Redis counted them; returns Degraded/Recovered
    Events when the run of failed ticks crosses :data:`DEGRADED_AFTER`, and
    Stalled/Progressing when the run of idle ticks crosses ``stalledAfterIdleTicks``."""
    events: list[Event] = []
    was_degraded, was_stalled = record.degraded, record.stalled
    if usage == record.usage:
        return events
    record.usage = usage
    if record.stalled and not was_stalled:
        events.append(Event(EventReason.STALLED, stall_message(record), warning=True))
    elif was_stalled and not record.stalled:
        events.append(Event(EventReason.PROGRESSING, "a tick made progress again"))
    degraded = record.degraded
    if degraded and not was_degraded:
        last = record.last_tick
        detail = f" Last: {last.reason}: {last.message}" if last else ""
        events.append(
            Event(
                EventReason.DEGRADED,
                f"{usage.failures} ticks failed in a row; backing off.{detail}",
                warning=True,
            )
        )
    elif was_degraded and not degraded:
        events.append(Event(EventReason.RECOVERED, "a tick succeeded again"))
    record.mark_dirty(urgent=bool(events))
    return events


def utc_timestamp(epoch: float) -> str:
    """``epoch`` as the API's timestamps are written (RFC 3339, UTC, whole seconds)."""
    moment = dt.datetime.fromtimestamp(epoch, tz=dt.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


Wanted = tuple[str, str, str]
"""A condition as it should stand: status, reason, message."""


def _ready(record: StackRecord) -> Wanted:
    hold = record.hold
    if hold is not None and hold.reason in NOT_READY:
        return ("False", hold.reason, hold.message)
    if record.state is ExecutionState.STOPPED:
        return ("False", ConditionReason.STOPPED, "the run has ended (executionState: Stopped)")
    return ("True", ConditionReason.ACCEPTED, "the spec is valid and its references resolve")


def _ticking(record: StackRecord) -> Wanted:
    if record.state is ExecutionState.PAUSED:
        return ("False", ConditionReason.PAUSED, "executionState is Paused")
    if record.state is ExecutionState.STOPPED:
        return ("False", ConditionReason.STOPPED, "executionState is Stopped")
    if record.hold is not None and record.hold.reason is Blocked.COMPLETED:
        return ("False", Blocked.COMPLETED, "the goal is met: no more ticks (memory is kept)")
    if record.hold is not None:
        return ("False", record.hold.reason, "ticks are held until this is resolved")
    return ("True", ConditionReason.SCHEDULED, _cadence_message(record))


def _cadence_message(record: StackRecord) -> str:
    schedule = record.spec.schedule if record.spec is not None else None
    if schedule is None:
        return f"a tick every {record.interval:g}s"
    message = f"ticks on schedule {schedule.cron!r} ({schedule.time_zone})"
    if record.extra_wait:
        message += f", skipping fires while backed off ({record.interval:g}s between ticks)"
    return message


def _paused(record: StackRecord) -> Wanted:
    if record.state is ExecutionState.PAUSED:
        return ("True", ConditionReason.PAUSED, "paused by spec.executionState; memory is kept")
    if record.resumed:
        return ("False", ConditionReason.RESUMED, "resumed; missed ticks were not replayed")
    return ("False", ConditionReason.NOT_PAUSED, "")


def _degraded(record: StackRecord) -> Wanted:
    if not record.degraded:
        return ("False", ConditionReason.TICKS_HEALTHY, "")
    last = record.last_tick
    detail = f"{last.reason}: {last.message}" if last else ""
    failures = record.usage.failures
    return ("True", ConditionReason.TICKS_FAILING, f"{failures} failed ticks in a row. {detail}")


def _budget(record: StackRecord) -> Wanted:
    if record.budget_message:
        return ("True", ConditionReason.BUDGET_SPENT, record.budget_message)
    verdict = record.namespace_budget
    if verdict is not None and verdict.level is Level.OK and verdict.factor > 1:
        return ("False", ConditionReason.NAMESPACE_QUOTA_THROTTLED, verdict.message)
    if verdict is None or verdict.level is Level.OK:
        return ("False", ConditionReason.WITHIN_BUDGET, "")
    return (
        "True" if verdict.holds else "False",
        _NAMESPACE_REASONS[verdict.level],
        verdict.message,
    )


_NAMESPACE_REASONS = {
    Level.WARNING: ConditionReason.NAMESPACE_BUDGET_WARNING,
    Level.THROTTLED: ConditionReason.NAMESPACE_BUDGET_THROTTLED,
    Level.EXCEEDED: ConditionReason.NAMESPACE_BUDGET_SPENT,
}
"""The ``BudgetExceeded`` reason of a stack whose namespace's budget reached a level."""


def _tools(record: StackRecord) -> Wanted:
    if record.tool_problems:
        return ("True", ConditionReason.TOOL_SERVER_UNAVAILABLE, record.tool_problems)
    if record.spec is not None and record.spec.tool_servers:
        return ("False", ConditionReason.TOOL_SERVERS_ANSWERING, "")
    return ("False", ConditionReason.NO_TOOL_SERVERS, "")


def _awaiting(record: StackRecord) -> Wanted:
    if not record.awaiting:
        return ("False", ConditionReason.NOTHING_WAITING, "")
    waiting = ", ".join(record.awaiting[:10])
    message = f"{len(record.awaiting)} tool call(s) wait for approval: {waiting}"
    return ("True", ConditionReason.TOOL_CALLS_WAITING, message)


_STALL_DETAIL = {
    StallReason.NOTHING_TO_DO: "no agent found shared work to change; give the team an "
    "input or a new goal, or pause it",
    StallReason.ACTIONS_REFUSED: "every change the agents asked for was refused (the "
    "trace's refused lines say why)",
    StallReason.PLAN_FULL: "the plan holds as many open tasks as it may and refuses new "
    "ones; agents must close or drop tasks (update_plan, status done or dropped)",
}


def stall_message(record: StackRecord) -> str:
    """What the ``Stalled`` condition and Event say (the stack must be stalled)."""
    idle = record.usage.idle
    return f"{idle} ticks in a row changed nothing: {_STALL_DETAIL[record.stall_reason]}"


def _stalled(record: StackRecord) -> Wanted:
    if not record.stalled:
        return ("False", ConditionReason.PROGRESSING, "")
    return ("True", record.stall_reason, stall_message(record))


def _completed(record: StackRecord) -> Wanted:
    spec = record.spec
    if spec is None or spec.completion is None:
        return ("False", ConditionReason.ONGOING, "the goal is ongoing (no spec.completion)")
    met = record.met
    if met is not None:
        return ("True", *met)
    declared = pending(spec, record.goal)
    if declared is not None:
        waiting = (
            f"{declared.declared_by} declared the goal met ({declared.summary}); waiting for "
            f"the {spec.completion.confirm_by.value.lower()} to confirm it"
        )
        return ("False", ConditionReason.NOT_MET, waiting)
    return ("False", ConditionReason.NOT_MET, f"criterion: {spec.completion.criterion}")


_CONDITIONS = {
    ConditionType.READY: _ready,
    ConditionType.TICKING: _ticking,
    ConditionType.PAUSED: _paused,
    ConditionType.DEGRADED: _degraded,
    ConditionType.BUDGET_EXCEEDED: _budget,
    ConditionType.TOOLS_DEGRADED: _tools,
    ConditionType.AWAITING_APPROVAL: _awaiting,
    ConditionType.STALLED: _stalled,
    ConditionType.COMPLETED: _completed,
}
"""How each condition is derived from the record, in the order they are written."""


def _desired(record: StackRecord) -> dict[ConditionType, Wanted]:
    """Condition type → (status, reason, message) as the record stands."""
    return {kind: condition(record) for kind, condition in _CONDITIONS.items()}


def conditions_for(record: StackRecord, now: float) -> list[dict[str, Any]]:
    """The full conditions list, keeping each transition time unless its status flips."""
    conditions = []
    for kind, (status, reason, message) in _desired(record).items():
        previous = record.conditions.get(kind)
        transition = (
            previous["lastTransitionTime"]
            if previous is not None and previous["status"] == status
            else utc_timestamp(now)
        )
        conditions.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message[:2000],
                "lastTransitionTime": transition,
                "observedGeneration": record.generation,
            }
        )
    return conditions


def phase_for(record: StackRecord) -> Phase:
    """The one-word summary: a hold of the spec (whatever the state), else a paused or
    stopped stack's state, else a running stack's hold or health."""
    hold = record.hold
    running = record.state is ExecutionState.RUNNING
    if hold is not None and (running or hold.reason in NOT_READY):
        return HOLD_PHASES[hold.reason]
    if not running:
        return Phase(record.state.value)
    return Phase.DEGRADED if record.degraded else Phase.RUNNING


def status_for(record: StackRecord, now: float) -> dict[str, Any]:
    """The ``/status`` body for a merge patch (``None`` clears a field)."""
    conditions = conditions_for(record, now)
    last = record.last_tick
    usage = record.usage
    return {
        "observedGeneration": record.generation,
        "phase": phase_for(record),
        "conditions": conditions,
        "ticks": usage.ticks,
        "tokensUsed": usage.tokens,
        "costUSD": format_usd(usage.cost),
        "unpricedCalls": usage.unpriced or None,
        "consecutiveFailures": usage.failures,
        "consolidations": usage.sleeps or None,
        "effectiveIntervalSeconds": round(record.interval, 3),
        "nextTickTime": utc_timestamp(record.next_due) if record.next_due else None,
        "lastTickId": last.tick_id if last else None,
        "forkedFrom": record.forked_from or None,
        "evals": record.evals or None,
        "lastTickTime": utc_timestamp(last.finished_at) if last else None,
        "lastTickResult": last.outcome if last else None,
        "lastTickReason": last.reason if last else None,
        "lastTickMessage": last.message[:2000] if last else None,
        "lastTickDurationSeconds": round(last.duration, 3) if last else None,
    }


def budget_message(spec: StackSpec | None, usage: Usage) -> str:
    """Why the stack's budget is spent, or ``""`` while it is not."""
    if spec is None:
        return ""
    return exhausted(spec.budget, usage) or ""
