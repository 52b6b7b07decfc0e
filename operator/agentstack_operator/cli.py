"""The one command line, ``agentstack``, and its subcommands.

``operator``, ``runner`` and ``api`` start the three long-running processes of a
deployment; ``dev`` drives the local development environment. This module only parses
arguments and delegates: each subcommand's behaviour lives in the module named for it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from agentstack_core import eventloop, tracing
from agentstack_core.observability import configure_logging
from agentstack_operator import __version__
from agentstack_runner import cli as runner_cli


class _Settings(Protocol):
    redis_url: str


S = TypeVar("S", bound=_Settings)


def _settings(command: str, load: Callable[[], S]) -> S | None:
    """A process's settings from the environment, or ``None`` after saying what is wrong."""
    configure_logging()
    try:
        config = load()
        eventloop.loop_factory()
    except ValueError as exc:
        print(f"agentstack {command}: {exc}", file=sys.stderr)
        return None
    if not config.redis_url:
        print(f"agentstack {command}: set REDIS_URL", file=sys.stderr)
        return None
    return config


def _operator() -> int:
    from agentstack_operator.config import OperatorConfig
    from agentstack_operator.service import run_operator

    config = _settings("operator", OperatorConfig.from_env)
    if config is None:
        return 2
    tracing.configure("agentstack-operator")
    return eventloop.run(run_operator(config))


def _api() -> int:
    from agentstack_operator.api.server import ApiConfig, serve

    config = _settings("api", ApiConfig.from_env)
    if config is None:
        return 2
    eventloop.run(serve(config))
    return 0


def build_parser() -> argparse.ArgumentParser:
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
        "configured by environment variables, see agentstack_operator.api.server",
    )

    dev = commands.add_parser("dev", help="local development environment")
    dev_commands = dev.add_subparsers(dest="dev_command", required=True, metavar="DEV_COMMAND")
    dev_commands.add_parser(
        "build",
        help="build (or find in ~/.cache/agentstack) etcd, kube-apiserver, "
        "kube-controller-manager, kubectl, helm, and the dev node's kubelet, kube-proxy, "
        "kube-scheduler, pause and CoreDNS",
    )
    dev_commands.add_parser(
        "image",
        help="build (or find in podman's store) the project's image from the Dockerfile on a "
        "local Debian base, and print its name",
    )
    up = dev_commands.add_parser(
        "up",
        help="the main job: the image, a cluster with a real node, the chart installed by "
        "helm and an example stack, in the foreground; writes .agentstack/dev/kubeconfig "
        "and endpoints.env",
    )
    up.add_argument(
        "--processes",
        action="store_true",
        help="the fast inner loop: no node and no image; the operator, a runner and the "
        "API run as local processes against the control plane and a local redis-server",
    )
    cluster = dev_commands.add_parser(
        "cluster",
        help="run a local control plane in the foreground; writes .agentstack/dev/kubeconfig",
    )
    for command in (up, cluster):
        _data_and_port(command)
    return parser


def _data_and_port(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep etcd data, keys and logs here across runs (default: a temporary "
        "directory removed on exit)",
    )
    command.add_argument(
        "--port",
        type=int,
        default=None,
        help="kube-apiserver's secure port on 127.0.0.1 (default: a free port)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "dev":
        try:
            from agentstack_devkit import commands
        except ImportError:
            print(
                "agentstack dev: the dev kit is not installed; it lives in the source "
                "checkout (make setup, or pip install -e devkit)",
                file=sys.stderr,
            )
            return 2
        if args.dev_command == "image":
            return commands.image()
        if args.dev_command == "build":
            return commands.build()
        if args.dev_command == "up":
            return commands.up(data_dir=args.data_dir, port=args.port, processes=args.processes)
        return commands.cluster(data_dir=args.data_dir, port=args.port)
    if args.command == "runner":
        return runner_cli.main(args)
    if args.command == "operator":
        return _operator()
    return _api()


if __name__ == "__main__":
    sys.exit(main())
