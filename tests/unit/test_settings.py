"""Every process reads its settings one way: unset, empty or blank is the default, a
value that does not parse names its variable, and only ``from_env`` reads the
environment."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from agentstack_api.config import ApiConfig
from agentstack_core.settings import CommonSettings, SettingsError, variable_names
from agentstack_devkit import settingsdoc
from agentstack_operator.config import OperatorConfig
from agentstack_runner.config import RunnerConfig

MODELS = (OperatorConfig, RunnerConfig, ApiConfig)


def test_unset_empty_and_blank_mean_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTSTACK_RUNNER_CONCURRENCY", raising=False)
    assert RunnerConfig.from_env().concurrency == 64
    for blank in ("", "   "):
        monkeypatch.setenv("AGENTSTACK_RUNNER_CONCURRENCY", blank)
        monkeypatch.setenv("AGENTSTACK_API_WEBHOOKS", blank)
        monkeypatch.setenv("AGENTSTACK_WATCH_NAMESPACES", blank)
        assert RunnerConfig.from_env().concurrency == 64
        api = ApiConfig.from_env()
        assert (api.webhooks, api.namespaces) == (True, [])


def test_values_parse_by_their_fields_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTACK_WATCH_NAMESPACES", "team-a, team-b,,")
    monkeypatch.setenv("AGENTSTACK_API_AUTH", "Kubernetes")
    monkeypatch.setenv("AGENTSTACK_API_WEBHOOKS", "false")
    monkeypatch.setenv("AGENTSTACK_JOB_RESOURCES", '{"limits": {"memory": "1Gi"}}')
    monkeypatch.setenv("AGENTSTACK_LLM_MAX_ATTEMPTS", "5")
    api = ApiConfig.from_env()
    assert (api.namespaces, api.auth, api.webhooks) == (["team-a", "team-b"], "kubernetes", False)
    assert OperatorConfig.from_env().job_resources == {"limits": {"memory": "1Gi"}}
    assert RunnerConfig.from_env().retry.max_attempts == 5


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "AGENTSTACK_RUNNER_CONCURRENCY",
            "lots",
            "AGENTSTACK_RUNNER_CONCURRENCY='lots' is not a whole number",
        ),
        ("AGENTSTACK_LLM_BASE_DELAY", "soon", "AGENTSTACK_LLM_BASE_DELAY='soon' is not a number"),
        (
            "AGENTSTACK_REDIS_CLUSTER",
            "maybe",
            "AGENTSTACK_REDIS_CLUSTER='maybe' is not true or false",
        ),
        (
            "AGENTSTACK_RUNNER_CREDENTIALS",
            "vault",
            "AGENTSTACK_RUNNER_CREDENTIALS='vault' is not one of env, kubernetes, job",
        ),
        (
            "AGENTSTACK_PRICES",
            "groq: 3",
            "AGENTSTACK_PRICES='groq: 3': AGENTSTACK_PRICES: groq: expected a map of models",
        ),
    ],
)
def test_a_value_that_does_not_parse_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        RunnerConfig.from_env()
    assert str(raised.value) == message


def test_a_json_setting_that_is_not_an_object_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTACK_JOB_RESOURCES", "[1, 2]")
    with pytest.raises(
        SettingsError, match="AGENTSTACK_JOB_RESOURCES='\\[1, 2\\]': must be a JSON object"
    ):
        OperatorConfig.from_env()


def test_a_password_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret-value")
    monkeypatch.setenv("AGENTSTACK_API_PORT", "http")
    with pytest.raises(SettingsError) as raised:
        ApiConfig.from_env()
    assert "s3cret-value" not in str(raised.value)
    settings = CommonSettings.from_env()
    assert isinstance(settings.redis_password, SecretStr)
    assert "s3cret-value" not in repr(settings) + str(settings)
    assert settings.redis_password.get_secret_value() == "s3cret-value"


def test_settings_built_in_code_do_not_read_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTSTACK_LEASE_SECONDS", "99")
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")
    config = OperatorConfig(dispatch_batch=7)
    assert (config.lease_seconds, config.redis_url, config.dispatch_batch) == (15.0, "", 7)
    assert OperatorConfig.from_env().lease_seconds == 99.0


def test_every_setting_names_a_variable_and_says_what_it_means() -> None:
    seen: dict[str, str] = {}
    for model in MODELS:
        for field_name, field in model.model_fields.items():
            names = variable_names(field.validation_alias)
            if not names:  # set in code only (e.g. the metrics host)
                continue
            assert field.description, f"{model.__name__}.{field_name} has no meaning"
            for name in names:
                # One variable, one meaning: declared once, shared by inheritance.
                assert seen.setdefault(name, field.description) == field.description, name
    assert {"REDIS_URL", "AGENTSTACK_API_PORT"} <= set(seen)


def test_the_readme_lists_every_setting_as_the_models_declare_it() -> None:
    readme = settingsdoc.README.read_text(encoding="utf-8")
    assert settingsdoc.render(readme) == readme, "run make docs"
    assert settingsdoc.main(["--check"]) == 0
    for model in MODELS:
        for field in model.model_fields.values():
            for name in variable_names(field.validation_alias):
                assert f"`{name}`" in readme
