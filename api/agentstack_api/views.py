"""What the API shows of a stack: Redis records and the spec, as response models.

Records are decoded here and only here, with the typed codecs of
:mod:`agentstack_core.records` (the runner writes them with the same codecs), and shown
as the camelCase models of :mod:`.models` by their one rule
(:func:`~.models.from_record`); pages and live streams render entries with the same
:class:`StreamKind`, so a trace looks the same in ``…/traces`` and ``…/traces/stream``.

:class:`StackViews` reads one stack's Redis state through
:class:`~agentstack_core.redis.reader.StackReader` (pages, agents, memory, artifacts) and
searches its archive (:func:`~agentstack_core.redis.search.search_archive`). It is
handed the stack object :class:`~.access.StackAccess` resolved, never a bare name, so
nothing is read from Redis for a stack the caller may not get.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from agentstack_api import models
from agentstack_api.cache import summary
from agentstack_api.errors import ApiError
from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.kube.manifests import ObjectMeta
from agentstack_core.kube.stacks import StackManifest
from agentstack_core.pricing import known_usd
from agentstack_core.protocol import RedisClient
from agentstack_core.records import (
    ArchiveKind,
    ArtifactRecord,
    FeedRecord,
    MessageRecord,
    Record,
    TickRecord,
    TraceRecord,
)
from agentstack_core.redis.reader import StackReader
from agentstack_core.redis.search import search_archive
from agentstack_core.spec import (
    DEFAULT_TEAM,
    DEFAULTS,
    Schedule,
    SpecError,
    StackSpec,
    execution_state_of,
    parse_spec,
)

EntryT = TypeVar("EntryT", bound=BaseModel)


def _float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


# -- records ---------------------------------------------------------------------------


def message_entry(entry_id: str, fields: dict[str, str], agent: str) -> models.Message:
    """An entry of ``agent``'s inbox."""
    record = MessageRecord.from_fields(fields)
    return models.from_record(models.Message, record, id=entry_id, to=agent)


def artifact_entry(name: str, record: ArtifactRecord) -> models.Artifact:
    """An artifact by its name (an old record without a time shows none)."""
    return models.from_record(
        models.Artifact, record, name=name, updatedAt=record.updated_at or None
    )


@dataclass(frozen=True)
class StreamKind(Generic[EntryT]):
    """One of a stack's record streams: its key, its record, its entry and page models.

    ``event`` names the Server-Sent Event its live entries are sent as.
    """

    event: str
    key_of: Callable[[StackKeys], str]
    record: type[Record]
    entry: type[EntryT]
    page_model: type[BaseModel]

    def render(self, entry_id: str, fields: dict[str, str]) -> EntryT:
        """One stream entry as its response model."""
        return models.from_record(self.entry, self.record.from_fields(fields), id=entry_id)


TICKS = StreamKind("tick", lambda keys: keys.history, TickRecord, models.TickEntry, models.TickPage)
TRACES = StreamKind(
    "trace", lambda keys: keys.trace, TraceRecord, models.TraceEntry, models.TracePage
)
FEED = StreamKind("feed", lambda keys: keys.feed, FeedRecord, models.FeedEntry, models.FeedPage)


# -- the spec --------------------------------------------------------------------------


