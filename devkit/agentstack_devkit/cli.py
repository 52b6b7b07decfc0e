"""``agentstack dev``: the dev kit's subcommand of the ``agentstack`` command line.

The command line (``agentstack_cli``) never imports the dev kit: it finds this module
through the entry point group ``agentstack.commands`` (devkit/pyproject.toml), so the
product installs and runs without it, and the dev kit adds its command where it is
installed (``make setup``). :func:`add_command` builds the parser and returns what runs
it; the commands themselves live in :mod:`agentstack_devkit.commands`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_command(commands: Any) -> Callable[[argparse.Namespace], int]:
    """Add ``dev`` to ``commands`` (the ``agentstack`` parser's subparsers); returns the
    function that runs it with the parsed arguments."""
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
    release = dev_commands.add_parser(
        "release",
        help="publish the package's version to an OCI registry: the image, the chart "
        "pinning it by digest, and optionally an SBOM and cosign signatures",
    )
    release.add_argument(
        "--registry",
        required=True,
        help="where to push: host[:port][/path], e.g. ghcr.io/OWNER or 127.0.0.1:5100",
    )
    release.add_argument(
        "--plain-http", action="store_true", help="the registry speaks HTTP, not HTTPS"
    )
    signing = release.add_mutually_exclusive_group()
    signing.add_argument(
        "--key", type=Path, default=None, help="sign with this cosign key (COSIGN_PASSWORD)"
    )
    signing.add_argument(
        "--keyless", action="store_true", help="sign keyless (Sigstore, e.g. in GitHub Actions)"
    )
    release.add_argument(
        "--sbom-dir",
        type=Path,
        default=None,
        help="write the image's SBOM (SPDX JSON, by syft) here and attach it to the image "
        "as a signed attestation when signing",
    )
    release.add_argument(
        "--expect-version",
        default=None,
        help="refuse unless the package's version is this one (a release tag such as v0.1.0)",
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
    return run


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


def run(args: argparse.Namespace) -> int:
    """Run the ``dev`` subcommand ``args`` names."""
    from agentstack_devkit import commands

    if args.dev_command == "image":
        return commands.image()
    if args.dev_command == "build":
        return commands.build()
    if args.dev_command == "release":
        return commands.release(
            registry=args.registry,
            plain_http=args.plain_http,
            key=args.key,
            keyless=args.keyless,
            sbom_dir=args.sbom_dir,
            expect_version=args.expect_version,
        )
    if args.dev_command == "up":
        return commands.up(data_dir=args.data_dir, port=args.port, processes=args.processes)
    return commands.cluster(data_dir=args.data_dir, port=args.port)
