"""The project's image, built here the way `agentstack dev image` builds it: from the
Dockerfile, on a local Debian base, with no registry and no Docker engine."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from agentstack_devkit.image import Image, containers_env, project_image

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def image() -> Image:
    return project_image()  # cold: about two and a half minutes; then from the cache


def _run(image: Image, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "run", "--rm", "--network", "none", image.name, *command],
        env=containers_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_image_runs_the_one_command_as_a_numeric_non_root_user(image: Image) -> None:
    ran = _run(image, "agentstack", "--version")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "agentstack 0.1.0"
    user = _run(image, "id", "-u")
    assert user.stdout.strip() == "10001"
    refused = _run(image, "agentstack", "runner", "--once", "--stack", "a/b", "--generation", "1")
    assert refused.returncode == 2  # no REDIS_URL: a clear error, not a crash
    assert "REDIS_URL" in refused.stderr


def test_the_image_holds_the_product_and_no_dev_kit(image: Image) -> None:
    product = _run(
        image,
        "python3",
        "-c",
        "import agentstack_core, agentstack_operator, agentstack_runner, agentstack_api, "
        "agentstack_cli",
    )
    assert product.returncode == 0, product.stderr
    devkit = _run(image, "python3", "-c", "import agentstack_devkit")
    assert devkit.returncode != 0
    assert "No module named 'agentstack_devkit'" in devkit.stderr
    # `agentstack dev` is the dev kit's command: without it, a clear word, not a crash.
    dev = _run(image, "agentstack", "dev", "up")
    assert dev.returncode == 2
    assert "the dev kit is not installed" in dev.stderr
    # The host's pip configuration was a read-only mount during the build: at most its
    # empty mount point is left, never its content.
    pip_conf = _run(image, "sh", "-c", "cat /etc/pip.conf 2>/dev/null; echo end")
    assert pip_conf.stdout == "end\n"


def test_the_image_serves_the_live_page_built_from_web(image: Image) -> None:
    """The page's script is built from web/ into the package (committed, checked against
    a fresh build by lint): the image holds exactly the checkout's files."""
    static = REPO / "api" / "agentstack_api" / "static"
    listed = _run(
        image,
        "python3",
        "-c",
        "import hashlib, importlib.resources as r\n"
        "for f in sorted(r.files('agentstack_api').joinpath('static').iterdir(), "
        "key=lambda f: f.name):\n"
        "    print(f.name, hashlib.sha256(f.read_bytes()).hexdigest())",
    )
    assert listed.returncode == 0, listed.stderr
    expected = [
        f"{path.name} {hashlib.sha256(path.read_bytes()).hexdigest()}"
        for path in sorted(static.iterdir())
    ]
    assert listed.stdout.splitlines() == expected
    assert any(line.startswith("app.js ") for line in expected)


def test_an_unchanged_checkout_is_not_built_again(image: Image) -> None:
    again = project_image()
    assert again == Image(image.name, built=False)


def test_dev_image_prints_the_image() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "agentstack_cli", "dev", "image"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip().startswith("localhost/agentstack-operator:")
