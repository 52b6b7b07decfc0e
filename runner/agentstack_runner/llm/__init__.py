"""LLM providers and the resilient router the agents call through.

:mod:`.base` defines the request/response types and the error taxonomy every provider
maps its failures onto; :mod:`.sdk` adapts the real ``groq`` and ``openai`` SDKs;
:mod:`.scripted` is the offline, deterministic provider; :mod:`.resilience` holds the
retry policy, circuit breaker and fleet-wide concurrency limit; :mod:`.router` walks an
agent's model chain (primary, then fallbacks) using all of them.
"""
