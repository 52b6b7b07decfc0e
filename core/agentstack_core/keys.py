"""The Redis keyspace: one function per key, so no module spells a key by hand.

Every key of one stack starts with the hash tag ``{namespace/name}``. Redis Cluster
hashes only the tag, so all of a stack's keys live in one slot, and the multi-key Lua
scripts that commit a step or finish a tick work unchanged on a cluster. Kubernetes
names never contain ``{``, ``}`` or ``/``, so the tag cannot be forged by a name.

Fleet-wide keys (the tick lanes, the results stream) share the tag ``{agentstack}``
for the same reason: one ``XREADGROUP`` reads every priority lane at once, and the
keys of one namespace's budget ledger share ``{ns:<namespace>}`` (:class:`NamespaceKeys`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

FLEET_TAG = "{agentstack}"


@dataclass(frozen=True, order=True)
class StackRef:
    """A stack's identity: its Kubernetes namespace and name."""

    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str) -> StackRef:
        """Parse ``namespace/name`` (what ``str()`` produces)."""
        namespace, sep, name = text.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise ValueError(f"expected NAMESPACE/NAME, got {text!r}")
        return cls(namespace, name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def namespace_pattern(namespace: str) -> str:
    """The glob every key of every stack of ``namespace`` matches, and no other key:
    the namespace ends at the ``/`` of the tag, so ``{team-a/*`` never matches
    ``{team-ab/…}`` (what a Redis ACL user confined to one namespace is granted)."""
    return f"{{{namespace}/*"


@dataclass(frozen=True)
class StackKeys:
    """All Redis keys of one stack."""

    stack: StackRef

    @property
    def tag(self) -> str:
        return f"{{{self.stack.namespace}/{self.stack.name}}}"

    @property
    def prefix(self) -> str:
        """Every key of the stack starts with this (nothing may, once it is deleted)."""
        return f"{self.tag}:"

    @property
    def spec(self) -> str:
        """Hash: the spec the operator published (``generation``, ``spec`` JSON, ``state``,
        ``uid``). Its presence is the stack's life in Redis: every write script checks it,
        so once deletion has removed it, no tick in flight can write a key again."""
        return f"{self.tag}:spec"

    @property
    def index(self) -> str:
        """Set: the name of every key of the stack that a write script created, so that
        deleting a stack unlinks exactly its keys without scanning the keyspace."""
        return f"{self.tag}:keys"

    @property
    def outcomes(self) -> str:
        """Hash: tick id → the recorded result (fields as JSON) of the newest finished
        ticks, so a redelivered tick republishes the outcome it already had."""
        return f"{self.tag}:outcomes"

    @property
    def lease(self) -> str:
        """String: the token of the runner currently executing a tick (expires)."""
        return f"{self.tag}:lease"

    @property
    def done(self) -> str:
        """Sorted set: ids of finished ticks (score: finish time), trimmed to a window."""
        return f"{self.tag}:ticks:done"

    def steps(self, tick_id: str) -> str:
        """Hash: agent name → committed step record of one tick, so a resumed tick skips it."""
        return f"{self.tag}:tick:{tick_id}:steps"

    @property
    def history(self) -> str:
        """Stream: one entry per finished tick (outcome, duration, tokens), capped."""
        return f"{self.tag}:ticks"

    @property
    def usage(self) -> str:
        """Hash: counters kept by the atomic finish of each tick — ``tokens`` and
        ``ticks`` (what budgets are checked against), ``failures`` (consecutive failed
        ticks) and ``idle`` (consecutive successful ticks without progress). Status
        reports them as counted here, however often a result is delivered."""
        return f"{self.tag}:usage"

    @property
    def usage_days(self) -> str:
        """Hash: the stack's chargeback buckets, ``<YYYY-MM-DD>|<provider:model>|<counter>``
        → an integer, for the counters ``cost`` (nano-dollars), ``tokens``, ``calls`` and
        ``unpriced`` (calls of a model without a price), by the UTC day of the step.
        Incremented by the commit of every step that made calls, in the same script as
        the step's trace entry, so the buckets' ``cost`` adds up to the traces' exactly
        (:mod:`agentstack_core.redis.usage` reads them).

        It grows by four fields per day per model the stack called that day (a stack
        calling two models every day: about 2 900 fields a year), and is kept until the
        stack is deleted: neither Redis 7.0 (what the tests run) nor the chart's 7.2 can
        expire a hash's fields, and a trim would cost every commit a scan of the hash."""
        return f"{self.tag}:usage:days"

    @property
    def plan(self) -> str:
        """String: the shared plan, a JSON list of tasks."""
        return f"{self.tag}:plan"

    @property
    def artifacts(self) -> str:
        """Hash: artifact name → JSON record (content, status, author, version)."""
        return f"{self.tag}:artifacts"

    @property
    def feed(self) -> str:
        """Stream: progress updates for people (the communicator posts here), capped."""
        return f"{self.tag}:feed"

    @property
    def trace(self) -> str:
        """Stream: one entry per agent step (model, tokens, latency, actions, errors), capped."""
        return f"{self.tag}:trace"

    def memory(self, agent: str) -> str:
        """Hash: an agent's working memory, key → value."""
        return f"{self.tag}:memory:{agent}"

    def inbox(self, agent: str) -> str:
        """Stream: messages to an agent; they survive restarts until trimmed."""
        return f"{self.tag}:inbox:{agent}"

    @property
    def goal(self) -> str:
        """String: where a finite goal stands, a JSON
        :class:`~agentstack_core.records.GoalRecord` (absent: never declared met)."""
        return f"{self.tag}:goal"

    @property
    def longterm(self) -> str:
        """Hash: the long-term memory (:class:`~agentstack_core.records.LongTermRecord`):
        the memory every agent sees; ``watermark``, the archive id up to which
        consolidation has covered the archive (absent: nothing); and ``lost``, the items
        the archive's trim dropped uncovered (only past its hard cap)."""
        return f"{self.tag}:longterm"

    @property
    def archive(self) -> str:
        """Stream: what left the working set or passed through a capped stream — closed
        tasks, artifact versions, inputs, messages, feed posts, consolidation notes —
        kept for recall and search (:class:`~agentstack_core.records.ArchiveRecord`),
        each item indexed as it is appended. Trimmed by the finish of every tick to
        :data:`~agentstack_core.retention.ARCHIVE_MAXLEN` items as far as consolidation
        covered them, and to :data:`~agentstack_core.retention.ARCHIVE_HARD_MAXLEN`
        whatever they are (:mod:`agentstack_core.redis.search`)."""
        return f"{self.tag}:archive"

    @property
    def archive_index(self) -> str:
        """Sorted set: the archive's lexical index, every score 0, one member per term of
        an item — ``term\\0<archive id>\\0<count in the item>\\0<item length>\\0<kind>`` —
        so one term's postings are one ``ZRANGEBYLEX`` range; an item's postings leave
        with it when it is trimmed: at most
        :data:`~agentstack_core.retention.INDEX_TERMS` members per item the archive
        keeps."""
        return f"{self.tag}:archive:index"

    @property
    def archive_stats(self) -> str:
        """Hash: ``length``, the summed length (in counted words) of the archive's items:
        with their number (``XLEN`` of the archive) BM25's average length."""
        return f"{self.tag}:archive:stats"

    @property
    def inputs(self) -> str:
        """Stream: every input people or systems sent the stack (its number, agent,
        sender and content), capped: the inputs' log, newest last."""
        return f"{self.tag}:inputs"

    @property
    def input_counters(self) -> str:
        """Hash: ``seq`` (the last input's number) and the rate window (``window``, the
        minute, and ``count``, inputs accepted in it)."""
        return f"{self.tag}:inputs:counters"

    @property
    def deliveries(self) -> str:
        """Sorted set: ``webhook/delivery id`` of each webhook delivery accepted (and
        ``a2a/messageId`` of each A2A message), scored by when (ms): a delivery seen
        again is refused, not sent twice. Bounded by
        :data:`~agentstack_core.retention.DELIVERIES_KEPT` and ``…_SECONDS``."""
        return f"{self.tag}:inputs:deliveries"

    @property
    def input_outcomes(self) -> str:
        """Hash: input number → JSON of what became of it (which agent read it in which
        tick), written by the step that read it."""
        return f"{self.tag}:inputs:outcomes"

    @property
    def approvals(self) -> str:
        """Hash: approval id → JSON record of a tool call waiting for (or past) a
        person's decision (:mod:`agentstack_core.approvals`)."""
        return f"{self.tag}:approvals"

    @property
    def cursors(self) -> str:
        """Hash: agent name → id of the last inbox message it has consumed."""
        return f"{self.tag}:cursors"

    def team(self, agents: Sequence[str]) -> list[str]:
        """The memory and inbox keys of each of ``agents``, in pairs: what a script
        that keeps or restores a whole team's state takes after its declared keys."""
        return [key for agent in agents for key in (self.memory(agent), self.inbox(agent))]

    @property
    def checkpoints(self) -> str:
        """Sorted set: the tick id of each checkpoint kept (score: its sequence number,
        1 for the stack's first), written by the finish of the tick it closes
        (:mod:`agentstack_core.redis.checkpoints`)."""
        return f"{self.tag}:checkpoints"

    @property
    def checkpoint_states(self) -> str:
        """Hash: tick id → the stack's state as that tick left it (a JSON
        :class:`~agentstack_core.redis.checkpoints.CheckpointState`), and ``bytes``: the
        summed length of the states kept (bounded by
        :data:`~agentstack_core.retention.CHECKPOINT_MAX_BYTES`)."""
        return f"{self.tag}:checkpoints:states"


@dataclass(frozen=True)
class FleetKeys:
    """Keys shared by the whole fleet."""

    @staticmethod
    def lane(priority: str) -> str:
        """Stream of tick requests of one priority lane."""
        return f"{FLEET_TAG}:ticks:{priority}"

    results: str = f"{FLEET_TAG}:results"
    """Stream of tick results, consumed by the operator."""

    wakeups: str = f"{FLEET_TAG}:wakeups"
    """Stream of stacks that received an input and want a tick at once (the leading
    operator reads it)."""

    marker: str = f"{FLEET_TAG}:marker"
    """String the leading operator keeps: when it is missing, Redis lost its data
    (restarted without persistence, flushed) and the operator publishes every spec again."""

    publications: str = f"{FLEET_TAG}:publications"
    """Counter raised with every spec an operator publishes: in a Redis that kept its
    writes it never goes down. Lower than the leader last saw, Redis went back in time
    (restored from an earlier snapshot, or a failover lost the latest writes) and the
    leader publishes every spec again, as for a missing marker."""

    @staticmethod
    def llm_slots(provider: str) -> str:
        """Sorted set implementing the fleet-wide concurrency limit of one LLM provider."""
        return f"{FLEET_TAG}:llm:{provider}:slots"


@dataclass(frozen=True)
class NamespaceKeys:
    """The keys of one namespace's budget ledger (:mod:`agentstack_core.redis.ledger`).

    They share the hash tag ``{ns:<namespace>}``: one Redis Cluster slot, so a hold is
    checked against every budget of the namespace in one script. A stack's tag is
    ``{<namespace>/<name>}`` and Kubernetes names never contain ``:``, so no stack's key
    shares it, and the glob a tenant's tick pod is granted (:func:`namespace_pattern`,
    ``{<namespace>/*``) never matches it: credentials confined to a tenant's stacks
    give no way to rewrite what the namespace has spent.
    """

    namespace: str

    @property
    def tag(self) -> str:
        return f"{{ns:{self.namespace}}}"

    @property
    def budgets(self) -> str:
        """Hash: budget name → its definition as JSON, published by the operator
        (``maxCost``, nano-dollars, and ``maxTokens``, both decimal text and optional;
        other fields are the operator's and the ledger ignores them)."""
        return f"{self.tag}:budgets"

    @property
    def spend(self) -> str:
        """Hash: ``<budget>|<window>|<counter>`` → an integer, for the counters
        ``cost`` (nano-dollars) and ``tokens`` charged, ``calls`` charged,
        ``held_cost`` and ``held_tokens`` held by calls in flight, and ``unsettled``
        (calls charged at their worst case because their hold expired unsettled)."""
        return f"{self.tag}:spend"

    @property
    def holds(self) -> str:
        """Sorted set: hold id → when the hold expires (unix seconds)."""
        return f"{self.tag}:holds"

    @property
    def held(self) -> str:
        """Hash: hold id → the hold as JSON (``cost``, ``tokens``: its worst case as
        decimal text; ``windows``: budget name → the window id it holds against)."""
        return f"{self.tag}:held"
