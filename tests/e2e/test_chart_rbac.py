"""The chart grants each ServiceAccount exactly what the README's RBAC table lists.

The documented grants live in one place, the table of README.md's "Permissions (RBAC)"
section: one row per ServiceAccount, resource, verbs, where (watched namespaces, the
release namespace, or cluster-wide) and the values the row depends on. Each test
installs the chart into the real control plane with the pinned helm, then asks the API
server what every ServiceAccount of the release may do in each namespace (``kubectl
auth can-i --list --as=system:serviceaccount:…``) and compares that with the table —
both ways: nothing documented is missing, nothing undocumented is granted. The rules
every authenticated user has (self-reviews, discovery URLs) are left out.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.processes import DevEnvError
from tests.e2e.test_chart import Helm, _can_i, _create_namespace, _delete_namespace, _sets
from tests.helpers import eventually

README = Path(__file__).resolve().parents[2] / "README.md"
ACCOUNTS = ("operator", "runner", "api")
EVERYONES = {  # granted to every authenticated user by the built-in system:basic-user
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
    "selfsubjectreviews.authentication.k8s.io",
}
WHERE = ("watched namespaces", "release namespace", "cluster")

Grant = tuple[str, str, str]
"""(resource as kubectl prints it, e.g. ``jobs.batch``; verb; resource name or "")."""


# -- the documented grants ------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    account: str
    resource: str
    name: str
    verbs: tuple[str, ...]
    where: str
    condition: str


_ROW = re.compile(
    r"^\| (?P<account>\w+) \| `(?P<resource>[^`]+)`(?: named `(?P<name>[^`]+)`)? "
    r"\| (?P<verbs>[a-z]+(?:, [a-z]+)*) \| (?P<where>[a-z ]+) \|(?P<condition>[^|]*)\|"
)


def documented_rows() -> list[Row]:
    """The rows of the table in README.md's "Permissions (RBAC)" section."""
    text = README.read_text()
    section = text.split("### Permissions (RBAC)\n", 1)[1].split("\n#", 1)[0]
    header, *table = [line for line in section.splitlines() if line.startswith("| ")]
    assert header.startswith("| ServiceAccount | resource | verbs | where | only with |"), header
    rows = []
    for line in table:
        match = _ROW.match(line)
        assert match, f"README's RBAC table: a row this test cannot read: {line}"
        assert match["account"] in ACCOUNTS, line
        assert match["where"] in WHERE, line
        rows.append(
            Row(
                account=match["account"],
                resource=match["resource"],
                name=match["name"] or "",
                verbs=tuple(match["verbs"].split(", ")),
                where=match["where"],
                condition=match["condition"].strip(),
            )
        )
    assert {row.account for row in rows} == set(ACCOUNTS), "the table names every account"
    return rows


def _applies(condition: str, values: dict[str, Any]) -> bool:
    """Whether a row's "only with" holds for the installed values: empty (always),
    `` `key: value` `` or `` `key` set ``."""
    if not condition:
        return True
    if match := re.fullmatch(r"`([\w.]+): (\w+)`", condition):
        return bool(values[match[1]] == match[2])
    if match := re.fullmatch(r"`([\w.]+)` set", condition):
        return bool(values[match[1]])
    raise AssertionError(f"README's RBAC table: an unknown condition {condition!r}")


def expected_grants(
    account: str, namespace: str, *, release_namespace: str, fullname: str, values: dict[str, Any]
) -> set[Grant]:
    """What the table says ``account`` may do in ``namespace`` (cluster-wide rules show in
    every namespace's list, as the API server reports them)."""
    watched = values["watchNamespaces"]
    grants: set[Grant] = set()
    for row in documented_rows():
        if row.account != account or not _applies(row.condition, values):
            continue
        here = {
            "cluster": True,
            "release namespace": namespace == release_namespace,
            "watched namespaces": not watched or namespace in watched,
        }[row.where]
        if here:
            name = row.name.replace("<fullname>", fullname)
            grants.update((row.resource, verb, name) for verb in row.verbs)
    return grants


# -- what the API server grants --------------------------------------------------------------


def granted(control_plane: ControlPlane, user: str, namespace: str) -> set[Grant]:
    """``kubectl auth can-i --list`` of ``user`` in ``namespace``, as (resource, verb, name),
    without non-resource URLs and the self-reviews everyone may create."""
    listed = control_plane.kubectl(
        "auth", "can-i", "--list", "--no-headers", f"--as={user}", "-n", namespace
    )
    assert listed.returncode == 0, listed.stderr
    grants: set[Grant] = set()
    for line in listed.stdout.splitlines():
        if not line.strip():
            continue
        resource = line.split("[", 1)[0].strip()
        cells = re.findall(r"\[([^\]]*)\]", line)
        assert len(cells) == 3, f"unexpected `kubectl auth can-i --list` line: {line!r}"
        urls, names, verbs = (cell.split() for cell in cells)
        if urls or resource in EVERYONES:
            continue
        assert resource, line
        grants.update((resource, verb, name) for verb in verbs for name in names or [""])
    return grants


