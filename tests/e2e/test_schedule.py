"""Stacks on a calendar (``spec.schedule``), on the real control plane, Redis and runner.

Fire times are checked against ``zoneinfo`` directly (not against the operator's own
cron code); daylight-saving days are the unit tests' (``tests/unit/test_cron.py``).
"""

from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

import pytest
import redis
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.processes import ManagedProcess
from tests.e2e.stacks import Stacks
from tests.helpers import eventually

BERLIN = ZoneInfo("Europe/Berlin")
PERIOD = 30
"""Seconds between the fires of the outage test's stacks."""


@pytest.fixture(scope="module")
def operator(fleet: Fleet) -> ManagedProcess:
    """The module's operator (the outage test kills it) and a runner."""
    process, _port = fleet.operator()
    fleet.runner()
    return process


@pytest.fixture
def stacks(
    operator: ManagedProcess, k8s_api: client.ApiClient, namespace: str, redis_reader: redis.Redis
) -> Stacks:
    return Stacks(k8s_api, namespace, redis_reader)


def _next_half_past_two_in_berlin(now: float) -> str:
    """The next 02:30 in Berlin after ``now``, in UTC as status writes it."""
    today = datetime.fromtimestamp(now, BERLIN).date()
    for day in (today, today + timedelta(days=1)):
        fire = datetime.combine(day, clock_time(2, 30), BERLIN)
        if fire.timestamp() > now:
            return fire.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")
    raise AssertionError("unreachable: tomorrow's 02:30 is after now")


def test_a_scheduled_stack_ticks_on_its_fires_and_shows_the_next_in_utc(
    stacks: Stacks, control_plane: ControlPlane
) -> None:
    stacks.create("every2", schedule={"cron": "*/2 * * * * *", "timeZone": "Europe/Berlin"})
    stacks.create("nightly", schedule={"cron": "30 2 * * *", "timeZone": "Europe/Berlin"})
    stacks.wait_ticks("every2", 3)
    slots = [int(d["slot"]) for d in stacks.dispatched("every2")]
    assert all(slot % 2000 == 0 for slot in slots), slots  # each tick is a fire
    assert len(slots) == len(set(slots))

    # The nightly stack was created after today's fire: it waits for the next.
    expected = {_next_half_past_two_in_berlin(time.time())}
    status = stacks.wait_condition("nightly", "Ticking", "True")
    expected.add(_next_half_past_two_in_berlin(time.time()))  # in case 02:30 went by
    status = stacks.status("nightly")
    assert status["nextTickTime"] in expected
    assert status.get("ticks", 0) == 0
    assert stacks.condition("nightly", "Ticking")["message"] == (
        "ticks on schedule '30 2 * * *' (Europe/Berlin)"
    )
    row = control_plane.kubectl("get", "ags", "-n", stacks.namespace).stdout
    assert "*/2 * * * * *" in row
    assert "30 2 * * *" in row


def test_the_schema_takes_one_of_interval_and_schedule(stacks: Stacks) -> None:
    with pytest.raises(ApiException) as both:
        stacks.create("both", tickIntervalSeconds=5, schedule={"cron": "0 9 * * *"})
    assert both.value.status == 422
    assert "set either tickIntervalSeconds or schedule, not both" in str(both.value.body)
    with pytest.raises(ApiException) as short:
        stacks.create("short", schedule={"cron": "0 9 * *"})
    assert short.value.status == 422
    assert "spec.schedule.cron" in str(short.value.body)


def test_a_cron_expression_the_schema_cannot_judge_is_a_condition(stacks: Stacks) -> None:
    stacks.create("bad", schedule={"cron": "0 25 * * *", "timeZone": "Europe/Atlantis"})
    ready = stacks.wait_condition("bad", "Ready", "False")
    message = stacks.condition("bad", "Ready")["message"]
    assert stacks.condition("bad", "Ready")["reason"] == "InvalidSpec", ready
    assert "spec.schedule:" in message
    assert "unknown time zone 'Europe/Atlantis'" in message
    stacks.wait_event("bad", "InvalidSpec")


def test_an_operator_outage_across_a_fire_runs_it_late_or_skips_it_past_its_deadline(
    stacks: Stacks, fleet: Fleet, operator: ManagedProcess
) -> None:
    """Both stacks fire every 30 s; the operator is killed after a fire and comes back
    more than five seconds after the next. The stack without a starting deadline runs
    that fire late; the one with a deadline of two seconds skips it, says so, and runs
    the fire after it."""
    cron = {"cron": f"*/{PERIOD} * * * * *"}
    stacks.create("late", schedule=cron)
    stacks.create("strict", schedule={**cron, "startingDeadlineSeconds": 2})
    for name in ("late", "strict"):
        stacks.wait_ticks(name, 1, timeout=PERIOD * 3)

    operator.send_signal(signal.SIGKILL)
    operator.wait_exit()
    killed = time.time()
    missed = (int(killed) // PERIOD + 1) * PERIOD  # the next fire, passed while it is down
    eventually(
        lambda: True if time.time() > missed + 5 else None, "the fire to pass", timeout=PERIOD * 2
    )
    fleet.operator("operator-2")

    def sent_by_the_new_operator(name: str) -> list[dict[str, str]] | None:
        sent = [d for d in stacks.dispatched(name) if d.get("dispatched_by") == "operator-2"]
        return sent or None

    first = eventually(lambda: sent_by_the_new_operator("late"), "a tick of late", timeout=90)[0]
    assert int(first["slot"]) % (PERIOD * 1000) == 0  # a fire of its schedule
    assert int(first["slot"]) / 1000 <= float(first["dispatched_at"]) - 5  # run late
    assert int(first["slot"]) / 1000 >= missed  # the missed fire (or a later one)

    stacks.wait_event("strict", "TickSkipped", timeout=90)
    first = eventually(
        lambda: sent_by_the_new_operator("strict"), "a tick of strict", timeout=PERIOD * 3
    )[0]
    assert int(first["slot"]) / 1000 > missed  # the missed fire never ran
    assert float(first["dispatched_at"]) - int(first["slot"]) / 1000 < 2  # on time
