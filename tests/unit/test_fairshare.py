"""The fair queue: deficit round robin across namespaces, with priorities and deadlines."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agentstack_operator.fairshare import (
    MIN_ROOM,
    ROOM_AHEAD_SECONDS,
    FairQueue,
    Held,
    Room,
    Running,
)

FAR = 1e12
"""A deadline nothing reaches."""


def _held(namespace: str, number: int, *, rank: int = 1, deadline: float = FAR) -> Held[str]:
    return Held(f"{namespace}-{number}", namespace, rank, deadline)


def _fill(queue: FairQueue[str], namespace: str, count: int) -> None:
    for number in range(count):
        queue.push(_held(namespace, number))


def test_a_quiet_namespace_goes_out_in_the_first_room_beside_a_noisy_backlog() -> None:
    queue: FairQueue[str] = FairQueue(lambda _ns: 1)
    _fill(queue, "noisy", 5000)
    queue.push(_held("quiet", 0))
    taken, expired = queue.take(2, now=0.0)
    assert [h.item for h in taken] == ["noisy-0", "quiet-0"]
    assert expired == []
    assert (queue.waiting("noisy"), queue.waiting("quiet"), len(queue)) == (4999, 0, 4999)


@given(
    weights=st.lists(st.integers(1, 20), min_size=2, max_size=5),
    rooms=st.lists(st.integers(0, 50), min_size=1, max_size=30),
)
def test_backlogged_namespaces_share_in_proportion_to_their_weights(
    weights: list[int], rooms: list[int]
) -> None:
    names = [f"ns{i}" for i in range(len(weights))]
    weight = dict(zip(names, weights, strict=True))
    queue: FairQueue[str] = FairQueue(weight.__getitem__)
    for name in names:
        _fill(queue, name, 1_500)  # more than the rooms add up to: never empties
    sent: Counter[str] = Counter()
    for room in rooms:
        taken, _expired = queue.take(room, now=0.0)
        assert len(taken) == room  # work-conserving: the room is always filled
        sent.update(h.namespace for h in taken)
        # Each namespace's turns differ from any other's by at most one, and a turn
        # sends its weight: normalised shares stay within two turns of each other.
        shares = [sent[name] / weight[name] for name in names]
        assert max(shares) - min(shares) <= 2


@given(
    ops=st.lists(
        st.one_of(
            st.tuples(
                st.just("push"), st.sampled_from("abc"), st.integers(0, 2), st.integers(0, 9)
            ),
            st.tuples(
                st.just("take"),
                st.integers(0, 6),
                st.integers(0, 9),
                st.fixed_dictionaries({}, optional=dict.fromkeys("abc", st.integers(0, 3))),
            ),
            st.tuples(st.just("expire"), st.integers(0, 9)),
        ),
        max_size=80,
    )
)
def test_every_item_leaves_once_in_order_before_its_deadline_and_within_its_allowance(
    ops: list[tuple[Any, ...]],
) -> None:
    queue: FairQueue[str] = FairQueue(lambda ns: {"a": 1, "b": 2, "c": 3}[ns])
    pushed: dict[str, Held[str]] = {}
    out: list[str] = []
    for number, op in enumerate(ops):
        if op[0] == "push":
            _op, namespace, rank, deadline = op
            held = Held(f"{namespace}{number}", namespace, rank, float(deadline))
            pushed[held.item] = held
            queue.push(held)
        elif op[0] == "take":
            _op, room, now, quotas = op
            taken, expired = queue.take(room, float(now), quotas.get)
            assert len(taken) <= room
            # No namespace sends more than its allowance (the rest have none).
            sent = Counter(h.namespace for h in taken)
            assert all(sent[ns] <= quota for ns, quota in quotas.items())
            assert all(h.deadline > now for h in taken)
            assert all(h.deadline <= now for h in expired)
            # Within a namespace: higher priority first, then first in, first out.
            for namespace in "abc":
                mine = [h for h in taken if h.namespace == namespace]
                order = [(h.rank, int(h.item[1:])) for h in mine]
                assert order == sorted(order)
            out += [h.item for h in taken + expired]
        else:
            out += [h.item for h in queue.expire(float(op[1]))]
        assert len(queue) == len(pushed) - len(out)
    out += [h.item for h in queue.clear()]
    assert sorted(out) == sorted(pushed)  # each exactly once
    assert len(queue) == 0


def test_an_expired_item_costs_neither_room_nor_credit() -> None:
    queue: FairQueue[str] = FairQueue(lambda _ns: 1)
    queue.push(_held("a", 0, deadline=5.0))
    queue.push(_held("a", 1, deadline=5.0))
    queue.push(_held("a", 2))
    queue.push(_held("b", 0))
    taken, expired = queue.take(2, now=10.0)
    assert [h.item for h in taken] == ["a-2", "b-0"]
    assert [h.item for h in expired] == ["a-0", "a-1"]


def test_credit_is_forfeited_when_a_namespace_runs_dry() -> None:
    """A namespace that had nothing to send on its turn does not bank its share."""
    weights = {"a": 5, "b": 1}
    queue: FairQueue[str] = FairQueue(weights.__getitem__)
    queue.push(_held("a", 0))
    _fill(queue, "b", 10)
    assert [h.item for h in queue.take(2, now=0.0)[0]] == ["a-0", "b-0"]
    _fill(queue, "a", 10)  # a comes back: its turn starts from nothing
    taken = [h.namespace for h in queue.take(6, now=0.0)[0]]
    assert Counter(taken) == {"a": 5, "b": 1}


def test_a_turn_cut_short_by_the_room_goes_on_next_time() -> None:
    queue: FairQueue[str] = FairQueue({"a": 3, "b": 1}.__getitem__)
    _fill(queue, "a", 10)
    _fill(queue, "b", 10)
    first = [h.namespace for h in queue.take(2, now=0.0)[0]]
    second = [h.namespace for h in queue.take(2, now=0.0)[0]]
    assert first + second == ["a", "a", "a", "b"]


def test_the_room_follows_the_runners_pace_within_its_bounds() -> None:
    room = Room(most=1000)
    assert room.free(waiting=0, now=0.0) == MIN_ROOM  # nothing known yet: the least
    room.sent(MIN_ROOM)
    # The runners took them all within 10 ms: the lanes may hold that pace's worth.
    pace = MIN_ROOM / 0.01
    assert room.free(waiting=0, now=0.01) == round(pace * ROOM_AHEAD_SECONDS)
    room.sent(room.target)
    grown = room.free(waiting=0, now=0.02)  # runners that keep up: it grows each batch
    assert grown == round(room.target) > round(pace * ROOM_AHEAD_SECONDS)
    room.sent(100_000)
    assert room.free(waiting=0, now=0.03) == 1000  # never beyond the most
    room.sent(1000)
    # Behind: of the 1,000, the runners took 10 in a second; the lanes hold 990.
    assert room.free(waiting=990, now=1.03) == 0
    assert room.target == MIN_ROOM
    # They caught up, taking 980 in a second: that pace's worth, less what waits.
    assert room.free(waiting=10, now=2.03) == round(980 * ROOM_AHEAD_SECONDS) - 10


def test_a_namespace_at_its_quota_passes_its_turn_without_banking_credit() -> None:
    queue: FairQueue[str] = FairQueue(lambda _ns: 1)
    _fill(queue, "capped", 10)
    _fill(queue, "free", 10)
    allowance = {"capped": 1, "free": None}
    taken, _ = queue.take(6, now=0.0, allowance=allowance.__getitem__)
    assert Counter(h.namespace for h in taken) == {"capped": 1, "free": 5}
    # Every namespace held back: nothing goes out, and the call returns.
    assert queue.take(6, now=0.0, allowance=lambda _ns: 0) == ([], [])
    # Freed, the capped namespace takes turns as before, with no credit saved up.
    taken, _ = queue.take(4, now=0.0)
    assert Counter(h.namespace for h in taken) == {"capped": 2, "free": 2}


def test_running_ticks_count_until_their_result_or_their_latest_end() -> None:
    running = Running()
    running.started("team", "team/a/1", until=100.0)
    running.started("team", "team/b/1", until=50.0)
    assert running.count("team", now=10.0) == 2
    running.ended("team", "team/a/1")
    running.ended("team", "team/unknown/1")  # a tick it never counted
    assert running.count("team", now=10.0) == 1
    assert running.count("team", now=50.0) == 0  # its result never came: freed
    assert running.count("elsewhere", now=0.0) == 0
