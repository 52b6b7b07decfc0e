"""Approval records: a stack keeps the newest decided ones, never a waiting one."""

from __future__ import annotations

from dataclasses import replace

from agentstack_core.approvals import Approval, ApprovalState, forgotten


def _record(n: int, state: ApprovalState, *, reported: bool = True) -> Approval:
    asked = Approval(f"a{n}", "builder", "kb/lookup", "{}", "team/demo/1", float(n), n + 60.0)
    return replace(asked, state=state, reported=reported)


def test_the_oldest_decided_and_told_records_beyond_the_bound_are_forgotten() -> None:
    records = [
        _record(0, ApprovalState.PENDING),  # waiting: never forgotten, however old
        _record(1, ApprovalState.EXECUTED),
        _record(2, ApprovalState.DENIED, reported=False),  # its agent was not told yet
        _record(3, ApprovalState.RUNNING),
        _record(4, ApprovalState.EXPIRED),
        _record(5, ApprovalState.INTERRUPTED),
        _record(6, ApprovalState.EXECUTED),
    ]
    assert forgotten(records, keep=2) == ["a1", "a4"]
    assert forgotten(records, keep=4) == []
    assert forgotten(list(reversed(records)), keep=2) == ["a1", "a4"]  # by request time
