"""The API's settings (:class:`ApiConfig`), from its environment.

Every variable is declared once, with its meaning and default, as a field below or in
the shared parts of :mod:`agentstack_core.settings`; the README's table is generated
from them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator

from agentstack_core.settings import CommaList, CommonSettings, WatchSettings, lowercase, variable


class ApiConfig(CommonSettings, WatchSettings):
    """The API's settings."""

    host: str = variable("AGENTSTACK_API_HOST", "the address the API listens on", "0.0.0.0")  # noqa: S104 - serves dashboards outside the pod
    port: int = variable("AGENTSTACK_API_PORT", "the port the API listens on", 8080)
    auth: Annotated[Literal["none", "kubernetes"], BeforeValidator(lowercase)] = variable(
        "AGENTSTACK_API_AUTH",
        "`none` (local development) or `kubernetes` (TokenReview + SubjectAccessReview; "
        "the chart's default)",
        "none",
        shown="`none`",
    )
    auth_cache_seconds: float = variable(
        "AGENTSTACK_API_AUTH_CACHE_SECONDS",
        "how long authentication and access answers are reused",
        30.0,
    )
    cors_origins: CommaList = variable(
        "AGENTSTACK_API_CORS_ORIGINS",
        "comma-separated origins allowed to call the API from a browser",
        default_factory=list,
        shown="none",
    )
    public_url: str = variable(
        "AGENTSTACK_API_PUBLIC_URL",
        "the API's URL as callers reach it (e.g. `https://agents.example.com`): the "
        "endpoint URL [A2A](#a2a-each-stack-is-an-agent-other-agents-can-call) cards "
        "name; empty: the URL each request came in on",
        "",
        shown="none",
    )
    webhooks: bool = variable(
        "AGENTSTACK_API_WEBHOOKS",
        "serve stacks' [signed webhooks](#signed-webhooks) (reads each webhook's Secret by name)",
        True,
        shown="`true`",
    )
