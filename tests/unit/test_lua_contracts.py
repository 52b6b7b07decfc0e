"""Every name a Lua script reads exists in what it is given, and everything it is
given is read.

A script reads its keys as ``K.<name>`` and its arguments as ``A.<field>`` (or
``A.<record>.<field>`` for a record argument); records it decodes itself, and hashes
whose fields it names, are declared with their dataclass. Renaming a field on the
Python side without the script (or the reverse) fails here, not in a tick.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping
from typing import Any

import pytest

from agentstack_core.records import Record
from agentstack_core.redis.script import LuaScript
from agentstack_devkit.lualint import scripts

SCRIPTS = scripts()
_COMMENT = re.compile(r"--[^\n]*")


def _code(script: LuaScript) -> str:
    """The composed text without comments (they may name what they describe)."""
    return _COMMENT.sub("", script.text[len(script.prelude) :])


def _keys_of(kind: type[Any]) -> set[str]:
    """The names a record's fields have where they are stored."""
    return {f.metadata.get("key", f.name) for f in dataclasses.fields(kind)}


def _reads(code: str, local: str) -> list[str]:
    return re.findall(rf"(?<![\w.]){re.escape(local)}\.(\w+)", code)


def _key_reads(code: str) -> set[str]:
    """The keys a script reads: ``K.<name>``, and — where it hands the whole table to
    a shared function, whose parameter is then named ``keys`` — ``keys.<name>``."""
    read = set(_reads(code, "K"))
    if re.search(r"(?<![\w.])K(?![\w.])", code.replace("local K = {", "")):
        read |= set(_reads(code, "keys"))
    return read


def test_the_layer_has_its_scripts() -> None:
    names = {script.name for script in SCRIPTS}
    assert {"begin", "commit_step", "finish_tick", "send_input", "decide_approval"} <= names
    assert len(names) == len(SCRIPTS), "two scripts share a name"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_keys_read_are_the_keys_declared(script: LuaScript) -> None:
    read = _key_reads(_code(script))
    assert read <= set(script.keys), f"reads undeclared keys {read - set(script.keys)}"
    assert set(script.keys) <= read, f"never reads {set(script.keys) - read}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_arguments_read_are_the_fields_given(script: LuaScript) -> None:
    code = _code(script)
    if script.args is None:
        assert not _reads(code, "A")
        return
    fields = {f.name for f in dataclasses.fields(script.args)}
    read = set(_reads(code, "A"))
    assert read <= fields, f"reads {read - fields}, not fields of {script.args.__name__}"
    assert fields <= read, f"{script.args.__name__} fields never read: {fields - read}"
    hints = typing.get_type_hints(script.args)
    for name in fields:
        kind = hints[name]
        inner = set(re.findall(rf"(?<![\w.])A\.{name}\.(\w+)", code))
        if isinstance(kind, type) and issubclass(kind, Record):
            assert inner <= _keys_of(kind), f"A.{name}: {inner - _keys_of(kind)} not fields"
        elif not (typing.get_origin(kind) is Mapping or kind is Mapping):
            assert not inner, f"A.{name} is a {kind}, yet the script reads A.{name}.{inner}"


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s.records], ids=lambda s: s.name)
def test_records_decoded_by_a_script_have_the_fields_it_reads(script: LuaScript) -> None:
    code = _code(script)
    for local, kind in script.records.items():
        read = set(_reads(code, local))
        assert read, f"{local} is declared but never read"
        assert read <= _keys_of(kind), f"{local}: {read - _keys_of(kind)} not in {kind}"


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s.hashes], ids=lambda s: s.name)
def test_hash_fields_a_script_names_belong_to_the_hash(script: LuaScript) -> None:
    code = _code(script)
    for key, kind in script.hashes.items():
        named: set[str] = set()
        call = re.compile(rf"redis\.call\('H\w+',\s*K\.{key}\b")
        for found in call.finditer(code):
            depth, end = 1, found.end()
            while depth:  # to the call's closing parenthesis
                depth += {"(": 1, ")": -1}.get(code[end], 0)
                end += 1
            named |= set(re.findall(r"'(\w+)'", code[found.end() : end]))
        assert named, f"no hash command names a field of K.{key}"
        assert named <= _keys_of(kind), f"K.{key}: {named - _keys_of(kind)} not in {kind}"
