"""Every word one process writes and another reads or compares: outcomes, reasons,
phases, condition types and Event reasons, as enums.

A runner records why a tick was dropped, the operator decides from that reason whether
a wake-up must wait (``StackBusy``), the read API and people read it in the history;
the operator writes a phase the ``agentstack_stacks`` gauge counts by value. Spelled as
string literals in each process, a rename in one would silently break another. Here
each word is written once; being ``StrEnum`` members, they are the very strings that
travel in Redis records, status and Events, so stored data reads unchanged.

Pure: no process imports anything else to use them.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """How a tick (or one agent step: ``Succeeded`` or ``Failed``) ended."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    DROPPED = "Dropped"
    """Not run on purpose: past its deadline, outdated generation, over budget, busy."""


class TickReason(StrEnum):
    """Why a tick that ran ended as it did (``TickResult.reason``)."""

    COMPLETED = "Completed"
    """Every agent took its step (some may have failed under ``onStepFailure: Continue``)."""
    ALL_STEPS_FAILED = "AllStepsFailed"
    STEP_FAILED = "StepFailed"
    """A step failed under ``onStepFailure: FailTick``."""
    TICK_TIMEOUT = "TickTimeout"
    BUDGET_EXCEEDED = "BudgetExceeded"
    """The budget ran out before an agent's step."""
    JOB_FAILED = "JobFailed"
    """The tick's Kubernetes Job failed before its runner recorded the tick (the
    operator records it)."""


class DropReason(StrEnum):
    """Why a tick was not run (``TickResult.reason`` of a ``Dropped`` tick)."""

    STACK_BUSY = "StackBusy"
    """Another tick of the stack held its lease."""
    OUTDATED_GENERATION = "OutdatedGeneration"
    SPEC_NOT_PUBLISHED = "SpecNotPublished"
    INVALID_SPEC = "InvalidSpec"
    NOT_RUNNING = "NotRunning"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BUDGET_EXCEEDED = "BudgetExceeded"
    STACK_GONE = "StackGone"
    """The stack was deleted: nothing is recorded (a metric label only)."""
    GOAL_MET = "GoalMet"
    """The stack's finite goal is met: it ticks no more."""


class SkipReason(StrEnum):
    """Why the operator did not dispatch a due tick (the
    ``agentstack_scheduler_ticks_skipped_total`` label dashboards and alerts read)."""

    JOB_STILL_RUNNING = "JobStillRunning"
    """The stack's previous Job has not finished (``executor: job``)."""
    DISPATCH_FAILED = "DispatchFailed"
    """The tick could not be sent to Redis, or its Job created, before its deadline."""
    STARTING_DEADLINE_EXCEEDED = "StartingDeadlineExceeded"
    """A scheduled stack's fire was missed (an operator outage, a pause) by more than
    ``spec.schedule.startingDeadlineSeconds``."""
    RUNNERS_BUSY = "RunnersBusy"
    """The runners had no room for it before its deadline: it waited in the operator
    for its namespace's fair share of them (``AGENTSTACK_DISPATCH_BACKLOG``)."""
    CONCURRENCY_QUOTA = "ConcurrencyQuota"
    """Its namespace ran as many ticks at once as its ``AgentBudget`` allows
    (``spec.quota.maxConcurrentTicks``) until its deadline."""


class StepReason(StrEnum):
    """Why one agent step ended as it did (trace entries, step records).

    The LLM failures are the router's error kinds (the last model's error when every
    model of the agent's chain failed).
    """

    SUCCEEDED = "Succeeded"
    AWAITING_APPROVAL = "AwaitingApproval"
    """Not taken: its agent waits for a decision on a tool call (``PauseAgent``)."""
    INVALID_OUTPUT = "InvalidOutput"
    """The model's reply was not a valid action object, even after the repair."""
    BUDGET_EXCEEDED = "BudgetExceeded"
    UNPRICED_MODEL = "UnpricedModel"
    """A dollar budget cannot be kept with a model that has no price."""
    LLM_ERROR = "Error"
    RATE_LIMITED = "RateLimited"
    SERVER_ERROR = "ServerError"
    TIMEOUT = "Timeout"
    REJECTED = "Rejected"
    UNAVAILABLE = "Unavailable"
    LLM_UNAVAILABLE = "LLMUnavailable"
    """Every model of the agent's chain failed or was unavailable."""
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    """The tick's deadline left no time for the call."""

    @property
    def taken(self) -> bool:
        """Whether the step counts as succeeded (one not taken on purpose does too)."""
        return self in (StepReason.SUCCEEDED, StepReason.AWAITING_APPROVAL)


