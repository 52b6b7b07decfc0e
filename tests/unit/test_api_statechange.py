"""``POST …/state``: pause, resume and stop are patches made with the caller's token.

The API server (here a fake :class:`StateWriter`) decides with RBAC; the API only
authenticates the caller, forwards the token when authentication is on, and answers
the API server's verdict with the one error body.
"""

from __future__ import annotations

import httpx
import pytest

from agentstack_api.access import StackAccess
from agentstack_api.auth import User
from agentstack_api.errors import ApiError
from agentstack_api.routes import steering
from tests.unit import test_api_fakes as fakes

PATH = "/api/v1/namespaces/team/stacks/alpha/state"
ALICE = User("alice", ("team-a",))


def _client(writer: fakes.FakeStateWriter, tokens: dict[str, User] | None) -> httpx.AsyncClient:
    cache = fakes.FakeCache([fakes.stack("team", "alpha")])
    access = StackAccess(cache, fakes.FakeAuthorizer({"team"}, tokens=tokens))
    return fakes.client(fakes.app_with(steering.router, access=access, state_writer=writer))


@pytest.mark.asyncio
async def test_the_callers_token_makes_the_patch_when_authentication_is_on() -> None:
    writer = fakes.FakeStateWriter()
    async with _client(writer, {"t-alice": ALICE}) as http:
        answer = await http.post(
            PATH, json={"executionState": "Paused"}, headers={"Authorization": "Bearer t-alice"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"namespace": "team", "name": "alpha", "executionState": "Paused"}
        fakes.error_of(
            await http.post(PATH, json={"executionState": "Paused"}), 401, "Unauthorized"
        )
    assert writer.patches == [("team", "alpha", "Paused", "t-alice")]


@pytest.mark.asyncio
async def test_without_authentication_the_apis_own_credentials_are_used() -> None:
    writer = fakes.FakeStateWriter()
    async with _client(writer, None) as http:
        answer = await http.post(
            PATH, json={"executionState": "Running"}, headers={"Authorization": "Bearer ignored"}
        )
    assert answer.status_code == 200, answer.text
    assert writer.patches == [("team", "alpha", "Running", None)]


@pytest.mark.asyncio
async def test_the_api_servers_refusal_and_bad_states_get_the_one_error_body() -> None:
    writer = fakes.FakeStateWriter()
    writer.refusal = ApiError(403, "Forbidden", "RBAC does not allow patch of agentstacks in team")
    async with _client(writer, None) as http:
        refused = await http.post(PATH, json={"executionState": "Stopped"})
        assert "patch" in fakes.error_of(refused, 403, "Forbidden")
        writer.refusal = None
        for body in ({"executionState": "Deleted"}, {}, {"executionState": 3}):
            fakes.error_of(await http.post(PATH, json=body), 400, "InvalidParameter")
    assert writer.patches == []
