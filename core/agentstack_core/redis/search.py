"""Search of a stack's archive: a lexical index kept in Redis, atomically with it.

The archive (:attr:`~agentstack_core.keys.StackKeys.archive`) holds what left the
working set or passed through a capped stream. Each item is indexed in the same
script call that appends it — the step's commit (its ``ARCHIVE`` writes) and an
input's acceptance alike call ``archive_append.lua`` — so the index never lags the
archive and never holds an item the archive lost:

- **one tokenizer**, ``tokens.lua``, for items and queries: lower-cased ASCII letters
  and digits (UTF-8 sequences kept whole, matched as written), words of 2 to 30 bytes,
  a few dozen English stopwords left out, at most
  :data:`~agentstack_core.retention.INDEX_TERMS` distinct terms per item;
- **one sorted set**, :attr:`~agentstack_core.keys.StackKeys.archive_index`, every
  score 0 and one member per (term, item) — ``term\\0id\\0count\\0length\\0kind`` — so
  a term's postings are one ``ZRANGEBYLEX`` range, and appending an item adds members
  without rewriting any; a hash of the items' total length for BM25's average. No key
  per term: every script names every key it touches (Redis Cluster needs it), and all
  of a stack's keys share its slot;
- **the trim** (``trim_archive.lua``) bounds the archive and removes a trimmed item's
  postings with it (its terms are kept with it, in its ``terms`` field). The finish of
  every tick trims beyond :data:`~agentstack_core.retention.ARCHIVE_MAXLEN` items, but
  only items older than the consolidation watermark (``watermark`` of
  :attr:`~agentstack_core.keys.StackKeys.longterm`); beyond
  :data:`~agentstack_core.retention.ARCHIVE_HARD_MAXLEN` every append trims the oldest
  whatever they are, and counts the uncovered ones in ``lost`` of the same hash;
- **search** (``search.lua``, :func:`search_archive`) scores BM25 (k1 1.2, b 0.75) over
  the query's terms and returns the best items, each read back as its
  :class:`~agentstack_core.records.ArchiveRecord`, in one round trip. Each term reads
  at most :data:`POSTINGS_PER_TERM` of its postings, newest first, so a search costs
  what its query asks for, never what the archive holds.

Semantic ranking (with embeddings, in the runner) re-ranks what this returns: the
lexical candidates and, on request, the newest items with their vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import RedisClient
from agentstack_core.records import ArchiveKind, ArchiveRecord
from agentstack_core.redis.script import LuaScript, pairs

QUERY_TERMS = 16
"""Distinct terms of a query searched at the most (its first ones)."""
POSTINGS_PER_TERM = 2_000
"""Postings of one term read at the most, newest first. A term in more items than this
(so common its idf is near nothing) adds to its newest items' scores only."""
K1 = 1.2
"""BM25's term-frequency saturation."""
B = 0.75
"""BM25's length normalisation."""
MAX_LIMIT = 100
"""Items one search returns at the most."""
MAX_NEWEST = 500
"""Newest items one search adds for semantic ranking at the most."""


@dataclass(frozen=True)
class _Search:
    query: str
    limit: int
    kind: str
    newest: int
    vectors: bool
    query_terms: int = QUERY_TERMS
    postings: int = POSTINGS_PER_TERM
    k1: float = K1
    b: float = B


_SEARCH = LuaScript(
    __file__,
    "search",
    keys=("archive", "archive_index", "archive_stats"),
    args=_Search,
    libs=("field_value", "tokens"),
)


@dataclass(frozen=True)
class ArchiveHit:
    """An archive item a search found (or a newest item it added), with its score."""

    id: str
    """Its archive stream id."""
    record: ArchiveRecord
    score: float = 0.0
    """Its BM25 score (0 for a newest item that matched no term)."""


@dataclass(frozen=True)
class SearchResult:
    terms: tuple[str, ...]
    """The query's terms as the index cut them (empty: nothing searchable in it)."""
    items: int
    """Items in the archive when it was searched."""
    hits: list[ArchiveHit]
    """The best items, best first."""
    newest: list[ArchiveHit]
    """The newest items (only when asked for), newest first."""


async def search_archive(
    client: RedisClient,
    stack: StackRef,
    query: str,
    *,
    limit: int = 10,
    kind: ArchiveKind | None = None,
    newest: int = 0,
    vectors: bool = False,
) -> SearchResult:
    """The best ``limit`` items of ``stack``'s archive for ``query`` (of ``kind`` only,
    if given); with ``newest``, also that many newest items; their ``vector`` fields
    only if ``vectors``. One round trip, read-only."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1 to {MAX_LIMIT}, not {limit}")
    if not 0 <= newest <= MAX_NEWEST:
        raise ValueError(f"newest must be 0 to {MAX_NEWEST}, not {newest}")
    reply: Any = await _SEARCH(
        client,
        _Search(
            query=query,
            limit=limit,
            kind=kind.value if kind is not None else "",
            newest=newest,
            vectors=vectors,
        ),
        keys=StackKeys(stack),
    )
    items, terms, hits, latest = reply
    return SearchResult(
        terms=tuple(str(term) for term in terms),
        items=int(items),
        hits=[
            ArchiveHit(str(entry_id), ArchiveRecord.from_fields(pairs(fields)), float(score))
            for entry_id, score, fields in hits
        ],
        newest=[
            ArchiveHit(str(entry_id), ArchiveRecord.from_fields(pairs(fields)))
            for entry_id, fields in latest
        ],
    )
