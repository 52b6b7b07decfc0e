"""The archive's index on a real Redis (standalone and cluster): kept with every append,
bounded with the archive, searched by BM25.

Items reach the archive two ways — a step's commit (its ``ARCHIVE`` writes) and an
input's acceptance — and both index in the same script call. The trim runs at the
finish of every tick (and at an append past the hard cap); small caps are passed to
the scripts here so a bound is reached in a few items.
"""

from __future__ import annotations

import itertools

import orjson
import pytest
from redis.exceptions import ResponseError

from agentstack_core.keys import StackKeys
from agentstack_core.messages import TickResult
from agentstack_core.operations import Archive
from agentstack_core.protocol import RedisClient
from agentstack_core.reasons import Outcome, TickReason
from agentstack_core.records import ArchiveKind, ArchiveRecord, StepRecord
from agentstack_core.redis.inputs import send_input
from agentstack_core.redis.publishing import delete_stack
from agentstack_core.redis.search import search_archive
from agentstack_core.redis.tick import (
    _COMMIT_STEP,
    _FINISH_TICK,
    TickStore,
    _Commit,
    _Finish,
    commands_of,
    lease_token,
)
from agentstack_core.retention import INBOX_MAXLEN, INPUTS_MAXLEN
from tests.integration.support import STACK, publish

pytestmark = pytest.mark.asyncio
KEYS = StackKeys(STACK)
TICK = "team/demo/1"
FAR = 10**9
"""A cap never reached."""
_TICKS = itertools.count()


def _item(text: str, kind: ArchiveKind = ArchiveKind.MESSAGE, ref: str = "") -> ArchiveRecord:
    return ArchiveRecord(kind=kind, ref=ref, agent="builder", tick_id=TICK, at=1.5, text=text)


def _step(agent: str = "builder") -> StepRecord:
    return StepRecord(agent=agent, role=agent, outcome="Succeeded", reason="Succeeded")


async def _leased(client: RedisClient, tick: str = TICK) -> tuple[TickStore, str]:
    await publish(client, {"goal": "g"})
    store = TickStore(client, STACK)
    token = lease_token(tick, "runner-a", "n1")
    assert (await store.begin(tick, token, ttl_seconds=30)).published is not None
    return store, token


async def _commit(
    client: RedisClient, texts: list[str], *, hard: int = FAR, agent: str = "builder"
) -> None:
    """A step of ``agent`` (in a tick of its own) archiving ``texts``, with the archive
    held to ``hard`` items."""
    tick = f"team/demo/step-{next(_TICKS)}"
    store, token = await _leased(client, tick)
    declared = _COMMIT_STEP.key_list({"steps": KEYS.steps(tick), **_context(agent)}, KEYS)
    writes = [
        [command, declared.index(key) + 1, arguments]
        for text in texts
        for command, key, arguments in commands_of(KEYS, Archive(_item(text)))
    ]
    await _COMMIT_STEP(
        client,
        _Commit(
            token=token,
            uid="",
            agent=agent,
            record=_step(agent).to_json(),
            writes=orjson.dumps(writes).decode(),
            next_agent=None,
            day="2026-12-07",
            archive_hard_maxlen=hard,
        ),
        keys=KEYS,
        steps=KEYS.steps(tick),
        **_context(agent),
    )
    await store.release_lease(token)


def _context(agent: str) -> dict[str, str]:
    return {"memory": KEYS.memory(agent), "inbox": KEYS.inbox(agent)}


async def _finish(
    client: RedisClient, *, cap: int, hard: int = FAR, batch: int = FAR, tick: str = TICK
) -> None:
    """The finish of a tick that did not run, with the archive's caps given."""
    result = TickResult(
        stack=STACK,
        tick_id=tick,
        generation=1,
        outcome=Outcome.DROPPED,
        reason=TickReason.COMPLETED,
    )
    answer = await _FINISH_TICK(
        client,
        _Finish(
            uid="",
            owner=None,
            busy_prefix=f"{tick}|",
            now=1.0,
            result=result,
            history=result.history_entry(),
            ran=False,
            archive_maxlen=cap,
            archive_hard_maxlen=hard,
            archive_trim_batch=batch,
        ),
        keys=KEYS,
        steps=KEYS.steps(tick),
    )
    assert answer == 1


