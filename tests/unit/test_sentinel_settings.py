"""The Redis topology settings: Sentinels as ``host:port`` pairs, confirmed commits as a
count of replicas, and the combinations that cannot work refused at start — without
ever showing a password."""

from __future__ import annotations

import pytest

from agentstack_core.redis.durability import NONE, Durability, durability_of, require
from agentstack_core.settings import CommonSettings, SettingsError


def test_sentinels_are_host_port_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SENTINELS", " sentinel-0.redis:26379, 10.0.0.7:26380 ,")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "agents")
    monkeypatch.setenv("REDIS_WAIT_REPLICAS", "1")
    settings = CommonSettings.from_env()
    assert settings.sentinel_addresses == [("sentinel-0.redis", 26379), ("10.0.0.7", 26380)]
    assert settings.redis_sentinel_master == "agents"
    assert (settings.redis_wait_replicas, settings.redis_wait_timeout_seconds) == (1, 0.5)


def test_by_default_there_are_no_sentinels_and_no_confirmations() -> None:
    settings = CommonSettings()
    assert (settings.redis_sentinels, settings.redis_sentinel_master) == ([], "mymaster")
    assert settings.redis_wait_replicas == 0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_SENTINELS": "a:1,b"}, "REDIS_SENTINELS='a:1,b': 'b' is not host:port"),
        ({"REDIS_SENTINELS": "a:port"}, "REDIS_SENTINELS='a:port': 'a:port' is not host:port"),
        ({"REDIS_WAIT_REPLICAS": "-1"}, "REDIS_WAIT_REPLICAS=-1: must be 0 or more"),
        ({"REDIS_WAIT_TIMEOUT_SECONDS": "0"}, "REDIS_WAIT_TIMEOUT_SECONDS=0: must be more than 0"),
        (
            {"AGENTSTACK_REDIS_CLUSTER": "true", "REDIS_WAIT_REPLICAS": "1"},
            "AGENTSTACK_REDIS_CLUSTER=true cannot be combined with REDIS_SENTINELS or "
            "REDIS_WAIT_REPLICAS",
        ),
    ],
)
def test_a_topology_that_cannot_work_stops_the_process(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        CommonSettings.from_env()
    assert str(raised.value) == message


def test_a_rule_across_variables_never_shows_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTSTACK_REDIS_CLUSTER", "true")
    monkeypatch.setenv("REDIS_SENTINELS", "a:1")
    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", "sentinel-secret")
    monkeypatch.setenv("REDIS_PASSWORD", "server-secret")
    with pytest.raises(SettingsError) as raised:
        CommonSettings.from_env()
    assert "secret" not in str(raised.value)


def test_the_durability_travels_with_the_client() -> None:
    class Client:
        pass

    plain, durable = Client(), require(Client(), Durability(replicas=2, timeout_seconds=0.0001))
    assert durability_of(plain) is NONE
    assert not durability_of(plain).required
    assert durability_of(durable).required
    assert durability_of(durable).timeout_ms == 1  # WAIT's 0 would block for ever
