"""Redis connections: a busy process waits for a free connection instead of failing."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError

from agentstack_core.connection import connect
from agentstack_devkit.redisserver import RedisServer
from agentstack_runner.config import RunnerConfig
from agentstack_runner.service import Runner
from tests.integration.conftest import RedisBackend

pytestmark = pytest.mark.asyncio


async def test_more_blocking_commands_than_connections_wait_their_turn(
    redis_server: RedisServer,
) -> None:
    # Standalone only: redis-py's cluster client has no blocking pool; there the runner
    # relies on the pool being sized to its concurrency (the test below).
    client = connect(redis_server.url, cluster=False, max_connections=4)
    try:
        replies = await asyncio.gather(
            *(client.xread({"{default/demo}:idle": "$"}, block=100) for _ in range(12))
        )
    finally:
        await client.aclose()
    assert all(reply in ([], {}, None) for reply in replies)


async def test_runner_pool_is_sized_to_its_concurrency(redis_backend: RedisBackend) -> None:
    runner = Runner(RunnerConfig(redis_url=redis_backend.url, redis_cluster=False, concurrency=300))
    try:
        assert isinstance(runner.client, Redis)
        assert runner.client.connection_pool.max_connections >= 300
    finally:
        await runner.client.aclose()


async def test_a_password_file_is_read_again_by_the_next_connection(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REDIS_PASSWORD_FILE (a mounted Secret): after a rotation — the new password
    added, the file rewritten, the old password removed — a connection the process opens
    again logs in with the new one; a password read once, at start, would be refused."""
    user = f"rotated-{secrets.token_hex(3)}"
    old, new = secrets.token_hex(16), secrets.token_hex(16)
    admin = Redis.from_url(redis_server.url, decode_responses=True)
    await admin.execute_command("ACL", "SETUSER", user, "on", f">{old}", "~*", "+@all")
    password_file = tmp_path / "redis-password"
    password_file.write_text(f"{old}\n")
    monkeypatch.setenv("REDIS_USERNAME", user)
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(password_file))
    from_file = connect(redis_server.url, cluster=False)
    monkeypatch.delenv("REDIS_PASSWORD_FILE")
    monkeypatch.setenv("REDIS_PASSWORD", old)
    read_once = connect(redis_server.url, cluster=False)
    try:
        for client in (from_file, read_once):
            assert await client.execute_command("ACL", "WHOAMI") == user
        await admin.execute_command("ACL", "SETUSER", user, f">{new}")
        password_file.write_text(f"{new}\n")
        await admin.execute_command("ACL", "SETUSER", user, f"<{old}")
        # Connections already open stay logged in; the next ones (after a restart of
        # Redis, a network cut) log in again.
        for client in (from_file, read_once):
            assert await client.execute_command("ACL", "WHOAMI") == user
            await client.connection_pool.disconnect()
        assert await from_file.execute_command("ACL", "WHOAMI") == user
        with pytest.raises(AuthenticationError):
            await read_once.ping()
    finally:
        await from_file.aclose()
        await read_once.aclose()
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()


async def test_credentials_in_the_url_win_over_a_password_file(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password_file = tmp_path / "redis-password"
    password_file.write_text("not-the-password")
    monkeypatch.setenv("REDIS_USERNAME", "nobody")
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(password_file))
    host_port = redis_server.url.removeprefix("redis://")
    client = connect(f"redis://default:unused@{host_port}", cluster=False)
    try:
        assert await client.execute_command("ACL", "WHOAMI") == "default"
    finally:
        await client.aclose()


async def test_a_user_in_the_url_logs_in_with_the_password_file(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = f"named-{secrets.token_hex(3)}", secrets.token_hex(16)
    admin = Redis.from_url(redis_server.url, decode_responses=True)
    await admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all")
    password_file = tmp_path / "redis-password"
    password_file.write_text(password)
    monkeypatch.setenv("REDIS_USERNAME", "not-this-one")
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(password_file))
    host_port = redis_server.url.removeprefix("redis://")
    client = connect(f"redis://{user}@{host_port}", cluster=False)
    try:
        assert await client.execute_command("ACL", "WHOAMI") == user
    finally:
        await client.aclose()
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()
