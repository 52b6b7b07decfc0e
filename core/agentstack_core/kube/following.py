"""Following a collection: list it, then watch it from the list's resourceVersion,
watching again from the last version seen each time the server ends a watch, and
listing afresh when that version has expired (410 Gone) or after a failure (with a
back-off). What a follower needs is the list (to replace what it holds) and every
change after it, in order; this is the one home of that loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from agentstack_core.kube.client import KubeClient, Params
from agentstack_core.kube.errors import GoneError
from agentstack_core.kube.manifests import BOOKMARK, Listing, WatchEvent

logger = logging.getLogger(__name__)

RETRY_FIRST = 0.5
RETRY_MAX = 10.0


async def follow(
    kube: KubeClient,
    path: str,
    params: Params | None = None,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[Listing | WatchEvent]:
    """A :class:`Listing` of ``path``, then its changes (bookmarks are kept to, not
    handed on); a new :class:`Listing` whenever the follower must start again, which
    replaces everything the previous one and its changes said. Runs until closed."""
    backoff = RETRY_FIRST
    while True:
        try:
            listing = await kube.list(path, params)
            yield listing
            version = listing.resource_version
            while True:
                async for event in kube.watch(path, version, params):
                    version = event.resource_version or version
                    if event.type != BOOKMARK:
                        yield event
                backoff = RETRY_FIRST
        except GoneError:
            continue  # the version expired: list again, at once
        except Exception as exc:
            logger.warning("following %s failed (%s); listing again in %.1fs", path, exc, backoff)
            await sleep(backoff)
            backoff = min(RETRY_MAX, backoff * 2)
