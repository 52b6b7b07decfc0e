"""``agentstack runner``: arguments and entry point (the ``agentstack`` CLI delegates here).

Without ``--once`` the process consumes the fleet's tick stream until SIGTERM. With
``--once`` it executes the one tick named on the command line — the Job executor's
entry point — and exits with a code that tells the Job how it went (see
:data:`~agentstack_runner.service.EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import sys
import time

from agentstack_core import eventloop, tracing
from agentstack_core.keys import StackRef
from agentstack_core.observability import configure_logging
from agentstack_core.protocol import TickKind, TickRequest, tick_id
from agentstack_core.spec import Priority


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis URL (default: $REDIS_URL)")
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        default=None,
        help="treat --redis-url as a Redis Cluster seed (default: $AGENTSTACK_REDIS_CLUSTER)",
    )
    parser.add_argument("--concurrency", type=int, help="ticks in flight at once (64)")
    parser.add_argument(
        "--metrics-port", type=int, help="port of /metrics, /healthz, /readyz (9102; 0 = off)"
    )
    once = parser.add_argument_group("single tick (--once)")
    once.add_argument("--once", action="store_true", help="execute one tick and exit")
    once.add_argument("--stack", type=StackRef.parse, help="NAMESPACE/NAME of the stack")
    once.add_argument("--generation", type=int, help="spec generation the tick belongs to")
    once.add_argument("--slot", type=int, help="scheduling slot (default: now in seconds)")
    once.add_argument("--tick-id", help="tick id (default: derived from stack and slot)")
    once.add_argument(
        "--deadline", type=float, help="Unix time after which the tick must not start"
    )
    once.add_argument(
        "--uid", default="", help="the stack's uid (a tick of a deleted stack writes nothing)"
    )
    once.add_argument(
        "--traceparent",
        default="",
        help="W3C trace context of the operator's dispatch span (joins its trace)",
    )
    once.add_argument(
        "--kind",
        type=TickKind,
        choices=list(TickKind),
        default=TickKind.WORK,
        help="Work (the team's steps) or Sleep (a consolidation)",
    )


def main(args: argparse.Namespace) -> int:
    # Imported here, not at the top: the ``agentstack`` CLI builds this parser in every
    # process, and importing the service registers the runner's metrics, which the
    # operator and API processes must not expose.
    from agentstack_runner.config import RunnerConfig
    from agentstack_runner.providers import credentials_for
    from agentstack_runner.service import kube_for, run_forever, run_once

    configure_logging()
    try:
        config = RunnerConfig.from_env()
    except ValueError as exc:
        print(f"agentstack runner: {exc}", file=sys.stderr)
        return 2
    if args.redis_url:
        config.redis_url = args.redis_url
    if args.redis_cluster is not None:
        config.redis_cluster = args.redis_cluster
    if args.concurrency is not None:
        config.concurrency = args.concurrency
    if args.metrics_port is not None:
        config.metrics_port = args.metrics_port
    if not config.redis_url:
        print("agentstack runner: set REDIS_URL or pass --redis-url", file=sys.stderr)
        return 2
    try:
        # One that cannot work fails here, with a message (no API server to read from).
        credentials_for(config.credentials, kube=kube_for(config))
    except Exception as exc:
        print(f"agentstack runner: credentials: {exc}", file=sys.stderr)
        return 2
    tracing.configure("agentstack-runner", config)
    if not args.once:
        eventloop.run(run_forever(config), config.event_loop)
        return 0
    if args.stack is None or args.generation is None:
        print("agentstack runner --once: --stack and --generation are required", file=sys.stderr)
        return 2
    slot = args.slot if args.slot is not None else int(time.time())
    request = TickRequest(
        stack=args.stack,
        generation=args.generation,
        tick_id=args.tick_id or tick_id(args.stack, slot),
        slot=slot,
        deadline=args.deadline if args.deadline is not None else time.time() + 3600,
        priority=Priority.NORMAL,
        uid=args.uid,
        traceparent=args.traceparent,
        kind=args.kind,
    )
    return eventloop.run(run_once(config, request), config.event_loop)
