"""``kubectl agentstack``, run by the real kubectl as a plugin (found on the ``PATH``),
against the real API server, operator, runner and read API (authentication on).

Each command acts with the caller's credentials: the admin's kubeconfig steers; a
ServiceAccount's kubeconfig without the verbs is refused by RBAC, for the patch (API
server) and for the input (read API) alike.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.redis.checkpoints import CheckpointState
from agentstack_devkit.controlplane import ControlPlane, build_kubeconfig
from tests.e2e.stacks import Stacks
from tests.helpers import eventually

BIN = Path(sys.executable).parent


class Plugin:
    """Runs ``kubectl agentstack …`` as a user would (kubectl finds the plugin)."""

    def __init__(self, control_plane: ControlPlane, namespace: str, api_url: str) -> None:
        self.kubectl = str(control_plane.binaries.kubectl)
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "KUBECONFIG": str(control_plane.kubeconfig_path),
            "AGENTSTACK_API_URL": api_url,
        }
        self.namespace = namespace

    def command(self, *args: str, kubeconfig: Path | None = None) -> list[str]:
        where = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
        return [self.kubectl, "agentstack", "-n", self.namespace, *where, *args]

    def run(self, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args, kubeconfig=kubeconfig),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def setting(steering: tuple[str, Stacks], control_plane: ControlPlane) -> tuple[Plugin, Stacks]:
    url, stacks = steering
    stacks.create("steered", tickIntervalSeconds=3600)
    stacks.wait_ticks("steered", 1)
    return Plugin(control_plane, stacks.namespace, url), stacks


def test_kubectl_finds_the_plugin(setting: tuple[Plugin, Stacks]) -> None:
    plugin, _stacks = setting
    listed = subprocess.run(
        [plugin.kubectl, "plugin", "list"],
        env=plugin.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "kubectl-agentstack" in listed.stdout, listed.stdout + listed.stderr
    assert "pause" in plugin.ok("--help")


def test_pause_resume_and_stop_patch_the_stack_and_status_shows_it(
    setting: tuple[Plugin, Stacks],
) -> None:
    plugin, stacks = setting
    stacks.create("toggled", tickIntervalSeconds=3600)
    assert "executionState=Paused" in plugin.ok("pause", "toggled")
    assert stacks.get("toggled")["spec"]["executionState"] == "Paused"
    eventually(
        lambda: True if stacks.condition("toggled", "Paused").get("status") == "True" else None,
        "the Paused condition",
    )
    shown = plugin.ok("status", "toggled")
    assert "State:      Paused" in shown
    assert "Cost:       $0.000000" in shown  # no tick ran: nothing spent
    assert "Paused" in shown.split("Conditions:")[1]
    plugin.ok("resume", "toggled")
    assert stacks.get("toggled")["spec"]["executionState"] == "Running"
    plugin.ok("stop", "toggled")
    assert stacks.get("toggled")["spec"]["executionState"] == "Stopped"
    missing = plugin.run("pause", "no-such-stack")
    assert missing.returncode == 1
    assert "not found" in missing.stderr


def test_status_shows_what_wakes_the_stack_and_why_it_waits(
    setting: tuple[Plugin, Stacks],
) -> None:
    plugin, stacks = setting
    stacks.create(
        "wired",
        tickIntervalSeconds=3600,
        webhooks=[{"name": "github", "secretRef": {"name": "hooks", "key": "github"}}],
        triggers=[
            {"name": "backoff", "serviceAccountName": "nobody", "event": {"reasons": ["BackOff"]}},
            {
                "name": "crashloop",
                "serviceAccountName": "nobody",
                "object": {"apiVersion": "v1", "kind": "Pod"},
            },
        ],
    )
    stacks.wait_condition("wired", "Ready", "False", reason="TriggerNotAllowed")
    shown = plugin.ok("status", "wired")
    assert (
        "Wakes on:   webhook github, trigger backoff (Events BackOff), trigger crashloop (Pod)"
        in shown
    )
    ready = next(line for line in shown.splitlines() if line.strip().startswith("Ready"))
    assert "TriggerNotAllowed" in ready
    assert "ServiceAccount 'nobody' may not list and watch events" in ready


def test_send_reaches_the_agent_and_trace_follows_the_tick_it_brought(
    setting: tuple[Plugin, Stacks],
) -> None:
    plugin, _stacks = setting
    follower = subprocess.Popen(
        plugin.command("trace", "steered", "-f", "--limit", "5"),
        env=plugin.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert follower.stdout is not None
    stdout = follower.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    try:
        sent = plugin.ok("send", "steered", "Summarise the open risks.", "--agent", "reviewer")
        assert sent.startswith("input #1 sent to reviewer as admin")

        def reading() -> bool | None:
            try:
                return True if "read input #1" in lines.get(timeout=0.5) else None
            except queue.Empty:
                return None

        eventually(reading, "trace -f to show the reviewer reading the input", timeout=30)
    finally:
        follower.terminate()
        follower.wait(10)
    listed = plugin.ok("inputs", "steered")
    assert "#1" in listed
    assert "admin -> reviewer: Read by reviewer in" in listed


def test_search_finds_an_input_in_the_archive(setting: tuple[Plugin, Stacks]) -> None:
    plugin, _stacks = setting
    sent = plugin.ok("send", "steered", "The budget owner is Dana Whitfield.", "--agent", "planner")
    number = sent.split()[1]  # "#N"
    done = plugin.run("search", "steered", "who owns the budget?", "--kind", "input")
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0].split()
    assert first[2:5] == ["input", number, "admin"]
    assert "The budget owner is Dana Whitfield." in done.stdout
    assert "hit(s) for owns budget among" in done.stderr
    empty = plugin.run("search", "steered", "the of")
    assert empty.returncode == 1
    assert "nothing to search for" in empty.stderr


def test_rollback_pauses_restores_a_checkpoint_announces_it_and_resume_goes_on(
    setting: tuple[Plugin, Stacks], k8s_api: client.ApiClient
) -> None:
    plugin, stacks = setting
    stacks.create("rewound", tickIntervalSeconds=1)
    stacks.wait_ticks("rewound", 3)
    listed = plugin.ok("checkpoints", "rewound").splitlines()
    first_seq, first_tick, _size, _unit = listed[0].split()
    assert first_seq == "1"
    assert first_tick.startswith(f"{stacks.namespace}/rewound/")
    keys = StackKeys(StackRef(stacks.namespace, "rewound"))
    kept = CheckpointState.from_json(stacks.redis.hget(keys.checkpoint_states, first_tick))

    slot = first_tick.rsplit("/", 1)[1]
    done = plugin.ok("rollback", "rewound", "--to", slot)
    assert f"rolled back to {first_tick} (checkpoint 1;" in done
    assert "executionState=Paused" in done
    assert stacks.get("rewound")["spec"]["executionState"] == "Paused"
    assert (stacks.redis.get(keys.plan) or "") == kept.plan
    assert stacks.redis.hgetall(keys.artifacts) == kept.artifacts
    assert stacks.redis.hgetall(keys.cursors) == kept.cursors
    notes = [f for _i, f in stacks.redis.xrange(keys.archive) if f.get("kind") == "note"]
    assert notes[-1]["agent"] == "admin"

    def announced() -> str | None:
        events = client.CoreV1Api(k8s_api).list_namespaced_event(
            stacks.namespace, field_selector="involvedObject.name=rewound"
        )
        said = [e.message for e in events.items if e.reason == "RolledBack"]
        return said[0] if said else None

    message = eventually(announced, "the RolledBack Event")
    assert message.startswith(f"admin rolled the stack back to tick {first_tick}")
    missing = plugin.run("rollback", "rewound", "--to", "999999")
    assert missing.returncode == 1
    assert "404" in missing.stderr
    assert "no checkpoint" in missing.stderr

    ran = len(stacks.executed("rewound"))
    newest = max(int(line.split()[0]) for line in plugin.ok("checkpoints", "rewound").splitlines())
    plugin.ok("resume", "rewound")
    eventually(
        lambda: True if len(stacks.executed("rewound")) > ran else None, "a tick after resume"
    )
    after = [int(line.split()[0]) for line in plugin.ok("checkpoints", "rewound").splitlines()]
    assert max(after) > newest  # the ticks after the resume keep checkpoints again


def test_fork_copies_the_checkpoint_shadowed_and_mirrors_the_sources_inputs(
    setting: tuple[Plugin, Stacks], k8s_api: client.ApiClient
) -> None:
    plugin, stacks = setting
    stacks.create("origin", tickIntervalSeconds=1)
    stacks.wait_ticks("origin", 2)
    tick = plugin.ok("checkpoints", "origin").splitlines()[0].split()[1]
    done = plugin.ok(
        "fork",
        "origin",
        "origin-try",
        "--at",
        tick,
        "--set",
        "spec.goal=Try it terse",
        "--mirror",
        "--paused",
    )
    assert f"forked from {stacks.namespace}/origin@{tick}" in done
    assert "executionState=Paused" in done
    made = stacks.get("origin-try")
    assert made["metadata"]["annotations"]["agentstack.dev/forked-from"] == (
        f"{stacks.namespace}/origin@{tick}"
    )
    assert made["spec"]["goal"] == "Try it terse"
    eventually(
        lambda: (
            True
            if stacks.status("origin-try").get("forkedFrom") == f"{stacks.namespace}/origin@{tick}"
            else None
        ),
        "status.forkedFrom",
    )
    # Seeded with the source's state at that tick, field by field.
    source, fork = (StackKeys(StackRef(stacks.namespace, n)) for n in ("origin", "origin-try"))
    kept = CheckpointState.from_json(stacks.redis.hget(source.checkpoint_states, tick))
    assert (stacks.redis.get(fork.plan) or "") == kept.plan
    assert stacks.redis.hgetall(fork.artifacts) == kept.artifacts
    assert stacks.redis.hgetall(fork.cursors) == kept.cursors
    for agent, state in kept.agents.items():
        assert stacks.redis.hgetall(fork.memory(agent)) == state.memory
    stacks.wait_event("origin-try", "Forked")
    again = plugin.run("fork", "origin", "origin-try", "--at", tick)
    assert again.returncode == 1
    assert "409" in again.stderr

    # Mirrored: an input to the source reaches the fork too, once each.
    plugin.ok("send", "origin", "Mirror this, please.", "--agent", "planner")

    def contents(keys: StackKeys) -> list[str]:
        return [f["content"] for _i, f in stacks.redis.xrange(keys.inputs)]

    eventually(
        lambda: True if contents(fork) == ["Mirror this, please."] else None,
        "the mirrored input in the fork's inputs log",
    )
    assert contents(source) == ["Mirror this, please."]
    plugin.ok("resume", "origin-try")
    eventually(lambda: True if stacks.executed("origin-try") else None, "the fork's first tick")


def test_compare_sets_two_stacks_with_a_known_difference_side_by_side(
    setting: tuple[Plugin, Stacks],
) -> None:
    plugin, stacks = setting
    evals = [{"name": "on-topic", "artifacts": "*.md", "pattern": "offsite"}]
    stacks.create("offsite", goal="Plan a team offsite", tickIntervalSeconds=1, evals=evals)
    stacks.create("notes", goal="Write release notes", tickIntervalSeconds=1, evals=evals)

    def scored(name: str) -> dict[str, Any] | None:
        found = (stacks.status(name).get("evals") or {}).get("on-topic")
        return found if found and found["ticks"] >= 3 else None

    assert eventually(lambda: scored("offsite"), "3 scored ticks of offsite")["mean"] == 1.0
    assert eventually(lambda: scored("notes"), "3 scored ticks of notes")["mean"] == 0.0
    shown = plugin.ok("compare", "offsite", f"{stacks.namespace}/notes", "--last", "50")
    header, *rows = shown.splitlines()
    assert header.split()[:4] == ["MEASURE", "A", "B", "B-A"]
    on_topic = next(row for row in rows if row.startswith("eval on-topic"))
    assert on_topic.split()[2:5] == ["1", "0", "-1"]
    assert on_topic.endswith("B lower")
    assert any(row.startswith("tokens/tick") for row in rows)


def test_rbac_refuses_a_user_without_the_verbs(
    setting: tuple[Plugin, Stacks],
    control_plane: ControlPlane,
    k8s_api: client.ApiClient,
    tmp_path: Path,
) -> None:
    plugin, stacks = setting
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_service_account(
        stacks.namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="onlooker"))
    )
    token = core.create_namespaced_service_account_token(
        "onlooker",
        stacks.namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    ).status.token
    kubeconfig = tmp_path / "onlooker.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            build_kubeconfig(
                server=control_plane.url, ca_path=control_plane.ca_path, token=token, user="sa"
            )
        )
    )
    paused = plugin.run("pause", "steered", kubeconfig=kubeconfig)
    assert paused.returncode == 1
    assert "forbidden by RBAC" in paused.stderr
    assert stacks.get("steered")["spec"].get("executionState", "Running") == "Running"
    sent = plugin.run("send", "steered", "let me in", kubeconfig=kubeconfig)
    assert sent.returncode == 1
    assert "403" in sent.stderr
    assert "create agentstacks/inputs" in sent.stderr
    rolled = plugin.run("rollback", "steered", "--to", "1", kubeconfig=kubeconfig)
    assert rolled.returncode == 1
    assert "403" in rolled.stderr
    assert "create agentstacks/rollback" in rolled.stderr
    assert stacks.get("steered")["spec"].get("executionState", "Running") == "Running"
    forked = plugin.run("fork", "steered", "stolen", kubeconfig=kubeconfig)
    assert forked.returncode == 1
    assert "403" in forked.stderr
    searched = plugin.run("search", "steered", "risks", kubeconfig=kubeconfig)
    assert searched.returncode == 1
    assert "403" in searched.stderr
    assert "may not get agentstacks" in searched.stderr
