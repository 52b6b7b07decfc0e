"""``python -m agentstack_devkit.dashboards [--check] [DIR]``: write (or check) the JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agentstack_devkit.dashboards.rendering import DASHBOARDS_DIR, stale, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agentstack_devkit.dashboards",
        description="Generate the chart's Grafana dashboards from code.",
    )
    parser.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=DASHBOARDS_DIR,
        help=f"where the JSON files go (default: {DASHBOARDS_DIR})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a file differs from what the code generates",
    )
    args = parser.parse_args(argv)
    if args.check:
        differing = stale(args.directory)
        for path in differing:
            print(f"stale: {path} (run python -m agentstack_devkit.dashboards)", file=sys.stderr)
        return 1 if differing else 0
    for path in write(args.directory):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
