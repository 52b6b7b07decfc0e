"""Leader election's API calls never wait behind the operator's other calls."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from agentstack_core.keys import StackRef
from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.leases import Lease
from agentstack_core.kube.settings import KubeSettings, TokenFile
from agentstack_operator.kube import Kube
from tests.localserver import serve

POSTS = 150
"""More Event posts than a session's connection pool holds (aiohttp's 100)."""


def test_a_lease_read_does_not_queue_behind_a_burst_of_event_posts(tmp_path: Path) -> None:
    """A few thousand new stacks post as many ``Started`` Events; a renewal queued
    behind them missed its deadline. Here every post hangs until the Lease was read
    (over one shared client, the read would wait for a connection: it fails so)."""
    token = tmp_path / "token"
    token.write_text("ours")

    async def burst_then_lease() -> Lease | None:
        read, posting = asyncio.Event(), asyncio.Event()

        async def answer(request: web.Request) -> web.StreamResponse:
            if request.method == "POST":
                posting.set()
                await read.wait()
                return web.json_response({"kind": "Event"}, status=201)
            lease = {"metadata": {"name": "lease"}, "spec": {"holderIdentity": "the leader"}}
            return web.json_response(lease)

        runner, url = await serve(answer)
        settings = KubeSettings(url, TokenFile(token))
        kube = Kube(KubeClient(settings), leases=KubeClient(settings))
        posts = [
            asyncio.create_task(kube.post_event(StackRef("team", f"s{n}"), "uid", "Started", ""))
            for n in range(POSTS)
        ]
        try:
            await asyncio.wait_for(posting.wait(), 10)
            return await asyncio.wait_for(kube.read_lease("team", "lease"), 5)
        finally:
            read.set()
            await asyncio.gather(*posts)
            await kube.close()
            await runner.cleanup()

    lease = asyncio.run(burst_then_lease())
    assert lease is not None
    assert lease.spec.holder == "the leader"
