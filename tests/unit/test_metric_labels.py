"""Label values that stack authors choose stay bounded, whatever the fleet declares."""

from __future__ import annotations

from agentstack_core.spec import DEFAULT_MODELS
from agentstack_runner.metrics import CUSTOM_ROLE, OTHER, BoundedLabel, role_label


def test_model_names_beyond_the_limit_share_one_series() -> None:
    label = BoundedLabel(limit=3, known=tuple(DEFAULT_MODELS.values()))
    names = [label(f"model-{n}") for n in range(100)]
    assert names[:3] == ["model-0", "model-1", "model-2"]
    assert set(names[3:]) == {OTHER}
    assert label("model-1") == "model-1"  # a name seen before keeps its series
    assert label(DEFAULT_MODELS["groq"]) == DEFAULT_MODELS["groq"]  # known ones always do
    assert len({label(f"x{n}") for n in range(1000)} | set(names)) <= 3 + 1


def test_invented_roles_are_custom_and_built_in_roles_are_themselves() -> None:
    assert role_label("planner") == "planner"
    assert role_label("poet") == CUSTOM_ROLE
    assert role_label("a" * 300) == CUSTOM_ROLE