def settled_grants(
    control_plane: ControlPlane, user: str, namespace: str, expected: set[Grant]
) -> set[Grant]:
    """:func:`granted`, once it holds all of ``expected`` (RBAC's caches see new bindings
    within moments, and an install only adds grants) or as it is after 30 s."""
    latest: set[Grant] = set()

    def complete() -> bool | None:
        nonlocal latest
        latest = granted(control_plane, user, namespace)
        return True if expected <= latest else None

    with contextlib.suppress(DevEnvError):  # the caller compares, showing the difference
        eventually(complete, f"{user}'s grants in {namespace}", timeout=30)
    return latest


@pytest.fixture(scope="module")
def helm(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    # No node: the chart's hook Jobs would never run (uninstall skips them).
    return Helm(tmp_path_factory.mktemp("helm"), control_plane.kubeconfig_path, pods_run=False)


# -- the tests ------------------------------------------------------------------------------


def test_the_readme_table_is_the_documented_least_privilege() -> None:
    """The table itself: the grants this change narrowed stay out of it."""
    rows = {(row.account, row.resource, verb) for row in documented_rows() for verb in row.verbs}
    for wider in (
        ("operator", "agentstacks.agentstack.dev", "update"),
        ("operator", "agentstacks.agentstack.dev/status", "get"),
        ("operator", "agentstacks.agentstack.dev/status", "update"),
        ("operator", "events", "patch"),
        ("operator", "jobs.batch", "get"),
        ("operator", "jobs.batch", "delete"),
        ("operator", "secrets", "list"),
        ("runner", "secrets", "list"),
    ):
        assert wider not in rows, wider


@pytest.mark.parametrize(
    ("watched", "settings"),
    [
        pytest.param(0, {}, id="all-namespaces"),
        pytest.param(2, {}, id="two-watched-namespaces"),
        pytest.param(
            2,
            {"runner.credentials": "env", "api.auth": "none", "api.webhooks": "false"},
            id="env-credentials-no-auth-no-webhooks",
        ),
    ],
)
def test_each_service_account_has_exactly_the_documented_grants(
    helm: Helm,
    control_plane: ControlPlane,
    k8s_api: client.ApiClient,
    crd: str,
    namespace: str,
    watched: int,
    settings: dict[str, str],
) -> None:
    release = f"rbac-{secrets.token_hex(3)}"
    fullname = f"{release}-agentstack-operator"
    created = [_create_namespace(k8s_api, "watched") for _ in range(watched)]
    outside = _create_namespace(k8s_api, "outside")
    values: dict[str, Any] = {
        "watchNamespaces": created,
        "runner.credentials": "kubernetes",
        "api.auth": "kubernetes",
        "api.webhooks": "true",
        **settings,
    }
    sets = {
        **{f"watchNamespaces[{i}]": name for i, name in enumerate(created)},
        **settings,
        "rbac.userRoles.namePrefix": release,  # cluster-wide names: one per release
    }
    try:
        helm.install(release, namespace, *_sets(sets))
        for account in ACCOUNTS:
            user = f"system:serviceaccount:{namespace}:{fullname}-{account}"
            for where in (namespace, *created, outside):
                expected = expected_grants(
                    account,
                    where,
                    release_namespace=namespace,
                    fullname=fullname,
                    values=values,
                )
                actual = settled_grants(control_plane, user, where, expected)
                assert actual == expected, (
                    f"{account} in {where}: granted but not documented "
                    f"{sorted(actual - expected)}; documented but not granted "
                    f"{sorted(expected - actual)}"
                )

        # The runners' Secret access, said plainly: nowhere outside watchNamespaces.
        runner = f"system:serviceaccount:{namespace}:{fullname}-runner"
        reads_secrets = values["runner.credentials"] == "kubernetes"
        for where in created:
            assert _can_i(control_plane, runner, "get", "secrets", where) is reads_secrets
        assert _can_i(control_plane, runner, "get", "secrets", outside) is (
            reads_secrets and not created
        )
        assert not _can_i(control_plane, runner, "list", "secrets", outside)
    finally:
        uninstalled = helm.uninstall(release, namespace)
        assert uninstalled.returncode == 0, uninstalled.stderr
        for name in (*created, outside):
            _delete_namespace(k8s_api, name)
