"""The opt-in per-stack series: off by default, gone with the stack and with leadership."""

from __future__ import annotations

from prometheus_client import REGISTRY

from agentstack_operator import metrics


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_off_by_default_nothing_is_exported() -> None:
    series = metrics.PerStackSeries()
    series.observe("ns", "off", "Succeeded", 10, 0.5, 1.0)
    assert _value("agentstack_stack_tokens_total", namespace="ns", stack="off") is None


def test_a_stacks_series_follow_its_results_and_leave_with_it() -> None:
    series = metrics.PerStackSeries()
    series.enabled = True
    series.observe("ns", "a", "Succeeded", 100, 0.25, 2.0)
    series.observe("ns", "a", "Failed", 50, 0.125, 3.0)
    series.observe("ns", "b", "Succeeded", 7, 0.0, 0.5)
    ticks = "agentstack_stack_ticks_total"
    assert _value(ticks, namespace="ns", stack="a", outcome="Succeeded") == 1
    assert _value(ticks, namespace="ns", stack="a", outcome="Failed") == 1
    assert _value("agentstack_stack_tokens_total", namespace="ns", stack="a") == 150
    assert _value("agentstack_stack_cost_usd_total", namespace="ns", stack="a") == 0.375
    last = "agentstack_stack_last_tick_duration_seconds"
    assert _value(last, namespace="ns", stack="a") == 3.0

    series.forget("ns", "a")  # deleted: none of its series remain
    assert _value(ticks, namespace="ns", stack="a", outcome="Failed") is None
    assert _value("agentstack_stack_cost_usd_total", namespace="ns", stack="a") is None
    assert _value("agentstack_stack_tokens_total", namespace="ns", stack="b") == 7

    series.clear()  # leadership lost: the standby shows no frozen figures
    assert _value("agentstack_stack_tokens_total", namespace="ns", stack="b") is None
    series.forget("ns", "b")  # forgetting what is already gone is harmless
