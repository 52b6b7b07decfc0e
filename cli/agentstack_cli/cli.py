"""The one command line, ``agentstack``, and its subcommands.

``operator``, ``runner`` and ``api`` start the three long-running processes of a
deployment, each from its own package; other installed distributions add commands
through the entry point group :data:`COMMANDS_GROUP` (the dev kit adds ``dev``), so this
package imports no dev tooling. This module only parses arguments and delegates: each
subcommand's behaviour lives in the package named for it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import TypeVar

from agentstack_cli import uninstall
from agentstack_core import eventloop, tracing
from agentstack_core.observability import configure_logging
from agentstack_core.settings import CommonSettings
from agentstack_operator import __version__
from agentstack_runner import cli as runner_cli

COMMANDS_GROUP = "agentstack.commands"
"""Entry points that add a subcommand: each names a function that takes the
subparsers and returns the function that runs its subcommand with the parsed arguments."""

Command = Callable[[argparse.Namespace], int]


S = TypeVar("S", bound=CommonSettings)


def _settings(command: str, model: type[S]) -> S | None:
    """A process's settings from the environment, or ``None`` after saying what is wrong."""
    configure_logging()
    try:
        config = model.from_env()
    except ValueError as exc:
        print(f"agentstack {command}: {exc}", file=sys.stderr)
        return None
    if not config.redis_url:
        print(f"agentstack {command}: set REDIS_URL", file=sys.stderr)
        return None
    return config


def _operator(_args: argparse.Namespace) -> int:
    from agentstack_operator.config import OperatorConfig
    from agentstack_operator.service import run_operator

    config = _settings("operator", OperatorConfig)
    if config is None:
        return 2
    tracing.configure("agentstack-operator", config)
    return eventloop.run(run_operator(config), config.event_loop)


def _api(_args: argparse.Namespace) -> int:
    from agentstack_api.config import ApiConfig
    from agentstack_api.server import serve

    config = _settings("api", ApiConfig)
    if config is None:
        return 2
    eventloop.run(serve(config), config.event_loop)
    return 0


def _no_dev_kit(_args: argparse.Namespace) -> int:
    print(
        "agentstack dev: the dev kit is not installed; it lives in the source checkout "
        "(make setup, or pip install -e devkit)",
        file=sys.stderr,
    )
    return 2


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    """The parser, and what runs each subcommand."""
    parser = argparse.ArgumentParser(
        prog="agentstack",
        description="Run fleets of autonomous LLM agent teams on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "operator",
        help="run the operator (Kopf handlers, scheduler, status); configured by environment "
        "variables, see agentstack_operator.config",
    )
    runner = commands.add_parser(
        "runner", help="run a tick runner (or, with --once, execute one tick)"
    )
    runner_cli.add_arguments(runner)
    commands.add_parser(
        "api",
        help="run the agentstack API (REST, Server-Sent Events and the steering POSTs); "
        "configured by environment variables, see agentstack_api.config",
    )
    uninstall_parser = commands.add_parser(
        "uninstall",
        help="before the operator is removed (the chart's pre-delete hook): release or "
        "delete every stack, so none keeps a finalizer nobody will remove",
    )
    uninstall.add_arguments(uninstall_parser)
    run: dict[str, Command] = {
        "operator": _operator,
        "runner": runner_cli.main,
        "api": _api,
        "uninstall": uninstall.main,
    }
    for entry in entry_points(group=COMMANDS_GROUP):
        if entry.name not in run:
            run[entry.name] = entry.load()(commands)
    if "dev" not in run:  # it takes anything, to say where the dev kit is
        dev = commands.add_parser("dev", help="local development environment (the dev kit's)")
        dev.add_argument("rest", nargs=argparse.REMAINDER)
        run["dev"] = _no_dev_kit
    return parser, run


def main(argv: Sequence[str] | None = None) -> int:
    parser, run = build_parser()
    args = parser.parse_args(argv)
    return run[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
