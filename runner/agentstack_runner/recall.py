"""Recall: an agent searches its stack's archive within its step.

A ``recall`` action (:class:`~agentstack_runner.actions.Recall`) is answered like a tool
call: the step searches the archive — every closed task, artifact version, input,
message, feed post and consolidation note it keeps, long after they left the working
set and the capped streams — and shows the model what it found before it answers
again (a recall round counts against the step's few rounds,
:data:`~agentstack_runner.tools.MAX_TOOL_ROUNDS`). The trace records each recall: its
query, the ids of what was shown, and how it was ranked.

Ranking is **lexical** by default: BM25 over the index Redis keeps with the archive
(:mod:`agentstack_core.redis.search`), offline, on the Redis the stack already uses.

It is **semantic** when the stack configures embeddings (``spec.memory.embeddings``)
and the query could be embedded. Exactly what it covers: the candidates are the best
:data:`SEMANTIC_CANDIDATES` lexical hits and the newest :data:`SEMANTIC_NEWEST` items
of the archive; each is ranked by the cosine of its vector (kept with it since it was
archived) to the query's, and the two rankings are fused by reciprocal rank (each
ranking adds ``1 / (RRF_K + rank)``). An item with no word in common with the query
is found only among the newest, and only if its cosine reaches
:data:`SEMANTIC_FLOOR`. An item without a vector — an input (the API that accepts it
holds no provider key), anything archived while the endpoint failed or before the stack
configured embeddings — counts its lexical rank for both rankings: it is neither
favoured nor pushed down for what it lacks. When the query cannot be embedded, the
recall ranks lexically and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from redis.exceptions import RedisError

from agentstack_core.keys import StackRef
from agentstack_core.protocol import RedisClient
from agentstack_core.records import Recalled
from agentstack_core.redis.search import ArchiveHit, SearchResult, search_archive
from agentstack_runner.actions import Recall
from agentstack_runner.embeddings import Vector, cosine, decode_vector

MAX_RECALLS_PER_ROUND = 3
HIT_TEXT_CHARS = 500
"""The most of one item's text a recall shows the model (its start)."""
SEMANTIC_CANDIDATES = 50
"""Lexical hits semantic ranking re-ranks."""
SEMANTIC_NEWEST = 200
"""Newest items semantic ranking considers besides the lexical hits."""
SEMANTIC_FLOOR = 0.3
"""The cosine an item that matched no term of the query needs to be shown."""
RRF_K = 60
"""Reciprocal rank fusion's constant: the usual one, which keeps either ranking's top
from drowning the other's."""

QueryEmbedder = Callable[[str], Awaitable["Vector | None"]]
"""The query's vector, or ``None`` when it could not be had (then: lexical)."""


@dataclass(frozen=True)
class Recollection:
    """What one recall found."""

    query: str
    hits: tuple[ArchiveHit, ...]
    mode: str = "lexical"
    error: str = ""

    def for_prompt(self) -> dict[str, Any]:
        """The recall as the model reads it (each item's text cut)."""
        shown: dict[str, Any] = {
            "recall": self.query,
            "mode": self.mode,
            "found": [
                {
                    "id": hit.id,
                    "kind": hit.record.kind,
                    "ref": hit.record.ref,
                    "agent": hit.record.agent,
                    "tick": hit.record.tick_id,
                    "text": hit.record.text[:HIT_TEXT_CHARS],
                }
                for hit in self.hits
            ],
        }
        if self.error:
            shown["error"] = self.error
        return shown

    def traced(self) -> Recalled:
        return Recalled(query=self.query, hits=tuple(hit.id for hit in self.hits), mode=self.mode)


def _order(hit_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in hit_id.split("-"))


def fuse(query: Vector, found: SearchResult, limit: int) -> list[ArchiveHit]:
    """The best ``limit`` of ``found``'s lexical hits and newest items, by reciprocal
    rank fusion of their lexical ranks and their cosines to ``query`` (see the module
    docstring); each hit's score becomes its fused score."""
    lexical = {hit.id: rank for rank, hit in enumerate(found.hits, 1)}
    candidates = {hit.id: hit for hit in [*found.newest, *found.hits]}
    similar, unembedded = [], []
    for hit_id, hit in candidates.items():
        vector = decode_vector(hit.record.vector or "")
        if not vector:
            unembedded.append(hit_id)
            continue
        similarity = cosine(query, vector)
        if hit_id in lexical or similarity >= SEMANTIC_FLOOR:
            similar.append((similarity, _order(hit_id), hit_id))
    similar.sort(reverse=True)
    semantic = {hit_id: rank for rank, (_s, _o, hit_id) in enumerate(similar, 1)}
    semantic.update({hit_id: lexical[hit_id] for hit_id in unembedded if hit_id in lexical})
    scored = [
        (
            sum(1 / (RRF_K + ranks[hit_id]) for ranks in (lexical, semantic) if hit_id in ranks),
            _order(hit_id),
            hit_id,
        )
        for hit_id in candidates
        if hit_id in lexical or hit_id in semantic
    ]
    scored.sort(reverse=True)
    return [replace(candidates[hit_id], score=score) for score, _o, hit_id in scored[:limit]]


async def recall(
    client: RedisClient, stack: StackRef, action: Recall, embed_query: QueryEmbedder | None = None
) -> Recollection:
    """Search ``stack``'s archive for ``action.query``: semantically when
    ``embed_query`` is given and answers, else lexically. Never raises for Redis: a
    search that failed is a recollection saying so."""
    semantic = embed_query is not None
    search = search_archive(
        client,
        stack,
        action.query,
        limit=max(action.limit, SEMANTIC_CANDIDATES) if semantic else action.limit,
        newest=SEMANTIC_NEWEST if semantic else 0,
        vectors=semantic,
    )
    try:
        if embed_query is None:
            found, vector = await search, None
        else:
            found, vector = await asyncio.gather(search, embed_query(action.query))
    except RedisError as exc:
        return Recollection(action.query, (), error=f"the archive could not be searched: {exc}")
    if vector:
        return Recollection(action.query, tuple(fuse(vector, found, action.limit)), "semantic")
    return Recollection(action.query, tuple(found.hits[: action.limit]))
