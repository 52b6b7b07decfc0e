"""Publish a version to an OCI registry: the image, the chart that pins it, an SBOM and
signatures — the one release path of ``make release``, the release workflow and
``agentstack dev up``.

One version names everything: the package's version (``pyproject.toml``) is the image's
tag, the chart's ``version`` and its ``appVersion``. The packaged chart pins the image by
digest (``image.digest`` in its ``values.yaml``), so what a cluster runs is exactly what
was pushed, whatever later happens to the tag. Each artifact is addressed by digest from
then on: syft reads the image from the registry by digest and cosign signs and attests
that digest.

Layout under a registry prefix ``R`` (``127.0.0.1:5100``, ``ghcr.io/OWNER``)::

    R/agentstack-operator:VERSION            the image
    R/charts/agentstack-operator:VERSION     the chart (helm's OCI layout)

A dev release (``agentstack dev up``) uses ``VERSION-dev.<image content digest>``, so
each build of the code is a version of its own and helm and containerd never serve a
stale one under an old name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import yaml

from agentstack_devkit.helm import ChartSource, chart_dir
from agentstack_devkit.image import Image, containers_env, project_image, redis_image
from agentstack_devkit.processes import DevEnvError
from agentstack_devkit.toolchain import find_repo_root, helm_binary, release_tool

IMAGE_REPOSITORY = "agentstack-operator"
CHART_PATH = "charts"
"""The chart's repository is ``R/charts/agentstack-operator`` (its name is the chart's)."""
PUSH_TIMEOUT_SECONDS = 1200.0
SBOM_FORMAT = "spdx-json"
SBOM_PREDICATE = "spdxjson"
"""cosign's name for the attestation type of an SPDX JSON document."""


def package_version(repo: Path | None = None) -> str:
    """The package's version: the one home of the version every artifact carries."""
    pyproject = (repo or find_repo_root()) / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    if not isinstance(version, str):
        raise DevEnvError(f"{pyproject}: project.version is not a string")
    return version


def dev_version(image: Image, repo: Path | None = None) -> str:
    """A dev build's version: the package's, with the image's content digest as a
    pre-release (a valid SemVer 2 version and OCI tag)."""
    return f"{package_version(repo)}-dev.{image.name.rsplit(':', 1)[1]}"


@dataclass(frozen=True)
class Target:
    """Where a release goes."""

    registry: str
    """``host[:port][/path]``: the prefix the image and chart repositories go under."""
    plain_http: bool = False
    """A registry without TLS (the local one): every client must be told."""

    def reference(self, repository: str) -> str:
        return f"{self.registry}/{repository}"


@dataclass(frozen=True)
class Signer:
    """How cosign signs: a key file (``COSIGN_PASSWORD`` unlocks it) or keyless
    (Sigstore's OIDC flow, as in the release workflow)."""

    mode: Literal["key", "keyless"]
    key: Path | None = None


@dataclass(frozen=True)
class Published:
    """What a release pushed, each artifact by digest."""

    version: str
    image: str
    """``R/agentstack-operator@sha256:…``"""
    chart: str
    """``oci://R/charts/agentstack-operator`` (install it with ``--version``)."""
    chart_digest: str
    sbom: str | None = None
    """The SPDX document's path (also attached to the image as an attestation)."""
    signed: bool = False

    plain_http: bool = False

    @property
    def image_digest(self) -> str:
        return self.image.rsplit("@", 1)[1]

    def source(self) -> ChartSource:
        """The published chart, as helm installs it."""
        return ChartSource(self.chart, self.version, self.plain_http)