async def _ids(client: RedisClient) -> list[str]:
    return [entry_id for entry_id, _fields in await client.xrange(KEYS.archive)]


async def _postings(client: RedisClient) -> list[tuple[str, str, int, int, str]]:
    """The index's members as (term, id, count, length, kind)."""
    members = await client.zrange(KEYS.archive_index, 0, -1)  # type: ignore[misc]
    split = [member.split("\0") for member in members]
    return [(term, id_, int(tf), int(length), kind) for term, id_, tf, length, kind in split]


async def _consistent(client: RedisClient) -> None:
    """The index holds exactly the postings of the items the archive holds, and the
    stats their total length."""
    entries = await client.xrange(KEYS.archive)
    expected, total = set(), 0
    for entry_id, fields in entries:
        length, *rest = fields["terms"].split()
        total += int(length)
        for term, tf in zip(rest[::2], rest[1::2], strict=True):
            expected.add((term, entry_id, int(tf), int(length), fields["kind"]))
    assert set(await _postings(client)) == expected
    stats = await client.hget(KEYS.archive_stats, "length")  # type: ignore[misc]
    assert int(stats or 0) == total


async def test_a_commit_indexes_what_it_archives_in_the_same_call(aredis: RedisClient) -> None:
    await _commit(aredis, ["The Reviewer asked for a concrete next step", "the the a"])
    (first, second) = await _ids(aredis)
    postings = await _postings(aredis)
    # lower-cased, stopwords and one-letter words left out, counted once per item
    assert sorted(postings) == sorted(
        (term, first, 1, 5, "message") for term in ("reviewer", "asked", "concrete", "next", "step")
    )
    assert second not in {p[1] for p in postings}  # nothing searchable in it: no posting
    await _consistent(aredis)
    # Every key the commit wrote is in the stack's index set (deletion finds them).
    indexed = await aredis.smembers(KEYS.index)  # type: ignore[misc]
    assert {KEYS.archive, KEYS.archive_index, KEYS.archive_stats} <= set(indexed)


async def test_an_input_is_indexed_as_it_is_accepted(aredis: RedisClient) -> None:
    await publish(aredis, {"goal": "g"})
    await send_input(
        aredis, STACK, agent="planner", sender="alice", content="Ship on Friday", per_minute=5
    )
    ((entry_id, fields),) = await aredis.xrange(KEYS.archive)
    assert (fields["kind"], fields["ref"], fields["agent"]) == ("input", "#1", "alice")
    assert sorted(await _postings(aredis)) == [
        ("friday", entry_id, 1, 2, "input"),
        ("ship", entry_id, 1, 2, "input"),
    ]
    await _consistent(aredis)


async def test_a_fact_sent_as_an_input_is_found_after_it_left_every_capped_stream(
    aredis: RedisClient,
) -> None:
    await publish(aredis, {"goal": "g"})

    async def send(content: str) -> None:
        await send_input(
            aredis, STACK, agent="planner", sender="alice", content=content, per_minute=FAR
        )

    await send("The launch code is ZEBRA-42")
    flood = max(INBOX_MAXLEN, INPUTS_MAXLEN) + 300  # past the caps and their ~ slack
    for n in range(flood):
        await send(f"routine status note number {n}")
    for stream in (KEYS.inbox("planner"), KEYS.inputs):
        kept = [fields["content"] for _id, fields in await aredis.xrange(stream, count=400)]
        assert "The launch code is ZEBRA-42" not in kept
        assert await aredis.xlen(stream) < flood
    found = await search_archive(aredis, STACK, "what was the launch code?", limit=3)
    assert found.terms == ("launch", "code")
    assert found.items == flood + 1
    assert found.hits[0].record.text == "The launch code is ZEBRA-42"
    assert found.hits[0].record.kind is ArchiveKind.INPUT
    assert found.hits[0].record.ref == "#1"


