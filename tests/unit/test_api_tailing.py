"""The live streams' hub, its pure rules: how stream ids order and how keys group.

The hub itself reads Redis: its tests run on a real redis-server
(``tests/integration/test_api_tailing.py``, and ``test_sse_hub.py`` at scale).
"""

from __future__ import annotations

from agentstack_api.tailing import slot_group, stream_order
from agentstack_core.keys import StackKeys, StackRef

ALPHA = StackKeys(StackRef("team", "alpha"))
BETA = StackKeys(StackRef("team", "beta"))


def test_stream_ids_order_by_time_then_sequence() -> None:
    assert stream_order("1700-10") > stream_order("1700-9") > stream_order("1699-99")
    assert sorted(["2-0", "10-0", "2-10", "2-9"], key=stream_order) == [
        "2-0",
        "2-9",
        "2-10",
        "10-0",
    ]


def test_on_a_cluster_a_stacks_keys_share_a_group_and_stacks_spread() -> None:
    assert slot_group(ALPHA.trace, True) == slot_group(ALPHA.feed, True)
    assert slot_group(ALPHA.trace, True) != slot_group(BETA.trace, True)
    assert {slot_group(k, False) for k in (ALPHA.trace, ALPHA.feed, BETA.trace)} == {0}
