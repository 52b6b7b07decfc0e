"""What the fenced writes of the Redis layer refuse, as exceptions every caller shares."""

from __future__ import annotations

GONE = -1
"""The reply of a write script that found the stack gone (see ``alive.lua``)."""


class LeaseLostError(RuntimeError):
    """The stack's lease expired or was taken over: this runner must stop writing."""


class StackGoneError(RuntimeError):
    """The stack was deleted (or re-created under its name): nothing may be written."""


class NotDurableError(RuntimeError):
    """A commit that matters was not confirmed by enough replicas in time.

    It is on the primary (or was, if that failed meanwhile) but a failover could still
    lose it, so it counts as *not made*: its writer acts as if it never happened (a
    tick is handed back and resumed from what Redis then holds; an approved call is not
    made; a person's decision or input is answered 503, to be looked at again)."""