class StallReason(StrEnum):
    """Why a tick (or a step) made no progress: the ``Stalled`` condition's reason once
    too many idle ticks come in a row."""

    NOTHING_TO_DO = "NothingToDo"
    """No agent asked for a change of shared work."""
    ACTIONS_REFUSED = "ActionsRefused"
    """What agents asked for was refused (the trace says why)."""
    PLAN_FULL = "PlanFull"
    """New tasks were refused: the plan holds as many open tasks as it may."""


class Phase(StrEnum):
    """The one-word summary in ``status.phase`` (for the printer column and the
    ``agentstack_stacks`` gauge; logic reads conditions)."""

    RUNNING = "Running"
    PAUSED = "Paused"
    STOPPED = "Stopped"
    INVALID = "Invalid"
    WAITING = "Waiting"
    DEGRADED = "Degraded"
    BUDGET_EXCEEDED = "BudgetExceeded"
    COMPLETED = "Completed"


class ConditionType(StrEnum):
    """The conditions every stack's status carries, in the order they are written."""

    READY = "Ready"
    TICKING = "Ticking"
    PAUSED = "Paused"
    DEGRADED = "Degraded"
    BUDGET_EXCEEDED = "BudgetExceeded"
    TOOLS_DEGRADED = "ToolsDegraded"
    AWAITING_APPROVAL = "AwaitingApproval"
    STALLED = "Stalled"
    COMPLETED = "Completed"


class Blocked(StrEnum):
    """Why a ``Running`` stack may not tick (the ``Ready``/``Ticking`` reason), in the
    order they are weighed: the first that applies is the one reported."""

    INVALID_SPEC = "InvalidSpec"
    ENDPOINT_NOT_ALLOWED = "EndpointNotAllowed"
    SECRET_NOT_FOUND = "SecretNotFound"
    JOB_CREDENTIALS_UNAVAILABLE = "JobCredentialsUnavailable"
    """``executor: job``: the operator could not give the namespace's tick pods their
    Redis credentials (an ACL user it may not create, a Secret it may not write)."""
    TRIGGER_NOT_ALLOWED = "TriggerNotAllowed"
    """A trigger watches what its ServiceAccount (or the operator) may not list and
    watch, or a kind the API server does not serve."""
    COMPLETED = "Completed"
    """The finite goal is met (a new goal or criterion starts the stack again)."""
    BUDGET_EXCEEDED = "BudgetExceeded"


