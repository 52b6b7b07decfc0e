"""Secret checks: a missing Secret holds the stack, and its Events say so once."""

from __future__ import annotations

import pytest

from agentstack_operator.secretchecking import check_secrets

from .operator_fakes import GROQ_FROM_SECRET, FakeKube, indexed


@pytest.mark.asyncio
async def test_a_missing_secret_holds_the_stack_until_it_appears() -> None:
    kube = FakeKube()
    record = indexed("demo", **GROQ_FROM_SECRET)["team/demo"]
    assert [e.reason for e in await check_secrets(kube, record)] == ["SecretNotFound"]
    assert record.missing_secrets == ["Secret 'keys' with key 'groq' (for groq)"]
    assert not record.should_tick
    assert await check_secrets(kube, record) == []  # still missing: said once
    kube.secrets.add(("team", "keys", "groq"))
    assert [e.reason for e in await check_secrets(kube, record)] == ["SecretFound"]
    assert record.should_tick


@pytest.mark.asyncio
async def test_a_stack_without_secret_references_needs_none() -> None:
    record = indexed("demo")["team/demo"]
    assert await check_secrets(FakeKube(), record) == []
    assert record.missing_secrets == []
