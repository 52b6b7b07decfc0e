"""Reading settings from environment variables, the same way in every process.

Every process is configured only through documented environment variables (what a
Deployment sets); these helpers give unset and empty the same meaning — the default —
and fail with the variable's name when a value does not parse.
"""

from __future__ import annotations

import os


def _value(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def env_float(name: str, default: float) -> float:
    value = _value(name)
    try:
        return float(value) if value is not None else default
    except ValueError as exc:
        raise ValueError(f"{name}={value!r} is not a number") from exc


def env_int(name: str, default: int) -> int:
    value = _value(name)
    try:
        return int(value) if value is not None else default
    except ValueError as exc:
        raise ValueError(f"{name}={value!r} is not a whole number") from exc


def env_bool(name: str, default: bool = False) -> bool:
    value = _value(name)
    return value.lower() in ("1", "true", "yes") if value is not None else default


def env_list(name: str) -> list[str]:
    """A comma-separated list (empty when unset)."""
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def env_choice(name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first when unset), case-insensitive."""
    value = _value(name)
    if value is None:
        return choices[0]
    if value.lower() not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value.lower()