class ConditionReason(StrEnum):
    """The other reasons of a stack's conditions (a held ``Running`` stack's ``Ready``
    and ``Ticking`` give its :class:`Blocked` reason)."""

    ACCEPTED = "Accepted"
    """``Ready``: the spec is valid and its references resolve."""
    STOPPED = "Stopped"
    """``Ready`` and ``Ticking``: the run has ended."""
    PAUSED = "Paused"
    """``Ticking`` and ``Paused``: paused by the spec."""
    SCHEDULED = "Scheduled"
    """``Ticking``: ticks go out at the interval in force."""
    RESUMED = "Resumed"
    """``Paused``: running again after a pause (a new operator reads it back, so a
    resumed stack still skips what it missed)."""
    NOT_PAUSED = "NotPaused"
    TICKS_FAILING = "TicksFailing"
    """``Degraded``: too many failed ticks in a row."""
    TICKS_HEALTHY = "TicksHealthy"
    BUDGET_SPENT = "BudgetSpent"
    WITHIN_BUDGET = "WithinBudget"
    NAMESPACE_BUDGET_SPENT = "NamespaceBudgetSpent"
    """``BudgetExceeded``: an ``AgentBudget`` of the namespace is spent (its message
    names it); the stack resumes when its window rolls over."""
    NAMESPACE_BUDGET_WARNING = "NamespaceBudgetWarning"
    """``BudgetExceeded`` False: the namespace's budget passed its warning threshold."""
    NAMESPACE_BUDGET_THROTTLED = "NamespaceBudgetThrottled"
    """``BudgetExceeded`` False: the namespace's budget passed its throttle threshold:
    the stack waits longer between ticks."""
    NAMESPACE_QUOTA_THROTTLED = "NamespaceQuotaThrottled"
    """``BudgetExceeded`` False: the namespace's stacks ask for more ticks per second
    than its ``AgentBudget``'s quota: every interval is stretched by the same factor."""
    TOOL_SERVER_UNAVAILABLE = "ToolServerUnavailable"
    """``ToolsDegraded``: the last tick could not use a tool server."""
    TOOL_SERVERS_ANSWERING = "ToolServersAnswering"
    NO_TOOL_SERVERS = "NoToolServers"
    TOOL_CALLS_WAITING = "ToolCallsWaiting"
    """``AwaitingApproval``: tool calls wait for a person."""
    NOTHING_WAITING = "NothingWaiting"
    PROGRESSING = "Progressing"
    """``Stalled`` False: ticks make progress (a stalled stack's reason is its
    :class:`StallReason`)."""
    GOAL_MET = "GoalMet"
    """``Completed``: the team declared the goal met and it was confirmed."""
    MAX_TICKS_REACHED = "MaxTicksReached"
    """``Completed``: ``spec.completion.maxTicks`` ticks have run."""
    ONGOING = "Ongoing"
    """``Completed`` False: the goal has no end (no ``spec.completion``)."""
    NOT_MET = "NotMet"
    """``Completed`` False: a finite goal not met yet."""


class EventReason(StrEnum):
    """Reasons of the Kubernetes Events posted on a stack."""

    STARTED = "Started"
    PAUSED = "Paused"
    RESUMED = "Resumed"
    STOPPED = "Stopped"
    INVALID_SPEC = "InvalidSpec"
    ENDPOINT_NOT_ALLOWED = "EndpointNotAllowed"
    SPEC_ACCEPTED = "SpecAccepted"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_FOUND = "SecretFound"
    JOB_CREDENTIALS_UNAVAILABLE = "JobCredentialsUnavailable"
    JOB_CREDENTIALS_READY = "JobCredentialsReady"
    """The namespace's tick pods have their Redis credentials (after they could not)."""
    TRIGGER_NOT_ALLOWED = "TriggerNotAllowed"
    TRIGGERS_ALLOWED = "TriggersAllowed"
    """Every trigger of the stack may watch what it names (after one could not)."""
    DEGRADED = "Degraded"
    RECOVERED = "Recovered"
    BUDGET_EXCEEDED = "BudgetExceeded"
    NAMESPACE_BUDGET_OK = "NamespaceBudgetOk"
    """On an ``AgentBudget``: its new window (or a raised cap) is below every threshold."""
    NAMESPACE_BUDGET_WARNING = "NamespaceBudgetWarning"
    NAMESPACE_BUDGET_THROTTLED = "NamespaceBudgetThrottled"
    NAMESPACE_BUDGET_EXCEEDED = "NamespaceBudgetExceeded"
    TOOL_SERVER_UNAVAILABLE = "ToolServerUnavailable"
    TOOL_SERVERS_RECOVERED = "ToolServersRecovered"
    APPROVAL_REQUESTED = "ApprovalRequested"
    TOOL_CALL_APPROVED = "ToolCallApproved"
    TOOL_CALL_DENIED = "ToolCallDenied"
    ROLLED_BACK = "RolledBack"
    """A person rolled the stack back to a checkpoint (the message names who, to which)."""
    FORKED = "Forked"
    """The stack was forked from another's checkpoint and seeded (who, from where)."""
    STALLED = "Stalled"
    PROGRESSING = "Progressing"
    """A stalled stack made progress again."""
    GOAL_DECLARED = "GoalDeclared"
    """The team declared the goal met; it waits for confirmation."""
    GOAL_REJECTED = "GoalRejected"
    COMPLETED = "Completed"
    """The finite goal is met: the stack ticks no more."""
    TICK_SKIPPED = "TickSkipped"
    """A scheduled fire was missed by more than its starting deadline: it did not run."""
    CLEANUP_FAILED = "CleanupFailed"
    """The finalizer gave up removing a deleted stack's Redis keys and Jobs."""
