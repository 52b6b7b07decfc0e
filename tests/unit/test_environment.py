"""Settings from the environment: defaults for unset or empty, clear errors otherwise."""

from __future__ import annotations

import pytest

from agentstack_core.environment import env_bool, env_float, env_int, env_list


def test_unset_and_empty_mean_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTSTACK_TEST", raising=False)
    assert env_int("AGENTSTACK_TEST", 7) == 7
    monkeypatch.setenv("AGENTSTACK_TEST", "  ")
    assert env_float("AGENTSTACK_TEST", 1.5) == 1.5
    assert env_bool("AGENTSTACK_TEST", True) is True
    assert env_list("AGENTSTACK_TEST") == []


def test_values_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTACK_TEST", "a, b,,c ")
    assert env_list("AGENTSTACK_TEST") == ["a", "b", "c"]
    monkeypatch.setenv("AGENTSTACK_TEST", "True")
    assert env_bool("AGENTSTACK_TEST") is True
    monkeypatch.setenv("AGENTSTACK_TEST", "2.5")
    assert env_float("AGENTSTACK_TEST", 0) == 2.5


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTACK_TEST", "lots")
    with pytest.raises(ValueError, match="AGENTSTACK_TEST='lots' is not a whole number"):
        env_int("AGENTSTACK_TEST", 1)