def _budget(budget: dict[str, Any]) -> dict[str, float]:
    """The budget's limits as set (numbers only: a manifest's garbage is left out)."""
    return {
        k: v for k, v in budget.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _schedule(schedule: Schedule | None) -> models.ScheduleSummary | None:
    if schedule is None:
        return None
    return models.ScheduleSummary(
        cron=schedule.cron,
        timeZone=schedule.time_zone,
        startingDeadlineSeconds=schedule.starting_deadline_seconds,
        jitterSeconds=schedule.jitter_seconds,
    )


def spec_summary(spec: dict[str, Any]) -> models.SpecSummary:
    """What a dashboard shows of a spec: parsed with the shared model (its defaults),
    or — for a spec that does not parse — what the manifest says, defaults filled in."""
    try:
        parsed: StackSpec | None = parse_spec(spec)
    except SpecError:
        parsed = None
    budget = spec.get("budget") or {}
    if parsed is None:
        d = DEFAULTS
        return models.SpecSummary(
            goal=str(spec.get("goal", "")),
            executionState=execution_state_of(spec).value,
            tickIntervalSeconds=(
                None
                if "schedule" in spec
                else _float(spec.get("tickIntervalSeconds")) or d.tick_interval_seconds
            ),
            tickTimeoutSeconds=_float(spec.get("tickTimeoutSeconds")) or d.tick_timeout_seconds,
            priority=str(spec.get("priority", d.priority.value)),
            executor=str(spec.get("executor", d.executor.value)),
            missedTickPolicy=str(spec.get("missedTickPolicy", d.missed_tick_policy.value)),
            budget=_budget(budget),
            agents=[],
            providers=[],
        )
    return models.SpecSummary(
        goal=parsed.goal,
        executionState=parsed.execution_state.value,
        tickIntervalSeconds=None if parsed.schedule else parsed.tick_interval_seconds,
        schedule=_schedule(parsed.schedule),
        tickTimeoutSeconds=parsed.tick_timeout_seconds,
        priority=parsed.priority.value,
        executor=parsed.executor.value,
        missedTickPolicy=parsed.missed_tick_policy.value,
        budget=_budget(budget),
        agents=[
            models.AgentSpecSummary(
                name=a.name,
                role=a.role,
                models=[str(m) for m in a.models],
                customPrompt=a.system_prompt is not None,
            )
            for a in parsed.agents
        ],
        providers=[
            models.ProviderSummary(
                name=name, usesSecret=config.secret_ref is not None, baseURL=config.base_url
            )
            for name, config in sorted(parsed.providers.items())
        ],
    )


def stack_detail(stack: dict[str, Any]) -> models.StackDetail:
    """One stack as ``GET …/stacks/{name}`` shows it: summary, spec summary, status."""
    manifest = StackManifest.of(stack)
    return models.StackDetail(
        **summary(stack),
        uid=manifest.meta.uid,
        generation=manifest.meta.generation,
        spec=spec_summary(dict(manifest.spec)),
        status=dict(manifest.status),
    )


def agent_names(stack: dict[str, Any]) -> list[str]:
    """The agents a stack declares, or the default team when it declares none."""
    declared = StackManifest.of(stack).spec.get("agents") or []
    names = [str(a.get("name")) for a in declared if isinstance(a, dict) and a.get("name")]
    return names or list(DEFAULT_TEAM)


def stack_ref(stack: dict[str, Any]) -> StackRef:
    """The reference of a stack object (its Redis keys' hash tag)."""
    meta = ObjectMeta.of(stack)
    return StackRef(meta.namespace, meta.name)


def stack_reader(redis: RedisClient, stack: dict[str, Any]) -> StackReader:
    """The Redis reader of a stack object (one the caller was allowed to get)."""
    return StackReader(redis, stack_ref(stack))


# -- the service -----------------------------------------------------------------------


class StackViews:
    """Pages and snapshots of one stack's Redis state, as response models."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis

    async def page(
        self, stack: dict[str, Any], kind: StreamKind[Any], *, cursor: str | None, limit: int
    ) -> BaseModel:
        """A page of ``kind`` entries, newest first, older than ``cursor`` (a stream id)."""
        reader = stack_reader(self.redis, stack)
        page = await reader.page(kind.key_of(reader.keys), cursor=cursor, limit=limit)
        return kind.page_model(
            items=[kind.render(i, f) for i, f in page.entries], nextCursor=page.next_cursor
        )

    async def messages(
        self, stack: dict[str, Any], agent: str, *, cursor: str | None, limit: int
    ) -> models.MessagePage:
        """A page of one agent's inbox, newest first (404 for an agent not in the stack)."""
        if agent not in agent_names(stack):
            raise ApiError(404, "NotFound", f"no agent {agent!r} in {stack_ref(stack)}")
        reader = stack_reader(self.redis, stack)
        page = await reader.page(reader.keys.inbox(agent), cursor=cursor, limit=limit)
        return models.MessagePage(
            items=[message_entry(i, f, agent) for i, f in page.entries],
            nextCursor=page.next_cursor,
        )

    async def agents(self, stack: dict[str, Any]) -> models.AgentList:
        """The stack's agents: their spec summary, memory size and inbox size."""
        spec = spec_summary(dict(StackManifest.of(stack).spec))
        names = [agent.name for agent in spec.agents] or agent_names(stack)
        reader = stack_reader(self.redis, stack)
        memories = await reader.memories(names)
        inboxes = await reader.inbox_sizes(names)
        by_name = {agent.name: agent for agent in spec.agents}
        return models.AgentList(
            items=[
                models.AgentInfo(
                    **(
                        by_name[n].model_dump()
                        if n in by_name
                        else {"name": n, "role": n, "models": [], "customPrompt": False}
                    ),
                    memoryKeys=len(memories[n]),
                    inboxMessages=inboxes[n],
                )
                for n in names
            ]
        )

    async def memory(self, stack: dict[str, Any]) -> models.Memory:
        """The shared plan, each agent's working memory, the long-term memory, and the
        usage counters."""
        reader = stack_reader(self.redis, stack)
        usage, longterm = await reader.usage(), await reader.longterm()
        return models.Memory(
            plan=[task.to_dict() for task in await reader.plan()],
            agents=await reader.memories(agent_names(stack)),
            usage=usage,
            costUSD=known_usd(usage.get("cost", 0), usage.get("unpriced", 0)),
            longTerm=longterm.long_term.to_dict(),
            consolidations=longterm.consolidations,
        )

    async def artifacts(self, stack: dict[str, Any]) -> models.ArtifactList:
        """The stack's artifacts, by name."""
        records = await stack_reader(self.redis, stack).artifacts()
        return models.ArtifactList(
            items=[artifact_entry(name, record) for name, record in sorted(records.items())]
        )

    async def search(
        self, stack: dict[str, Any], query: str, *, limit: int, kind: ArchiveKind | None
    ) -> models.SearchResult:
        """The best ``limit`` items of the stack's archive for ``query`` (BM25 over the
        index Redis keeps with it; lexical: the API holds no provider key to embed a
        query with)."""
        found = await search_archive(self.redis, stack_ref(stack), query, limit=limit, kind=kind)
        return models.SearchResult(
            query=query,
            terms=list(found.terms),
            archived=found.items,
            items=[
                models.from_record(models.ArchiveHit, hit.record, id=hit.id, score=hit.score)
                for hit in found.hits
            ],
        )
