"""luacheck over every Lua script of the Redis layer, exactly as Redis runs it.

Each script is composed from a generated prelude (its named keys and arguments), its
shared functions and its own file (:class:`agentstack_core.redis.script.LuaScript`), so
linting the files alone would report the prelude's names as undefined globals and the
shared functions as unused. This lints each composed text instead, with Redis's Lua
5.1 globals, and reports every warning at its line in the file it came from.

Run by ``hack/lint.sh`` (``python -m agentstack_devkit.lualint``); exits non-zero on any
warning. luacheck is Debian's ``lua-check`` package (``hack/setup.sh`` installs it).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

import agentstack_core.redis
from agentstack_core.redis.script import LuaScript

REDIS_GLOBALS = ("redis", "cjson", "cmsgpack", "bit", "struct", "KEYS", "ARGV")
_REPORT = re.compile(r"^(?P<name>[^:]+):(?P<line>\d+):(?P<column>\d+)(?P<rest>.*)$")


@dataclass(frozen=True)
class Source:
    """Where the lines of a composed script come from: (file, first line) spans."""

    spans: tuple[tuple[str, int, int], ...]

    def locate(self, line: int) -> tuple[str, int]:
        """The file and the line in it of line ``line`` of the composed script."""
        for name, first, count in self.spans:
            if first <= line < first + count:
                return name, line - first + 1
        return "?", line


def scripts() -> list[LuaScript]:
    """Every script of the Redis layer (importing its modules registers them)."""
    for module in pkgutil.iter_modules(agentstack_core.redis.__path__):
        importlib.import_module(f"agentstack_core.redis.{module.name}")
    return list(LuaScript.registry)


def source_of(script: LuaScript) -> Source:
    spans = []
    line = 1
    parts = [("(prelude)", script.prelude)]
    parts += [(str(path), path.read_text()) for path in script.libs]
    parts.append((str(script.path), script.body))
    for name, text in parts:
        count = text.count("\n")
        spans.append((name, line, count))
        line += count
    return Source(tuple(spans))


def lint(script: LuaScript, luacheck: str) -> list[str]:
    """luacheck's warnings about ``script``, each at its file and line."""
    command = [
        luacheck,
        "--std",
        "lua51",
        "--read-globals",
        *REDIS_GLOBALS,
        "--codes",
        "--no-color",
        "--formatter",
        "plain",
        "--filename",
        script.name,
        "-",
    ]
    done = subprocess.run(command, input=script.text, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):  # 1: warnings; 2 and up: errors (syntax, usage)
        return [f"{script.path}: luacheck failed: {done.stderr.strip() or done.stdout.strip()}"]
    source = source_of(script)
    found = []
    for report in done.stdout.splitlines():
        matched = _REPORT.match(report)
        if matched is None:
            continue
        name, line = source.locate(int(matched["line"]))
        found.append(f"{name}:{line}:{matched['column']}{matched['rest']}")
    return found


def main() -> int:
    luacheck = shutil.which("luacheck")
    if luacheck is None:
        print("lualint: luacheck is not installed (Debian package lua-check)", file=sys.stderr)
        return 2
    found = [warning for script in scripts() for warning in lint(script, luacheck)]
    for warning in found:
        print(warning)
    checked = len(LuaScript.registry)
    print(f"lualint: {checked} scripts, {len(found)} warnings", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
