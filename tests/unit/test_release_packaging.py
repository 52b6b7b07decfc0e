"""The release's pure steps: pinning the image in the chart's values, the versions."""

from __future__ import annotations

import difflib
import re
import shutil
from pathlib import Path

import pytest
import yaml

from agentstack_devkit.helm import ChartSource, chart_dir
from agentstack_devkit.image import Image
from agentstack_devkit.processes import DevEnvError
from agentstack_devkit.release import _pin_image, dev_version, package_version

DIGEST = "sha256:" + "ab" * 32


def test_pinning_changes_the_image_lines_only(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    shutil.copyfile(chart_dir() / "values.yaml", values)
    before = values.read_text()
    _pin_image(values, "ghcr.io/owner/agentstack-operator", DIGEST)
    after = values.read_text()
    changed = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert sorted(changed) == [
        '+  digest: "' + DIGEST + '"',
        '+  repository: "ghcr.io/owner/agentstack-operator"',
        '-  digest: ""',
        "-  repository: agentstack-operator",
    ]
    loaded = yaml.safe_load(after)
    assert loaded["image"]["tag"] == ""
    # Other blocks' `repository:` keys (the in-chart Redis's image) are untouched.
    assert loaded["redis"]["standalone"]["image"]["repository"] == "redis"


def test_pinning_a_values_file_without_an_image_block_is_refused(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("redis:\n  url: x\n")
    with pytest.raises(DevEnvError, match="no top-level image"):
        _pin_image(values, "r", DIGEST)


def test_the_checkout_chart_carries_the_package_version() -> None:
    chart = yaml.safe_load((chart_dir() / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == package_version()


def test_a_dev_version_is_semver_with_the_image_digest_as_prerelease() -> None:
    version = dev_version(Image("localhost/agentstack-operator:03a2a7c965dcefa3", built=False))
    assert version == f"{package_version()}-dev.03a2a7c965dcefa3"
    assert re.fullmatch(r"\d+\.\d+\.\d+-dev\.[0-9a-f]{16}", version)


def test_a_published_chart_is_installed_by_version_and_scheme() -> None:
    source = ChartSource("oci://127.0.0.1:5100/charts/agentstack-operator", "1.2.3", True)
    assert source.args() == [
        "oci://127.0.0.1:5100/charts/agentstack-operator",
        "--version",
        "1.2.3",
        "--plain-http",
    ]
    assert ChartSource("charts/x").args() == ["charts/x"]
