"""What `pip install agentstack-operator` (and so the image) contains: the product only.

The wheel is built from what the Dockerfile copies into the image build (the files
``.dockerignore`` lets through, in a scratch directory, so no stale ``build/`` of the
checkout can leak in), and its file list is checked: the core, operator and runner
packages are there (with their data files), the dev kit is not, and no shipped module
imports it or the dev-only packages (selenium) it uses.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = (
    "agentstack_core",
    "agentstack_operator",
    "agentstack_runner",
    "agentstack_api",
    "agentstack_cli",
)


def _build_context(target: Path) -> None:
    """Copy what `.dockerignore` allows (its `!path` lines) into ``target``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for line in (REPO / ".dockerignore").read_text().splitlines():
        if not line.startswith("!"):
            continue
        source = REPO / line[1:].rstrip("/")
        if source.is_dir():
            shutil.copytree(source, target / source.name, ignore=ignore)
        else:
            shutil.copy2(source, target / source.name)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    context = tmp_path_factory.mktemp("context")
    _build_context(context)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(context),
        ],
        check=True,
        timeout=300,
        cwd=out,
    )
    (built,) = out.glob("agentstack_operator-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_holds_the_product_packages_and_their_data(
    wheel: zipfile.ZipFile,
) -> None:
    names = wheel.namelist()
    packages = {name.split("/", 1)[0] for name in names if not name.endswith(".dist-info/")}
    assert set(PRODUCT) <= packages
    for package in PRODUCT:
        assert f"{package}/py.typed" in names
    assert "agentstack_api/static/index.html" in names
    # The live page's script, built from web/src and committed, with its source map.
    assert {"agentstack_api/static/app.js", "agentstack_api/static/app.js.map"} <= set(names)
    # The Redis layer's scripts are files beside the modules that load them.
    scripts = {Path(name).stem for name in names if name.startswith("agentstack_core/redis/")}
    assert {"begin", "commit_step", "finish_tick", "alive", "send_input"} <= scripts


def test_the_wheel_holds_no_dev_code(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert not [name for name in names if "devkit" in name or name.startswith("tests/")]
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level <= {*PRODUCT, *[n for n in top_level if n.endswith(".dist-info")]}
    sources = {name: wheel.read(name).decode() for name in names if name.endswith(".py")}
    assert not [name for name, source in sources.items() if "selenium" in source]
    # No module names the dev kit: `agentstack dev` is the dev kit's own command, found
    # through its entry point where it is installed.
    naming = [name for name, source in sources.items() if "agentstack_devkit" in source]
    assert naming == []
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    assert "agentstack.commands" not in wheel.read(entry_points).decode()


def test_the_image_build_context_leaves_the_dev_kit_out() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    allowed = (REPO / ".dockerignore").read_text().splitlines()
    assert "!devkit/" not in allowed
    assert "devkit" not in " ".join(
        line for line in dockerfile.splitlines() if line.startswith("COPY")
    )
