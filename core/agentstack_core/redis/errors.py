"""What the fenced writes of the Redis layer refuse, as exceptions every caller shares."""

from __future__ import annotations

GONE = -1
"""The reply of a write script that found the stack gone (see ``alive.lua``)."""


class LeaseLostError(RuntimeError):
    """The stack's lease expired or was taken over: this runner must stop writing."""


class StackGoneError(RuntimeError):
    """The stack was deleted (or re-created under its name): nothing may be written."""