def _run(argv: list[str], *, what: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=env,
        timeout=PUSH_TIMEOUT_SECONDS,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise DevEnvError(
            f"{what} failed ({done.returncode}):\n{(done.stderr or done.stdout)[-3000:]}"
        )
    return done.stdout + done.stderr


def push_image(local: str, target: Target, repository: str, tag: str) -> str:
    """Push ``local`` (podman's store) as ``repository:tag``; returns ``R/repository@digest``."""
    podman = shutil.which("podman")
    if podman is None:
        raise DevEnvError("podman is not installed: run `make setup`")
    destination = target.reference(f"{repository}:{tag}")
    with tempfile.TemporaryDirectory(prefix="agentstack-push-") as scratch:
        digest_file = Path(scratch) / "digest"
        _run(
            [
                podman,
                "push",
                "--quiet",
                f"--tls-verify={'false' if target.plain_http else 'true'}",
                "--digestfile",
                str(digest_file),
                local,
                f"docker://{destination}",
            ],
            what=f"podman push {destination}",
            env=containers_env(),
        )
        digest = digest_file.read_text().strip()
    return f"{target.reference(repository)}@{digest}"


def _pin_image(values: Path, repository: str, digest: str) -> None:
    """Point the chart's ``image`` at ``repository@digest`` in its values file, keeping
    every comment (the file is the chart's documentation)."""
    text = values.read_text()
    block = re.search(r"^image:\n((?:[ \t]+.*\n|[ \t]*\n)+)", text, re.MULTILINE)
    if block is None:
        raise DevEnvError(f"{values} has no top-level image: block")
    body = block.group(1)
    for key, value in (("repository", repository), ("digest", digest)):
        body, count = re.subn(
            rf"^(\s+{key}:).*$", rf'\g<1> "{value}"', body, count=1, flags=re.MULTILINE
        )
        if count != 1:
            raise DevEnvError(f"{values}: image.{key} not found")
    values.write_text(text[: block.start(1)] + body + text[block.end(1) :])
    pinned = yaml.safe_load(values.read_text())["image"]
    if (pinned["repository"], pinned["digest"]) != (repository, digest):
        raise DevEnvError(f"{values}: pinning the image did not take")


def _helm(*args: str, what: str) -> str:
    """helm with the user's own configuration: a release to a public registry uses the
    user's ``helm registry login``."""
    return _run([str(helm_binary()), *args], what=what)


def push_chart(
    target: Target, version: str, image: str, chart: Path | None = None
) -> tuple[str, str]:
    """Package the chart (the checkout's, or ``chart``) at ``version`` pinning ``image``
    and push it; returns the chart's ``oci://`` reference and its digest."""
    repository, digest = image.rsplit("@", 1)
    with tempfile.TemporaryDirectory(prefix="agentstack-chart-") as scratch:
        staged = Path(scratch) / "agentstack-operator"
        shutil.copytree(chart or chart_dir(), staged)
        _pin_image(staged / "values.yaml", repository, digest)
        _helm(
            "package",
            str(staged),
            "--version",
            version,
            "--app-version",
            version,
            "--destination",
            scratch,
            what="helm package",
        )
        package = Path(scratch) / f"agentstack-operator-{version}.tgz"
        plain = ["--plain-http"] if target.plain_http else []
        pushed = _helm(
            "push",
            str(package),
            f"oci://{target.reference(CHART_PATH)}",
            *plain,
            what="helm push",
        )
    found = re.search(r"Digest:\s*(sha256:[0-9a-f]{64})", pushed)
    if found is None:
        raise DevEnvError(f"helm push printed no digest:\n{pushed}")
    return f"oci://{target.reference(CHART_PATH)}/agentstack-operator", found.group(1)


def _tool_env(target: Target) -> dict[str, str]:
    env = dict(os.environ, SYFT_CHECK_FOR_APP_UPDATE="false")
    if target.plain_http:
        env["SYFT_REGISTRY_INSECURE_USE_HTTP"] = "true"
    return env


def write_sbom(target: Target, image: str, path: Path) -> None:
    """The image's SBOM as SPDX JSON, read by syft from the registry by digest."""
    _run(
        [str(release_tool("syft")), "scan", f"registry:{image}", "-o", f"{SBOM_FORMAT}={path}"],
        what=f"syft {image}",
        env=_tool_env(target),
    )


def _cosign_options(target: Target, signer: Signer) -> list[str]:
    options = ["--yes"]
    if target.plain_http:
        options += ["--allow-insecure-registry", "--allow-http-registry"]
    if signer.mode == "key":
        if signer.key is None:
            raise DevEnvError("signing with a key needs the key's path")
        # A key-signed local release has no transparency log to write to.
        options += ["--key", str(signer.key), "--tlog-upload=false"]
    return options


def sign(target: Target, signer: Signer, artifact: str, sbom: Path | None = None) -> None:
    """Sign ``artifact`` (by digest); with ``sbom``, also attach it as an attestation."""
    cosign = str(release_tool("cosign"))
    options = _cosign_options(target, signer)
    env = _tool_env(target)
    _run([cosign, "sign", *options, artifact], what=f"cosign sign {artifact}", env=env)
    if sbom is not None:
        _run(
            [
                cosign,
                "attest",
                *options,
                "--type",
                SBOM_PREDICATE,
                "--predicate",
                str(sbom),
                artifact,
            ],
            what=f"cosign attest {artifact}",
            env=env,
        )


def publish(
    target: Target,
    *,
    version: str | None = None,
    image: Image | None = None,
    signer: Signer | None = None,
    sbom_dir: Path | None = None,
    repo: Path | None = None,
) -> Published:
    """Build (or find) the image of ``repo`` (the checkout by default), push it and the
    chart pinning it, and, when asked, write the SBOM and sign both artifacts."""
    built = image or project_image(repo)
    version = version or package_version(repo)
    pushed = push_image(built.name, target, IMAGE_REPOSITORY, version)
    chart_source = None if repo is None else repo / "charts" / "agentstack-operator"
    chart, chart_digest = push_chart(target, version, pushed, chart_source)
    sbom: Path | None = None
    if sbom_dir is not None:
        sbom_dir.mkdir(parents=True, exist_ok=True)
        sbom = sbom_dir / f"agentstack-operator-{version}.spdx.json"
        write_sbom(target, pushed, sbom)
    if signer is not None:
        sign(target, signer, pushed, sbom)
        chart_repository = chart.removeprefix("oci://")
        sign(target, signer, f"{chart_repository}@{chart_digest}")
    return Published(
        version=version,
        image=pushed,
        chart=chart,
        chart_digest=chart_digest,
        sbom=None if sbom is None else str(sbom),
        signed=signer is not None,
        plain_http=target.plain_http,
    )


@dataclass(frozen=True)
class DevRelease:
    """What ``agentstack dev up`` and the node tests install: a dev version of the chart
    and image, and the in-chart Redis's image, all in the local registry."""

    published: Published
    redis_image: str
    """``R/agentstack-redis:<content digest>``"""

    @property
    def images(self) -> tuple[str, str]:
        return (self.published.image, self.redis_image)


def publish_dev(target: Target, repo: Path | None = None) -> DevRelease:
    """Build (or find) the images of ``repo`` (the checkout by default) and publish them
    with its chart as a dev version."""
    app = project_image(repo)
    redis = redis_image()
    tag = redis.name.rsplit(":", 1)[1]
    pushed_redis = push_image(redis.name, target, "agentstack-redis", tag)
    return DevRelease(
        published=publish(target, version=dev_version(app, repo), image=app, repo=repo),
        redis_image=f"{pushed_redis.rsplit('@', 1)[0]}:{tag}",
    )


PREVIOUS_RELEASE = Path("hack") / "previous-release"
"""The file naming the last release's commit: what an upgrade is tested from."""


def previous_release_commit(repo: Path | None = None) -> str:
    """The commit :data:`PREVIOUS_RELEASE` names (its first word outside comments)."""
    path = (repo or find_repo_root()) / PREVIOUS_RELEASE
    for line in path.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            return words[0]
    raise DevEnvError(f"{path} names no commit")


@contextlib.contextmanager
def source_at(commit: str, repo: Path | None = None) -> Iterator[Path]:
    """The checkout's tree at ``commit``, exported into a temporary directory (``git
    archive``: no worktree to clean up, the checkout untouched)."""
    repo = repo or find_repo_root()
    with tempfile.TemporaryDirectory(prefix="agentstack-source-") as scratch:
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar", commit],
            capture_output=True,
            timeout=300,
            check=False,
        )
        if archive.returncode != 0:
            raise DevEnvError(
                f"git archive {commit} failed (a shallow clone lacks it: fetch the "
                f"history): {archive.stderr.decode(errors='replace').strip()}"
            )
        subprocess.run(["tar", "-x", "-C", scratch], input=archive.stdout, timeout=300, check=True)
        yield Path(scratch)


def describe(published: Published) -> str:
    """The release as JSON (what ``agentstack dev release`` prints)."""
    return json.dumps(asdict(published), indent=2)
