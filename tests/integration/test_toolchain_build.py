"""Building with the real Go toolchain: failures are loud, successes are cached."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agentstack_devkit.processes import DevEnvError
from agentstack_devkit.toolchain import BuildSpec, ensure_built


def _module(root: Path, body: str) -> BuildSpec:
    (root / "cmd" / "hello").mkdir(parents=True)
    (root / "go.mod").write_text("module example.test/hello\n\ngo 1.24\n")
    (root / "cmd" / "hello" / "main.go").write_text(body)
    return BuildSpec(
        name="hello",
        module_dir=root,
        packages=("./cmd/hello",),
        binaries=("hello",),
        versions={"hello": "v1.0.0"},
        ldflags=("-X main.version=v1.0.0",),
    )


def test_failed_build_names_the_command_and_quotes_the_compiler(tmp_path: Path) -> None:
    spec = _module(tmp_path / "mod", "package main\n\nfunc main() { undefinedThing() }\n")
    with pytest.raises(DevEnvError) as failure:
        ensure_built(spec, cache=tmp_path / "cache")
    message = str(failure.value)
    assert "failed with exit code 1" in message
    assert "go build" in message
    assert "undefined: undefinedThing" in message
    assert not list((tmp_path / "cache" / "bin").glob("hello-*/hello"))  # nothing half-built


def test_build_is_cached_and_concurrent_callers_build_once(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = _module(
        tmp_path / "mod",
        'package main\n\nimport "fmt"\n\nvar version = "dev"\n\n'
        "func main() { fmt.Println(version) }\n",
    )
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_built(spec, cache=tmp_path / "c")))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(results) == 3
    assert len(set(results)) == 1
    directory = results[0]
    assert (directory / "hello").is_file()
    assert (directory / "BUILDINFO.json").is_file()
    assert capfd.readouterr().err.count("building hello") == 1

    stamp = (directory / "BUILDINFO.json").stat().st_mtime_ns
    assert ensure_built(spec, cache=tmp_path / "c") == directory
    assert (directory / "BUILDINFO.json").stat().st_mtime_ns == stamp
    assert "building" not in capfd.readouterr().err
