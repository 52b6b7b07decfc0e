"""The rules of tick pods' credentials: what the ACL user may do, how a Secret is read,
when a password is rotated, and that replicas racing over one namespace agree."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.exceptions import NoPermissionError

from agentstack_core.keys import StackKeys, StackRef, namespace_pattern
from agentstack_core.reasons import Blocked, EventReason
from agentstack_core.spec import parse_spec
from agentstack_operator.jobs import SECRET_NAME
from agentstack_operator.stackstate import HOLD_PHASES, StackRecord
from agentstack_operator.tickcredentials import (
    Credential,
    TickCredentials,
    acl_rules,
    acl_user,
    check_tick_credentials,
    password_hash,
)
from tests.helpers import Clock

DAY = 86400.0


class Store:
    """Secrets with resourceVersions, as the API server keeps them (create: 409 if
    present; replace: 409 unless the version is the current one)."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.forbidden = False

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        await asyncio.sleep(0)
        if self.forbidden:
            raise PermissionError("forbidden")
        found = self.secrets.get(namespace)
        return copy.deepcopy(found) if found else None

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> bool:
        await asyncio.sleep(0)
        if namespace in self.secrets:
            return False
        self._store(namespace, body)
        return True

    async def replace_secret(self, namespace: str, body: dict[str, Any]) -> bool:
        await asyncio.sleep(0)
        current = self.secrets.get(namespace)
        if current is None or current["metadata"]["resourceVersion"] != body["metadata"].get(
            "resourceVersion"
        ):
            return False
        self._store(namespace, body)
        return True

    def _store(self, namespace: str, body: dict[str, Any]) -> None:
        assert body["metadata"]["name"] == SECRET_NAME
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.secrets[namespace] = stored


class Acl:
    """Redis's ACL users as ``ACL SETUSER … reset …`` leaves them: the last rules win."""

    def __init__(self) -> None:
        self.users: dict[str, list[str]] = {}
        self.refuse = False

    async def execute_command(self, *command: str, **_options: Any) -> str:
        await asyncio.sleep(0)
        if self.refuse:
            raise NoPermissionError("this user has no permissions to run the 'acl|setuser'")
        assert command[:2] == ("ACL", "SETUSER")
        self.users[command[2]] = list(command[3:])
        return "OK"

    def accepts(self, user: str, password: str) -> bool:
        return f"#{password_hash(password)}" in self.users.get(user, [])


def _password(store: Store, namespace: str) -> str:
    secret = store.secrets[namespace]
    credential = Credential.from_secret(secret)
    assert credential is not None
    return credential.password


def test_the_user_reaches_only_its_namespace_with_the_ticks_commands() -> None:
    rules = acl_rules("team-a", ["h1", "h2", "h1"])
    assert rules[:2] == ["reset", "on"]  # nothing left over from before
    assert [r for r in rules if r.startswith("#")] == ["#h1", "#h2"]
    assert [r for r in rules if r.startswith("~")] == ["~{team-a/*"]
    assert "resetchannels" in rules
    assert "-@all" in rules
    allowed = {r[1:] for r in rules if r.startswith("+")}
    assert {"evalsha", "eval", "hgetall"} <= allowed
    assert not allowed & {"keys", "scan", "flushall", "flushdb", "info", "acl", "config", "monitor"}
    assert not any(r.startswith("+@") for r in rules)  # no whole category


@given(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True))
def test_a_namespace_pattern_matches_its_keys_and_no_other_namespaces(namespace: str) -> None:
    import fnmatch

    pattern = namespace_pattern(namespace)
    assert fnmatch.fnmatchcase(StackKeys(StackRef(namespace, "s")).plan, pattern)
    for other in (f"{namespace}x", f"{namespace}-b", f"x{namespace}"):
        assert not fnmatch.fnmatchcase(StackKeys(StackRef(other, "s")).plan, pattern)
    assert not fnmatch.fnmatchcase("{agentstack}:results", pattern)


