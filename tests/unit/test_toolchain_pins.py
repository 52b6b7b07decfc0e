"""Versions are pinned once, in the wrapper modules' go.mod files, and read back from there."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agentstack_devkit.processes import DevEnvError
from agentstack_devkit.toolchain import (
    controlplane_spec,
    find_repo_root,
    helm_spec,
)

REPO = Path(__file__).resolve().parents[2]


def test_controlplane_versions_come_from_go_mod() -> None:
    spec = controlplane_spec(REPO)
    go_mod = (REPO / "hack" / "controlplane" / "go.mod").read_text()
    assert f"k8s.io/kubernetes {spec.versions['kubernetes']}" in go_mod
    assert spec.versions["kubernetes"].startswith("v1.3")
    major, minor = spec.versions["kubernetes"].lstrip("v").split(".")[:2]
    assert f"-X k8s.io/component-base/version.gitMinor={minor}" in spec.ldflags
    assert f"-X k8s.io/component-base/version.gitMajor={major}" in spec.ldflags
    etcd_minor = tuple(int(part) for part in spec.versions["etcd"].lstrip("v").split(".")[:2])
    assert etcd_minor >= (3, 6)


def test_every_staging_module_is_replaced_at_the_matching_version() -> None:
    spec = controlplane_spec(REPO)
    minor_version = "v0." + spec.versions["kubernetes"].split(".", 1)[1]
    go_mod = (REPO / "hack" / "controlplane" / "go.mod").read_text()
    replaced = [line.split() for line in go_mod.splitlines() if "=>" in line]
    assert len(replaced) >= 31
    for old, _, new, version in replaced:
        assert old == new
        assert old.startswith("k8s.io/")
        assert version == minor_version


def test_helm_version_comes_from_its_go_mod() -> None:
    spec = helm_spec(REPO)
    assert spec.versions["helm"].startswith("v4.")
    assert any(flag.endswith(f"version={spec.versions['helm']}") for flag in spec.ldflags)


def test_cache_key_changes_when_the_wrapper_module_changes(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "hack", copy / "hack")
    before = controlplane_spec(copy).cache_key
    assert before == controlplane_spec(REPO).cache_key
    main_go = copy / "hack" / "controlplane" / "cmd" / "etcd" / "main.go"
    main_go.write_text(main_go.read_text() + "\n// edited\n")
    assert controlplane_spec(copy).cache_key != before


def test_repo_root_outside_a_checkout_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTSTACK_REPO", str(tmp_path))
    with pytest.raises(DevEnvError, match=r"has no hack/controlplane/go\.mod"):
        find_repo_root()