async def test_search_ranks_by_bm25(aredis: RedisClient) -> None:
    await _commit(
        aredis,
        [
            "zebra crossing design for the main street",
            "notes about the weekly meeting",
            "zebra zebra zebra: the reviewer wants every zebra counted",
            "a long text that mentions a zebra once among many other words about "
            "meetings, streets, designs, crossings, notes, plans and reviews",
            "meeting moved to Friday",
        ],
    )
    ids = await _ids(aredis)
    found = await search_archive(aredis, STACK, "Zebra", limit=10)
    # more occurrences first; of one occurrence each, the shorter item first
    assert [hit.id for hit in found.hits] == [ids[2], ids[0], ids[3]]
    assert found.hits[0].score > found.hits[1].score > found.hits[2].score > 0
    # a rarer term weighs more than a common one
    both = await search_archive(aredis, STACK, "meeting zebra crossing", limit=2)
    assert both.hits[0].id == ids[0]
    # what the index holds for bookkeeping never leaves it
    assert found.hits[0].record.terms is None
    assert found.hits[0].record.text.startswith("zebra zebra zebra")


async def test_search_filters_by_kind_limits_and_adds_the_newest(aredis: RedisClient) -> None:
    await publish(aredis, {"goal": "g"})
    await send_input(
        aredis, STACK, agent="planner", sender="a", content="deploy plan", per_minute=9
    )
    await _commit(aredis, ["deploy the plan today", "unrelated words", "deploy deploy"])
    (deploy_input, *_rest) = await _ids(aredis)
    only = await search_archive(aredis, STACK, "deploy", kind=ArchiveKind.INPUT)
    assert [hit.id for hit in only.hits] == [deploy_input]
    top = await search_archive(aredis, STACK, "deploy", limit=1)
    assert len(top.hits) == 1
    assert top.newest == []
    with_newest = await search_archive(aredis, STACK, "deploy", limit=1, newest=2)
    assert [hit.record.text for hit in with_newest.newest] == ["deploy deploy", "unrelated words"]
    assert with_newest.newest[0].score == 0.0


async def test_a_query_with_nothing_searchable_finds_nothing(aredis: RedisClient) -> None:
    await _commit(aredis, ["something to find"])
    for query in ("", "the a of", "!!! ???", "x"):
        found = await search_archive(aredis, STACK, query)
        assert found.terms == ()
        assert found.hits == []
        assert found.items == 1
    empty = await search_archive(aredis, STACK.__class__("team", "nothing"), "something")
    assert (empty.items, empty.hits) == (0, [])


async def test_non_ascii_words_are_found_as_written(aredis: RedisClient) -> None:
    await _commit(aredis, ["Treffen mit Müller über Straßenbau", "plain ascii text"])
    found = await search_archive(aredis, STACK, "müller STRAßENBAU")
    assert found.terms == ("müller", "straßenbau")
    assert [hit.record.text for hit in found.hits] == ["Treffen mit Müller über Straßenbau"]


async def test_the_commit_expands_archive_writes_for_the_archive_only(aredis: RedisClient) -> None:
    store, token = await _leased(aredis)
    declared = _COMMIT_STEP.key_list({"steps": KEYS.steps(TICK), **_context("builder")}, KEYS)
    writes = [["ARCHIVE", declared.index(KEYS.plan) + 1, ["kind", "note", "text", "x"]]]
    with pytest.raises(ResponseError, match="ARCHIVE writes to the archive only"):
        await _COMMIT_STEP(
            aredis,
            _Commit(
                token=token,
                uid="",
                agent="builder",
                record=_step().to_json(),
                writes=orjson.dumps(writes).decode(),
                next_agent=None,
                day="2026-12-07",
            ),
            keys=KEYS,
            steps=KEYS.steps(TICK),
            **_context("builder"),
        )
    assert await aredis.exists(KEYS.plan, KEYS.archive, KEYS.archive_index) == 0
    await store.release_lease(token)