def test_a_secret_without_a_credential_reads_as_none() -> None:
    assert Credential.from_secret({"metadata": {}, "data": {}}) is None
    assert (
        Credential.from_secret({"data": {"REDIS_USERNAME": "", "REDIS_PASSWORD": "eA=="}}) is None
    )


@pytest.mark.asyncio
async def test_replicas_racing_over_one_namespace_install_the_secrets_password() -> None:
    store, acl = Store(), Acl()
    replicas = [TickCredentials(store, acl, cluster=False, rotate_every=DAY) for _ in range(3)]
    await asyncio.gather(*(replica.ensure("team-a") for replica in replicas))
    # Whichever won, the last word in Redis accepts the password the Secret holds.
    assert acl.accepts(acl_user("team-a"), _password(store, "team-a"))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["ensure-a", "ensure-b", "refresh", "day"]), max_size=12))
def test_the_secrets_password_is_always_accepted_and_the_previous_until_the_next(
    steps: list[str],
) -> None:
    """Whatever the order of replicas' checks, refreshes and days passing: Redis accepts
    the password in the Secret, and the one before it, and never one older."""

    async def run() -> None:
        store, acl, clock = Store(), Acl(), Clock()
        a, b = (
            TickCredentials(store, acl, cluster=False, rotate_every=DAY, clock=clock)
            for _ in range(2)
        )
        seen: list[str] = []
        for step in steps:
            if step == "day":
                clock.now += DAY
                continue
            replica = b if step == "ensure-b" else a
            if step == "refresh":
                await replica.refresh({"ns"})
            else:
                await replica.ensure("ns")
            password = _password(store, "ns")
            if not seen or seen[-1] != password:
                seen.append(password)
            user = acl_user("ns")
            assert acl.accepts(user, seen[-1])
            if len(seen) > 1:
                assert acl.accepts(user, seen[-2])
            assert not any(acl.accepts(user, old) for old in seen[:-2])

    asyncio.run(run())


@pytest.mark.asyncio
async def test_a_stack_without_credentials_is_held_with_what_to_grant_then_released() -> None:
    store, acl = Store(), Acl()
    credentials = TickCredentials(store, acl, cluster=False, rotate_every=DAY)
    record = StackRecord(ref=StackRef("team-a", "s"), uid="u")
    record.spec = parse_spec({"goal": "g", "executor": "job"})
    acl.refuse = True
    (event,) = await check_tick_credentials(credentials, record)
    assert event.reason == EventReason.JOB_CREDENTIALS_UNAVAILABLE
    assert "+acl|setuser" in event.message
    hold = record.hold
    assert hold is not None
    assert hold.reason == Blocked.JOB_CREDENTIALS_UNAVAILABLE
    assert SECRET_NAME not in store.secrets.get("team-a", {}).get("metadata", {}).get("name", "")
    assert await check_tick_credentials(credentials, record) == []  # said once
    acl.refuse = False
    store.forbidden = True
    (event,) = await check_tick_credentials(credentials, record)
    assert "RBAC" in event.message
    store.forbidden = False
    (event,) = await check_tick_credentials(credentials, record)
    assert event.reason == EventReason.JOB_CREDENTIALS_READY
    assert record.hold is None


@pytest.mark.asyncio
async def test_a_pool_stack_needs_no_credentials() -> None:
    acl = Acl()
    acl.refuse = True
    credentials = TickCredentials(Store(), acl, cluster=False, rotate_every=DAY)
    record = StackRecord(ref=StackRef("team-a", "s"), uid="u")
    record.spec = parse_spec({"goal": "g"})
    assert await check_tick_credentials(credentials, record) == []
    assert record.hold is None


def test_every_hold_has_a_phase() -> None:
    """A hold without one broke the status loop for every stack (a KeyError)."""
    assert set(HOLD_PHASES) == set(Blocked)
