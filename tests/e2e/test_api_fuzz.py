"""Schema-driven fuzzing of the read API: no input makes it answer 500 or off-schema.

schemathesis generates requests from the API's own ``/openapi.json`` — valid and
invalid parameters alike — and checks every response: never a server error, status
codes, content types and bodies as documented. It runs as its CLI (its pytest plugin
does not support this pytest), bounded in examples and time. The streaming (SSE)
routes are left out: they never end by design; the SSE tests cover their parameters.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import redis
from kubernetes import client

from agentstack_devkit.fleet import Fleet
from tests.e2e.stacks import Stacks


def test_no_generated_request_breaks_the_api(
    fleet: Fleet, k8s_api: client.ApiClient, redis_reader: redis.Redis, tmp_path: Path
) -> None:
    namespace = f"fuzz-{secrets.token_hex(4)}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        fleet.operator()
        fleet.runner()
        _process, port = fleet.api()
        stacks = Stacks(k8s_api, namespace, redis_reader)
        # Inputs as large and as many as the schema admits are taken (a 413 or a 429
        # would be the stack's policy refusing valid data, not the API misbehaving).
        stacks.create("fuzzed", inputs={"maxBytes": 32768, "maxPerMinute": 600})
        stacks.wait_ticks("fuzzed", 2)
        url = f"http://127.0.0.1:{port}"
        fuzz = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{url}/openapi.json",
                "--url",
                url,
                "--checks",
                "all",
                "--max-examples",
                "30",
                "--exclude-path-regex",
                "/stream$",
                "--generation-deterministic",
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert fuzz.returncode == 0, fuzz.stdout[-6000:] + fuzz.stderr[-2000:]
        assert "passed" in fuzz.stdout
    finally:
        core.delete_namespace(namespace)
