"""A release as the release workflow makes one, against a real registry on loopback.

``agentstack dev release`` (what ``make release`` and ``.github/workflows/release.yml``
run) builds the image, pushes it and the chart pinning it by digest to the CNCF
``distribution`` registry, writes the SBOM with syft and signs with cosign — then the
artifacts are read back as a platform team would: helm shows the chart from ``oci://``,
cosign verifies the signatures and the SBOM attestation with the public key (and refuses
another key), and the registry serves each tag at the digest the release reported.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentstack_devkit.registry import Registry
from agentstack_devkit.release import CHART_PATH, IMAGE_REPOSITORY, package_version
from agentstack_devkit.toolchain import find_repo_root, helm_binary, release_tool

PASSWORD = "release-test-key-password"


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with Registry() as running:
        yield running


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cosign key pair (``cosign.key`` locked by :data:`PASSWORD`, ``cosign.pub``)."""
    where = tmp_path_factory.mktemp("keys")
    _cosign(where, "generate-key-pair")
    return where


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A release tool as a user runs it, with the key's password in its environment."""
    return subprocess.run(
        argv,
        cwd=cwd,
        env=dict(os.environ, COSIGN_PASSWORD=PASSWORD),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _cosign(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = _run([str(release_tool("cosign")), *args], cwd)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _release(*args: str) -> subprocess.CompletedProcess[str]:
    return _run([str(find_repo_root() / ".venv" / "bin" / "agentstack"), "dev", "release", *args])


@pytest.fixture(scope="module")
def published(registry: Registry, keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    sboms = tmp_path_factory.mktemp("sbom")
    done = _release(
        "--registry",
        registry.host,
        "--plain-http",
        "--key",
        str(keys / "cosign.key"),
        "--sbom-dir",
        str(sboms),
        "--expect-version",
        f"v{package_version()}",
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _helm(*args: str) -> str:
    done = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_registry_serves_the_image_and_chart_at_the_reported_digests(
    published: Any, registry: Registry
) -> None:
    version = package_version()
    assert published["version"] == version
    assert published["image"].startswith(f"{registry.host}/{IMAGE_REPOSITORY}@sha256:")
    digest = published["image"].rsplit("@", 1)[1]
    assert registry.manifest_digest(IMAGE_REPOSITORY, version) == digest
    chart_repository = f"{CHART_PATH}/agentstack-operator"
    assert registry.manifest_digest(chart_repository, version) == published["chart_digest"]


def test_the_chart_pins_the_image_by_digest_and_carries_the_version(published: Any) -> None:
    source = [published["chart"], "--version", published["version"], "--plain-http"]
    chart = yaml.safe_load(_helm("show", "chart", *source))
    assert chart["version"] == chart["appVersion"] == package_version()
    values = yaml.safe_load(_helm("show", "values", *source))
    repository, digest = published["image"].rsplit("@", 1)
    assert (values["image"]["repository"], values["image"]["digest"]) == (repository, digest)
    rendered = _helm("template", "ags", *source)
    images = {
        line.split("image:", 1)[1].strip().strip('"')
        for line in rendered.splitlines()
        if line.strip().startswith("image:") and IMAGE_REPOSITORY in line
    }
    assert images == {published["image"]}
    # The packaged values keep the chart's documentation.
    assert "# -- Image digest" in _helm("show", "values", *source)


def test_cosign_verifies_the_signatures_with_the_public_key_only(
    published: Any, keys: Path, tmp_path: Path
) -> None:
    chart = f"{published['chart'].removeprefix('oci://')}@{published['chart_digest']}"
    for artifact in (published["image"], chart):
        verified = _cosign(
            keys,
            "verify",
            "--key",
            "cosign.pub",
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            "--allow-insecure-registry",
            artifact,
        )
        claims = json.loads(verified.stdout)  # one array of the verified signatures' claims
        assert claims
        assert {c["critical"]["image"]["docker-manifest-digest"] for c in claims} == {
            artifact.rsplit("@", 1)[1]
        }
    _cosign(tmp_path, "generate-key-pair")
    refused = _cosign(
        tmp_path,
        "verify",
        "--key",
        "cosign.pub",
        "--insecure-ignore-tlog=true",
        "--allow-http-registry",
        "--allow-insecure-registry",
        published["image"],
        check=False,
    )
    assert refused.returncode != 0
    assert "no matching signatures" in refused.stderr


def test_the_sbom_lists_the_images_packages_and_is_attested(published: Any, keys: Path) -> None:
    sbom = json.loads(Path(published["sbom"]).read_text())
    names = {package["name"] for package in sbom["packages"]}
    # The product's own dependencies (from the image's venv) and the base's Python.
    assert {"kopf", "redis", "fastapi"} <= names
    assert any(name.startswith("python3") for name in names)
    attested = _cosign(
        keys,
        "verify-attestation",
        "--key",
        "cosign.pub",
        "--type",
        "spdxjson",
        "--insecure-ignore-tlog=true",
        "--allow-http-registry",
        "--allow-insecure-registry",
        published["image"],
    )
    (envelope,) = [json.loads(line) for line in attested.stdout.splitlines() if line.strip()]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["subject"][0]["digest"]["sha256"] == published["image"].rsplit(":", 1)[1]
    assert {p["name"] for p in statement["predicate"]["packages"]} == names


def test_a_tag_that_does_not_name_the_version_is_refused(registry: Registry) -> None:
    done = _release("--registry", registry.host, "--plain-http", "--expect-version", "v99.0.0")
    assert done.returncode == 2
    assert f"does not name the package's version {package_version()}" in done.stderr
    assert registry.manifest_digest(IMAGE_REPOSITORY, "99.0.0") is None