async def test_the_finish_trims_only_what_consolidation_covered(aredis: RedisClient) -> None:
    await _commit(aredis, [f"item number {n} alpha" for n in range(12)])
    ids = await _ids(aredis)
    await _finish(aredis, cap=5)
    assert await _ids(aredis) == ids  # no watermark: nothing covered, nothing trimmed

    await aredis.hset(KEYS.longterm, "watermark", ids[3])  # type: ignore[misc]
    await _finish(aredis, cap=5, tick="team/demo/2")
    assert await _ids(aredis) == ids[4:]  # the covered four went; the rest is uncovered
    await _consistent(aredis)

    await aredis.hset(KEYS.longterm, "watermark", ids[-1])  # type: ignore[misc]
    await _finish(aredis, cap=5, tick="team/demo/3")
    assert await _ids(aredis) == ids[-5:]  # covered, down to the cap and no further
    await _consistent(aredis)
    assert await aredis.hget(KEYS.longterm, "lost") is None  # type: ignore[misc]
    found = await search_archive(aredis, STACK, "alpha number", limit=20)
    assert sorted(hit.id for hit in found.hits) == sorted(ids[-5:])


async def test_a_watermark_that_is_no_stream_id_covers_nothing(aredis: RedisClient) -> None:
    await _commit(aredis, [f"kept {n}" for n in range(4)])
    ids = await _ids(aredis)
    await aredis.hset(KEYS.longterm, "watermark", "yesterday")  # type: ignore[misc]
    await _finish(aredis, cap=1)  # neither trims nor fails the finish
    assert await _ids(aredis) == ids
    last_ms = ids[-1].split("-")[0]  # a bare time is an id too: every sequence of it
    await aredis.hset(KEYS.longterm, "watermark", last_ms)  # type: ignore[misc]
    await _finish(aredis, cap=1, tick="team/demo/2")
    assert await _ids(aredis) == ids[-1:]


async def test_past_the_hard_cap_the_oldest_go_and_are_counted_lost(aredis: RedisClient) -> None:
    await _commit(aredis, [f"first batch {n}" for n in range(4)])
    first = await _ids(aredis)
    await aredis.hset(KEYS.longterm, "watermark", first[1])  # type: ignore[misc]
    await _commit(aredis, [f"second batch {n}" for n in range(6)], hard=6)
    kept = await _ids(aredis)
    assert len(kept) == 6
    assert not set(kept) & set(first)  # ten items, six kept: the oldest four went
    assert await aredis.hget(KEYS.longterm, "lost") == "2"  # type: ignore[misc]  # uncovered
    await _consistent(aredis)
    assert (await search_archive(aredis, STACK, "first batch")).items == 6
    # the finish holds the hard cap too, counting what it must
    await _finish(aredis, cap=2, hard=4)
    assert await _ids(aredis) == kept[2:]
    assert await aredis.hget(KEYS.longterm, "lost") == "4"  # type: ignore[misc]
    await _consistent(aredis)


async def test_a_backlog_is_trimmed_a_batch_per_call(aredis: RedisClient) -> None:
    await _commit(aredis, [f"backlog {n}" for n in range(9)])
    ids = await _ids(aredis)
    await aredis.hset(KEYS.longterm, "watermark", ids[-1])  # type: ignore[misc]
    await _finish(aredis, cap=2, batch=3)
    assert await _ids(aredis) == ids[3:]
    await _finish(aredis, cap=2, batch=3, tick="team/demo/2")
    assert await _ids(aredis) == ids[6:]
    await _consistent(aredis)


async def test_deleting_the_stack_removes_the_index(aredis: RedisClient) -> None:
    await _commit(aredis, ["to be deleted"])
    await delete_stack(aredis, STACK)
    assert await aredis.exists(KEYS.archive, KEYS.archive_index, KEYS.archive_stats) == 0
