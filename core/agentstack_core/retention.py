"""How much of each stack's growing keys Redis keeps: one home for every cap.

Streams are trimmed approximately (``XADD … MAXLEN ~``), so a stream may hold a little
more than its cap; sets and hashes of finished ticks are trimmed exactly by the finish
of each tick.
"""

from __future__ import annotations

TRACE_MAXLEN = 5_000
"""Agent steps kept in the trace stream."""
FEED_MAXLEN = 1_000
INBOX_MAXLEN = 1_000
INPUTS_MAXLEN = 1_000
"""Inputs kept in a stack's inputs log (and outcomes kept: the same newest numbers)."""
ARCHIVE_MAXLEN = 10_000
"""Archive items kept per stack (closed tasks, artifact versions, inputs, messages,
feed posts, notes)."""
HISTORY_MAXLEN = 1_000
DONE_WINDOW = 256
"""Finished tick ids remembered per stack: enough for any re-dispatch of recent slots."""
OUTCOMES_WINDOW = 16
"""Finished ticks whose whole result is kept (to publish again to a redelivery): the
newest few, since a redelivery comes within a visibility timeout or a failover — and a
result is some hundred bytes, a done id some tens."""
STEPS_TTL_MS = 86_400_000
"""How long a tick's committed steps are kept if the tick never finishes."""
