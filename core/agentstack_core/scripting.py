"""Lua scripts called by their SHA1, with the text sent only when Redis lacks it.

``EVAL`` ships a script's whole text with every call and makes Redis hash it again; the
tick path calls its scripts several times per agent step, so the runner sends
``EVALSHA`` and falls back to ``EVAL`` (which also caches the script) after a
``NOSCRIPT`` reply — a restarted or flushed Redis, or another cluster node.

redis-py's own ``register_script`` binds a script to one client object; these scripts
are module constants used with whichever client a caller holds, so the digest is
computed once here instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from agentstack_core.protocol import RedisClient


class Script:
    """One Lua script: call it with a client, its keys and its arguments."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    async def __call__(
        self, client: RedisClient, keys: Sequence[str], args: Sequence[str] = ()
    ) -> Any:
        redis: Any = client  # see RedisClient: redis-py's annotations don't fit
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await redis.eval(self.text, len(keys), *keys, *args)
