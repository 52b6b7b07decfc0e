"""One typed wrapper for every Lua script: named keys, one record of named arguments.

A script lives in a ``.lua`` file beside the module that calls it, and declares what it
takes by name, in Python, once::

    BEGIN = LuaScript(__file__, "begin", keys=("spec", "lease", ...), args=BeginArgs)

The wrapper prepends a prelude to the file's text, so the script reads its keys and
arguments by name instead of by position::

    local K = {
      spec = KEYS[1],
      lease = KEYS[2],
      ...
    }
    local A = cjson.decode(ARGV[1])

``K.lease`` and ``A.token`` in the script are the key ``lease`` and the field ``token``
of the arguments record: a rename on one side that the other did not follow fails
``tests/unit/test_lua_contracts.py`` (every name a script reads must exist in what it
is given, and everything it is given must be read), not a tick in production.

Arguments cross as one JSON object of strings, encoded by the rule of
:mod:`agentstack_core.records` (``int`` as decimal text, ``float`` by ``repr`` so it
round-trips, ``bool`` as ``true``/``false``; ``None`` left out): Lua numbers are
doubles printed with 14 digits, so a nano-dollar count or a timestamp passed as a
number could reach Redis rounded; as text it reaches it exactly, and the script calls
``tonumber`` only where it compares. A field that is itself a record (or a mapping of
strings) crosses as a JSON object of its string fields.

Keys are passed by name too, most of them straight from
:class:`~agentstack_core.keys.StackKeys` (a key name *is* its ``StackKeys`` attribute),
so a script's contract and the keyspace share their words. Keys a call adds beyond the
declared ones (the commit's write targets) follow them in ``KEYS``.

Scripts are sent by SHA1 (``EVALSHA``), with the text only after a ``NOSCRIPT`` reply (a
restarted or flushed Redis, another cluster node): the tick path calls several per
agent step, and ``EVAL`` would ship and hash the whole text every time. Shared Lua
functions (``libs``) are files too, composed into each script that uses them.

A script whose effects something outside Redis acts on is declared ``durable=True``: when
the client asks for confirmed commits (:mod:`.durability`), its call goes out with a
``WAIT`` behind it on the same connection, and an unconfirmed one raises
:class:`~.errors.NotDurableError`.

Every script is registered in :data:`LuaScript.registry`, so the lint (``make lint``:
luacheck over each script exactly as Redis runs it) and the contract test see them all.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import orjson

from agentstack_core.protocol import RedisClient
from agentstack_core.records import Record, encode_value
from agentstack_core.redis.durability import confirmed, durability_of
from redis.exceptions import NoScriptError


def encode_args(args: Any) -> str:
    """``args`` (a dataclass) as the one JSON argument of a script."""
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(args):
        value = getattr(args, item.name)
        if isinstance(value, Record):
            fields[item.name] = value.to_fields()
        elif isinstance(value, Mapping):
            fields[item.name] = {str(k): str(v) for k, v in value.items()}
        else:
            text = encode_value(value)
            if text is not None:
                fields[item.name] = text
    return orjson.dumps(fields).decode()


class LuaScript:
    """One Lua script file: call it with a client, its arguments record and its keys."""

    registry: ClassVar[list[LuaScript]] = []

    def __init__(
        self,
        module_file: str,
        name: str,
        *,
        keys: Sequence[str],
        args: type[Any] | None = None,
        libs: Sequence[str] = (),
        records: Mapping[str, type[Any]] | None = None,
        hashes: Mapping[str, type[Any]] | None = None,
        durable: bool = False,
    ) -> None:
        """``keys``: the names of the script's keys, in ``KEYS`` order; ``args``: the
        dataclass of its arguments (``None``: it takes none); ``libs``: names of
        ``.lua`` files of shared functions, beside this module, composed before the
        body; ``records``: Lua locals that hold a record → the dataclass whose fields
        they may read; ``hashes``: names of hash keys → the dataclass whose fields name
        the hash's fields (both checked like the arguments); ``durable``: its commit must
        survive a failover (:mod:`.durability`)."""
        here = Path(__file__).parent
        self.name = name
        self.path = Path(module_file).with_name(f"{name}.lua")
        self.keys = tuple(keys)
        self.args = args
        self.records = dict(records or {})
        self.hashes = dict(hashes or {})
        self.durable = durable
        self.libs = tuple(here / f"{lib}.lua" for lib in libs)
        self.body = self.path.read_text()
        self.prelude = _prelude(self.keys, args is not None)
        self.text = self.prelude + "".join(p.read_text() for p in self.libs) + self.body
        self.sha = hashlib.sha1(self.text.encode(), usedforsecurity=False).hexdigest()
        LuaScript.registry.append(self)

    def key_list(self, named: Mapping[str, str], source: object = None) -> list[str]:
        """The declared keys in order: each from ``named``, else the attribute of that
        name of ``source`` (a :class:`~agentstack_core.keys.StackKeys`)."""
        resolved = []
        for key in self.keys:
            value = named.get(key)
            if value is None:
                value = getattr(source, key, None) if source is not None else None
            if not isinstance(value, str):
                raise TypeError(f"script {self.name}: no value for its key {key!r}")
            resolved.append(value)
        return resolved

    async def __call__(
        self,
        client: RedisClient,
        args: Any = None,
        *,
        keys: object = None,
        extra_keys: Sequence[str] = (),
        **named: str,
    ) -> Any:
        """Run the script. ``args``: an instance of its arguments dataclass; ``keys``:
        a ``StackKeys`` the declared key names are read from (``named`` overrides or
        supplies any); ``extra_keys`` follow the declared ones."""
        if (args is None) != (self.args is None) or (
            args is not None and not isinstance(args, self.args)  # type: ignore[arg-type]
        ):
            raise TypeError(f"script {self.name} takes {self.args!r}, got {type(args)!r}")
        key_values = [*self.key_list(named, keys), *extra_keys]
        argv = [encode_args(args)] if args is not None else []
        redis: Any = client  # see RedisClient: redis-py's annotations don't fit
        if self.durable and durability_of(client).required:
            return await self._confirmed(redis, key_values, argv)
        try:
            return await redis.evalsha(self.sha, len(key_values), *key_values, *argv)
        except NoScriptError:
            return await redis.eval(self.text, len(key_values), *key_values, *argv)

    async def _confirmed(self, redis: Any, key_values: list[str], argv: list[str]) -> Any:
        """The script's reply, once the replicas confirmed its writes."""
        count = len(key_values)
        try:
            replies = await confirmed(
                redis, self.name, lambda pipe: pipe.evalsha(self.sha, count, *key_values, *argv)
            )
        except NoScriptError:
            replies = await confirmed(
                redis, self.name, lambda pipe: pipe.eval(self.text, count, *key_values, *argv)
            )
        return replies[0]


def _prelude(keys: Sequence[str], has_args: bool) -> str:
    lines = ["local K = {\n"]
    lines += [f"  {key} = KEYS[{position}],\n" for position, key in enumerate(keys, 1)]
    lines.append("}\n")
    if has_args:
        lines.append("local A = cjson.decode(ARGV[1])\n")
    return "".join(lines)


def pairs(flat: Sequence[str]) -> dict[str, str]:
    """A Lua script's flat ``[field, value, …]`` reply (``HGETALL``, stream fields)."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
