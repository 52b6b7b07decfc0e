"""One way for every process to read its settings from the environment, and to say them.

Each process — operator, runner, API — is configured only through environment
variables (what a Deployment sets), and has exactly one settings model: a subclass of
:class:`Settings` whose fields each name their variable and say what it means
(:func:`variable`). The same fields give the README its table of variables (``make
docs``; a test keeps the two equal), so a setting is written, parsed, defaulted and
documented in one place.

Variables several processes read (Redis, the watched namespaces, prices, tracing…) are
declared once, in the mixins below, and each process's model inherits the ones it uses.

The rules, the same for every variable:

- unset, empty or blank means the default;
- a value that does not parse stops the process at start with the variable's name and
  value (:class:`SettingsError`) — never a default silently used instead;
- lists are comma-separated, JSON objects are JSON, booleans are ``true``/``false``
  (also ``1``/``0``, ``yes``/``no``, ``on``/``off``).

Only :meth:`Settings.from_env` reads the environment: a model built in code from
keyword arguments holds those values and the defaults, so a test's settings never
depend on the shell it runs in. pydantic-settings reads and parses the variables (a
well-kept library made for exactly this); this module only fixes its rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from agentstack_core.endpoints import ALLOWED_BASE_URLS_ENV, EndpointPolicy
from agentstack_core.pricing import PriceTable

SHOWN_DEFAULT = "shown_default"
"""Key of a field's ``json_schema_extra`` with the default as the docs show it, where the
value itself would mislead (computed per process, or a long structure)."""


class SettingsError(ValueError):
    """Settings that do not parse; the message names each variable and its value."""


def variable(
    name: str | tuple[str, ...],
    meaning: str,
    default: Any = ...,
    *,
    default_factory: Callable[[], Any] | None = None,
    shown: str | None = None,
) -> Any:
    """A field read from the environment variable ``name`` (or the first set of several
    names), described by ``meaning``; ``shown`` is its default as the docs say it."""
    alias = name if isinstance(name, str) else AliasChoices(*name)
    extra: JsonDict | None = {SHOWN_DEFAULT: shown} if shown is not None else None
    if default_factory is not None:
        return Field(
            default_factory=default_factory,
            validation_alias=alias,
            description=meaning,
            json_schema_extra=extra,
        )
    return Field(default, validation_alias=alias, description=meaning, json_schema_extra=extra)


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _json_object(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValueError("must be a JSON object")
    return parsed


def lowercase(value: object) -> object:
    """A string as lower case (for choices written in any case)."""
    return value.strip().lower() if isinstance(value, str) else value


CommaList = Annotated[list[str], BeforeValidator(_comma_list)]
"""A comma-separated list (blank items dropped)."""
JsonObject = Annotated[dict[str, Any], BeforeValidator(_json_object)]
"""A JSON object."""


def _not_negative(value: float) -> float:
    if not value >= 0:  # NaN too
        raise ValueError("must be 0 or more")
    return value


NotNegative = Annotated[float, AfterValidator(_not_negative)]
"""A number of 0 or more (what 0 means is the field's to say)."""


def _positive(value: float) -> float:
    if not value > 0:  # NaN too
        raise ValueError("must be more than 0")
    return value


def _host_ports(value: list[str]) -> list[str]:
    for item in value:
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not host:port")
    return value


SentinelList = Annotated[list[str], BeforeValidator(_comma_list), AfterValidator(_host_ports)]
"""Comma-separated ``host:port`` items."""


def _value(raw: object) -> str:
    """A value as an error message shows it: numbers bare, anything else quoted."""
    if isinstance(raw, str):
        try:
            float(raw)
        except ValueError:
            return repr(raw)
        return raw
    return repr(raw)


_REASONS = {
    "int_parsing": "is not a whole number",
    "int_from_float": "is not a whole number",
    "float_parsing": "is not a number",
    "bool_parsing": "is not true or false",
}


def _reason(error: ErrorDetails) -> str:
    """What is wrong, phrased to follow ``NAME=value``."""
    context = error.get("ctx", {})
    if error["type"] == "value_error":
        return f": {context.get('error', error['msg'])}"
    if error["type"] == "literal_error":
        choices = str(context.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f" is not one of {choices}"
    return f" {_REASONS.get(error['type'], error['msg'].lower())}"


def _describe(exc: ValidationError, secret: frozenset[str]) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        name = ".".join(str(part) for part in error["loc"])
        if not name:  # a rule across variables: its input is the whole environment
            lines.append(str(error.get("ctx", {}).get("error", error["msg"])))
            continue
        shown = "(hidden)" if name in secret else _value(error.get("input"))
        lines.append(f"{name}={shown}{_reason(error)}")
    return "; ".join(lines)


class _Environment(EnvSettingsSource):
    """The process's environment, where blank counts as unset like empty (a Helm value
    rendered as " ")."""

    def __call__(self) -> dict[str, Any]:
        return {
            name: value
            for name, value in super().__call__().items()
            if not (isinstance(value, str) and not value.strip())
        }


class Settings(BaseSettings):
    """A process's settings: built from the environment by :meth:`from_env` only."""

    model_config = SettingsConfigDict(
        case_sensitive=True,
        env_ignore_empty=True,
        enable_decoding=False,  # lists and JSON are parsed by the fields' own rules
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
    )

    def __init__(self, **values: Any) -> None:
        # Explicit values and defaults only: the environment is read by from_env.
        BaseModel.__init__(self, **values)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _Environment(settings_cls))

    @classmethod
    def from_env(cls) -> Self:
        """The settings the environment gives (:class:`SettingsError` if one is wrong)."""
        settings = cls.__new__(cls)
        try:
            BaseSettings.__init__(settings)
        except ValidationError as exc:
            raise SettingsError(_describe(exc, cls.secret_variables())) from None
        return settings

    @classmethod
    def secret_variables(cls) -> frozenset[str]:
        """The variables whose values are never shown (a password)."""
        return frozenset(
            name
            for field in cls.model_fields.values()
            if field.annotation is SecretStr
            for name in variable_names(field.validation_alias)
        )


def variable_names(alias: object) -> tuple[str, ...]:
    """The environment variable(s) a field's ``validation_alias`` names."""
    if isinstance(alias, str):
        return (alias,)
    if isinstance(alias, AliasChoices):
        return tuple(choice for choice in alias.choices if isinstance(choice, str))
    return ()


class CommonSettings(Settings):
    """What every process reads: how it reaches Redis, and which event loop it runs."""

    redis_url: str = variable(
        "REDIS_URL",
        "Redis (`redis://[:password@]host:port/db`, `rediss://` for TLS)",
        "",
        shown="required",
    )
    redis_cluster: bool = variable(
        "AGENTSTACK_REDIS_CLUSTER", "treat `REDIS_URL` as a Redis Cluster seed", False
    )
    redis_username: str = variable(
        "REDIS_USERNAME", "Redis ACL user, when not in the URL", "", shown="`default`"
    )
    redis_password: SecretStr = variable(
        "REDIS_PASSWORD", "Redis password, when not in the URL", SecretStr(""), shown=""
    )
    redis_password_file: str = variable(
        "REDIS_PASSWORD_FILE",
        "a file holding the Redis password (wins over `REDIS_PASSWORD`), read again for "
        "every new connection: a rotated password needs no restart",
        "",
    )
    redis_sentinels: SentinelList = variable(
        "REDIS_SENTINELS",
        "comma-separated `host:port` of Redis Sentinels: the primary is the one they name "
        "`REDIS_SENTINEL_MASTER`, found again after a failover (`REDIS_URL` then gives "
        "only the scheme, database and credentials; its host is not used)",
        default_factory=list,
        shown="none: `REDIS_URL` is the server",
    )
    redis_sentinel_master: str = variable(
        "REDIS_SENTINEL_MASTER", "the name the Sentinels monitor the primary under", "mymaster"
    )
    redis_sentinel_password: SecretStr = variable(
        "REDIS_SENTINEL_PASSWORD",
        "the Sentinels' own password (`requirepass` of sentinel.conf), if they have one",
        SecretStr(""),
        shown="",
    )
    redis_wait_replicas: int = variable(
        "REDIS_WAIT_REPLICAS",
        "replicas that must confirm a commit that matters (a step, a tick's finish, a "
        "claimed approved call, a decision, an input, a dispatch) before it is acted on "
        "(`WAIT`); fewer in time: the commit counts as not made "
        "([docs/reliability.md](docs/reliability.md)); 0: off",
        0,
    )
    redis_wait_timeout_seconds: Annotated[float, AfterValidator(_positive)] = variable(
        "REDIS_WAIT_TIMEOUT_SECONDS",
        "how long a commit waits for `REDIS_WAIT_REPLICAS` confirmations",
        0.5,
    )
    event_loop: Annotated[Literal["uvloop", "asyncio"], BeforeValidator(lowercase)] = variable(
        "AGENTSTACK_EVENT_LOOP",
        "`uvloop`, or `asyncio` for the standard library's event loop",
        "uvloop",
        shown="`uvloop`",
    )

    @model_validator(mode="after")
    def _one_topology(self) -> Self:
        # A cluster has replicas of its own, and WAIT goes to one node per slot: neither
        # Sentinel nor the confirmed commits are built for it (docs/reliability.md).
        if self.redis_cluster and (self.redis_sentinels or self.redis_wait_replicas):
            raise ValueError(
                "AGENTSTACK_REDIS_CLUSTER=true cannot be combined with REDIS_SENTINELS or "
                "REDIS_WAIT_REPLICAS"
            )
        return self

    @field_validator("redis_wait_replicas")
    @classmethod
    def _replicas_not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be 0 or more")
        return value

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``REDIS_SENTINELS`` as (host, port) pairs."""
        pairs = (item.rpartition(":") for item in self.redis_sentinels)
        return [(host, int(port)) for host, _, port in pairs]


class WatchSettings(Settings):
    """Which namespaces a process that watches stacks sees."""

    namespaces: CommaList = variable(
        "AGENTSTACK_WATCH_NAMESPACES",
        "comma-separated namespaces to watch",
        default_factory=list,
        shown="all",
    )


class ModelSettings(Settings):
    """What the processes that price or send calls to models share."""

    prices: str = variable(
        "AGENTSTACK_PRICES",
        "YAML or JSON `{provider: {model: {input, output}}}` in USD per million tokens, "
        "added to or replacing the built-in prices ([docs/cost.md](docs/cost.md)); the "
        "operator passes it to tick Jobs",
        "",
        shown="built-in table",
    )
    allowed_base_urls: CommaList = variable(
        ALLOWED_BASE_URLS_ENV,
        "comma-separated endpoints, besides the providers' public ones, that the "
        "platform's own keys may be sent to; a stack with another `baseURL` needs its own "
        "`secretRef`",
        default_factory=list,
        shown="none",
    )
    otlp_endpoint: str = variable(
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        "OTLP/HTTP receiver of the ticks' traces ([docs/tracing.md](docs/tracing.md)); the "
        "SDK's other `OTEL_*` variables apply; unset: tracing off",
        "",
        shown="off",
    )
    trace_content: bool = variable(
        "AGENTSTACK_TRACE_CONTENT",
        "also record prompts, completions and tool arguments/results in spans",
        False,
    )

    @field_validator("prices")
    @classmethod
    def _prices_parse(cls, value: str) -> str:
        # Checked at start in every process that reads them: a mistake stops the
        # process rather than pricing calls wrong (the operator's tick Jobs included).
        PriceTable.with_overrides(value)
        return value

    @property
    def price_table(self) -> PriceTable:
        """The built-in prices with ``AGENTSTACK_PRICES`` added or replacing them."""
        return PriceTable.with_overrides(self.prices)

    @property
    def endpoints(self) -> EndpointPolicy:
        """Where the platform's own keys may be sent (``AGENTSTACK_ALLOWED_BASE_URLS``)."""
        return EndpointPolicy.of(self.allowed_base_urls)
