"""How much of each stack's growing keys Redis keeps: one home for every cap.

Streams are trimmed approximately (``XADD … MAXLEN ~``), so a stream may hold a little
more than its cap; sets and hashes of finished ticks are trimmed exactly by the finish
of each tick. The archive is the exception: its appends never trim it by themselves
(an item stays while consolidation has not covered it), the finish of each tick trims
it exactly, with its index (:data:`ARCHIVE_MAXLEN`, :data:`ARCHIVE_HARD_MAXLEN`).
"""

from __future__ import annotations

TRACE_MAXLEN = 5_000
"""Agent steps kept in the trace stream."""
FEED_MAXLEN = 1_000
INBOX_MAXLEN = 1_000
INPUTS_MAXLEN = 1_000
"""Inputs kept in a stack's inputs log (and outcomes kept: the same newest numbers)."""
DELIVERIES_KEPT = 10_000
"""Webhook delivery ids remembered per stack (the newest), to refuse a replay."""
DELIVERIES_KEPT_SECONDS = 7 * 86_400
"""How long a webhook delivery id is remembered: GitHub signs no timestamp, so only its
delivery id tells a replay; a week outlasts its redelivery of failed deliveries."""
ARCHIVE_MAXLEN = 10_000
"""Archive items kept per stack (closed tasks, artifact versions, inputs, messages,
feed posts, notes) once consolidation has covered them: the finish of every tick trims
the oldest items beyond this many, but only those older than the consolidation
watermark (``watermark`` of :attr:`~agentstack_core.keys.StackKeys.longterm`). An item
consolidation has not covered stays, up to :data:`ARCHIVE_HARD_MAXLEN`."""
ARCHIVE_HARD_MAXLEN = 4 * ARCHIVE_MAXLEN
"""Archive items kept at the most, covered or not: an append beyond this many trims the
oldest at once, and counts those consolidation had not covered in ``lost`` of the
long-term hash (never silently). Bounds a stack whose consolidation lags, or a paused
stack that keeps receiving inputs (no tick finishes to trim it)."""
ARCHIVE_TRIM_BATCH = 1_000
"""Archive items one call trims at the most (a tick's finish, an append): a backlog —
the watermark jumping ahead — drains over several calls, none holding Redis long."""
INDEX_TERMS = 200
"""Distinct terms indexed per archive item (its first ones): its postings in the index
(:attr:`~agentstack_core.keys.StackKeys.archive_index`), so the index holds at most
this many members per item kept (200 x 40,000 at the very most per stack)."""
HISTORY_MAXLEN = 1_000
DONE_WINDOW = 256
"""Finished tick ids remembered per stack: enough for any re-dispatch of recent slots."""
OUTCOMES_WINDOW = 16
"""Finished ticks whose whole result is kept (to publish again to a redelivery): the
newest few, since a redelivery comes within a visibility timeout or a failover — and a
result is some hundred bytes, a done id some tens."""
STEPS_TTL_MS = 86_400_000
"""How long a tick's committed steps are kept if the tick never finishes."""
CHECKPOINT_RECENT = 20
"""Checkpoints kept for every tick, the newest: a rollback or fork to any of the last
this many ticks that changed something."""
CHECKPOINT_EVERY = 10
"""Past the recent window, one checkpoint in this many is kept (its sequence number a
multiple of it); the others are dropped as they leave the window."""
CHECKPOINT_MAX = 100
"""Checkpoints kept per stack at the most (the oldest go first): with the two above,
about the last ``20 + 80 x 10 = 820`` checkpointed ticks are reachable."""
CHECKPOINT_MAX_BYTES = 4 * 1024 * 1024
"""Summed bytes of a stack's checkpoint states at the most: the oldest go first, and
the newest is always kept, whatever its size (a state is bounded by the working set's
own caps)."""
