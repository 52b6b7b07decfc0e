"""Deterministic JSON of the dashboards, and the files of the chart that hold it.

The output depends only on the code: fixed uids, panel ids handed out in order, keys
sorted, two-space indentation and a final newline, so ``git diff`` shows exactly what a
change of the code changed, and the unit tests can require the committed files to be
what the code generates (a hand edit or a stale file fails them).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as models

from agentstack_devkit.dashboards import fleet, namespace, stack

DASHBOARDS: dict[str, Callable[[], models.Dashboard]] = {
    "fleet.json": fleet.build,
    "namespace.json": namespace.build,
    "stack.json": stack.build,
}
"""File name under the chart's ``dashboards/`` → the function building that dashboard."""

DASHBOARDS_DIR = Path(__file__).resolve().parents[3] / "charts" / "agentstack-operator"
DASHBOARDS_DIR /= "dashboards"
"""The chart's dashboards, when the dev kit runs from the checkout (it always does)."""


def render(name: str) -> str:
    """The JSON text of the dashboard of file ``name``."""
    built = DASHBOARDS[name]()
    text = json.dumps(built, cls=JSONEncoder, sort_keys=True, indent=2, ensure_ascii=False)
    return text + "\n"


def stale(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    """Files in ``directory`` that differ from the generated ones, are missing, or are
    JSON files the generator does not make."""
    differing = [
        directory / name
        for name in DASHBOARDS
        if not (directory / name).is_file()
        or (directory / name).read_text(encoding="utf-8") != render(name)
    ]
    extra = [path for path in directory.glob("*.json") if path.name not in DASHBOARDS]
    return sorted(differing + extra)


def write(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    """Write every dashboard into ``directory`` and remove JSON files it does not make
    (the directory holds generated dashboards only); return the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.json"):
        if path.name not in DASHBOARDS:
            path.unlink()
    written = []
    for name in DASHBOARDS:
        path = directory / name
        path.write_text(render(name), encoding="utf-8")
        written.append(path)
    return written
