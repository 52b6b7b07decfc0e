"""Playing a node for tick Jobs, where the control plane has none: run a Job's command as
its pod would (its environment, ``secretKeyRef``s resolved from the namespace's
Secrets as the kubelet resolves them), then report the pod finished as the kubelet
would, so the real Job controller completes or fails the Job."""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
import sys
import time
from typing import Any

from kubernetes import client

LOG_TAIL_CHARS = 2048
"""What ``FallbackToLogsOnError`` keeps of a failed container's log."""


def pod_environment(api: client.ApiClient, job: dict[str, Any]) -> dict[str, str]:
    """The environment of the Job's container, Secret keys included."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    core = client.CoreV1Api(api)
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        secret = core.read_namespaced_secret(
            ref["name"], job["metadata"]["namespace"], _request_timeout=5
        )
        env[item["name"]] = base64.b64decode(secret.data[ref["key"]]).decode()
    return env


def start_pod(api: client.ApiClient, job: dict[str, Any]) -> subprocess.Popen[str]:
    """Start what the Job's pod runs (``agentstack runner --once …``)."""
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["agentstack", "runner", "--once"], command
    return subprocess.Popen(
        [sys.executable, "-m", "agentstack_cli", *command[1:]],
        env={**os.environ, **pod_environment(api, job)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def run_pod(api: client.ApiClient, job: dict[str, Any], timeout: float = 120) -> tuple[int, str]:
    """Do what the Job's pod would, then report how it ended (the log's tail is the
    termination message of a failure); its exit code and log."""
    started = time.time()
    process = start_pod(api, job)
    try:
        _out, log = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    report_pod(api, job, process.returncode, started=started, log=log)
    return process.returncode, log


def delete_pod(api: client.ApiClient, job: dict[str, Any]) -> None:
    """Delete the Job's pods at once, as a drain or a person would (the Job controller
    counts such a pod failed)."""
    core = client.CoreV1Api(api)
    namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
    for pod in pods:
        core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)


def report_pod(
    api: client.ApiClient,
    job: dict[str, Any],
    code: int,
    *,
    started: float,
    log: str = "",
    wait_seconds: float = 30,
) -> bool:
    """Report the Job's pod terminated with ``code`` (``False``: no pod appeared)."""
    core = client.CoreV1Api(api)
    namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
    deadline = time.monotonic() + wait_seconds
    while True:
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"job-name={name}", _request_timeout=5
        ).items
        if pods:
            break
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    stamp = dt.datetime.fromtimestamp(started, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    container = job["spec"]["template"]["spec"]["containers"][0]
    ended = {
        "exitCode": code,
        "reason": "Completed" if code == 0 else "Error",
        "startedAt": stamp,
        "finishedAt": now,
        **({"message": log[-LOG_TAIL_CHARS:]} if code and log else {}),
    }
    status = {
        "phase": "Succeeded" if code == 0 else "Failed",
        "startTime": stamp,
        "containerStatuses": [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": ended},
            }
        ],
    }
    for pod in pods:
        core.patch_namespaced_pod_status(
            pod.metadata.name, namespace, {"status": status}, _request_timeout=5
        )
    return True
