"""The circuit breaker never sticks: whatever happens to a trial call, the provider is
tried again once the breaker's time is up.

Defect this keeps fixed: the half-open trial was released only by a success or a
retryable failure; a trial cancelled (tick timeout, lease lost), rejected
(non-retryable) or refused before the call (no API key) kept its slot for ever, and
the provider stayed blocked in that runner.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agentstack_core.spec import ModelRef
from agentstack_runner.llm.base import (
    ChatRequest,
    Completion,
    KeyRefusedError,
    LLMError,
    PermanentError,
    Provider,
    UnavailableError,
)
from agentstack_runner.llm.resilience import CircuitBreaker, Permit, RetryPolicy
from agentstack_runner.llm.router import Router
from tests.helpers import Clock


class BreakerMachine(RuleBasedStateMachine):
    """Permits end in a verdict or a release, in any order; time moves on."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock(0.0)
        self.breaker = CircuitBreaker(threshold=2, cooldown=5.0, clock=self.clock)
        self.outstanding: list[Permit] = []

    @rule()
    def ask(self) -> None:
        permit = self.breaker.allow()
        if permit is not None:
            self.outstanding.append(permit)

    @precondition(lambda self: self.outstanding)
    @rule(data=st.data(), verdict=st.sampled_from(["success", "failure", "rate", "release"]))
    def finish(self, data: st.DataObject, verdict: str) -> None:
        permit = self.outstanding.pop(data.draw(st.integers(0, len(self.outstanding) - 1)))
        if verdict == "success":
            self.breaker.record_success()
        elif verdict == "failure":
            self.breaker.record_failure()
        elif verdict == "rate":
            self.breaker.record_failure(open_for=3.0)
        self.breaker.release(permit)  # what the router's ``finally`` does, always

    @rule(seconds=st.floats(min_value=0, max_value=10))
    def wait(self, seconds: float) -> None:
        self.clock.now += seconds

    @invariant()
    def the_trial_slot_is_held_only_by_a_call_still_out(self) -> None:
        # A half-open breaker lets one trial through; that slot may be taken only by a
        # call that has not ended — an ended one must have freed it.
        trial = self.breaker._trial
        assert trial is None or any(permit is trial for permit in self.outstanding)

    @invariant()
    def never_stuck(self) -> None:
        # With every call settled, a breaker whose time is up lets a call through.
        if self.outstanding:
            return
        saved = self.clock.now
        self.clock.now += 100.0
        permit = self.breaker.allow()
        assert permit is not None, self.breaker.state
        self.breaker.release(permit)
        self.clock.now = saved


BreakerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=30)
TestBreaker = BreakerMachine.TestCase


class Scripted(Provider):
    """A provider whose next call does what the test says."""

    name = "groq"

    def __init__(self) -> None:
        self.next: BaseException | None = None
        self.calls = 0

    async def complete(self, request: ChatRequest) -> Completion:
        self.calls += 1
        if self.next is not None:
            error, self.next = self.next, None
            raise error
        return Completion(content="{}", prompt_tokens=1, completion_tokens=1)

    async def close(self) -> None:
        return None


class Source:
    def __init__(self, provider: Provider, refuse: bool = False, rotated: bool = False) -> None:
        self._provider = provider
        self.refuse = refuse
        self.rotated = rotated
        """What :meth:`refresh` finds: a key other than the one refused."""
        self.refreshes = 0

    async def provider(self, name: str) -> Provider:
        if self.refuse:
            self.refuse = False
            raise UnavailableError("groq: no API key")
        return self._provider

    async def refresh(self, name: str) -> bool:
        self.refreshes += 1
        return self.rotated


MODEL = ModelRef("groq", "m")
REQUEST = ChatRequest(model="", messages=[], max_tokens=10, temperature=0, timeout=5)


def _half_open_router(clock: Clock) -> Router:
    router = Router(
        policy=RetryPolicy(max_attempts=1),
        breaker_factory=lambda: CircuitBreaker(threshold=1, cooldown=5, clock=clock),
    )
    breaker = router.breaker("groq")
    breaker.record_failure()
    clock.now += 6  # cooldown over: the next call is the trial
    assert breaker.state == "half-open"
    return router


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "trial_ends",
    ["rejected", "unavailable", "cancelled"],
)
async def test_a_trial_that_ends_without_a_verdict_frees_the_breaker(trial_ends: str) -> None:
    clock = Clock(0.0)
    router = _half_open_router(clock)
    provider = Scripted()
    source = Source(provider, refuse=trial_ends == "unavailable")
    deadline = asyncio.get_running_loop().time() + 60
    if trial_ends == "rejected":
        provider.next = PermanentError("unknown model")
    if trial_ends == "cancelled":
        calling = asyncio.Event()

        async def hang(request: ChatRequest) -> Completion:
            calling.set()
            await asyncio.Event().wait()
            raise AssertionError("never answered")

        provider.complete = hang  # type: ignore[method-assign]
        call = asyncio.create_task(router.complete(source, [MODEL], REQUEST, deadline=deadline))
        await asyncio.wait_for(calling.wait(), 10)  # the trial is out, holding its slot
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        del provider.complete  # back to the scripted answer
    else:
        with pytest.raises(LLMError):
            await router.complete(source, [MODEL], REQUEST, deadline=deadline)
    routed = await router.complete(source, [MODEL], REQUEST, deadline=deadline)
    assert routed.model == MODEL  # the provider was tried, not skipped as CircuitOpen


@pytest.mark.asyncio
@pytest.mark.parametrize("rotated", [True, False])
async def test_a_refused_key_is_read_again_and_the_call_made_once_more_if_it_changed(
    rotated: bool,
) -> None:
    router = Router(policy=RetryPolicy(max_attempts=1))
    provider = Scripted()
    source = Source(provider, rotated=rotated)
    provider.next = KeyRefusedError("groq: HTTP 401: invalid api key")
    deadline = asyncio.get_running_loop().time() + 60
    if rotated:
        routed = await router.complete(source, [MODEL], REQUEST, deadline=deadline)
        assert routed.model == MODEL
        assert provider.calls == 2  # the refused call, then the one with the new key
    else:
        with pytest.raises(LLMError, match="HTTP 401"):
            await router.complete(source, [MODEL], REQUEST, deadline=deadline)
        assert provider.calls == 1  # the same key would be refused again: no retry
    assert source.refreshes == 1
    assert router.breaker("groq").state == "closed"  # one stack's key, not the provider
