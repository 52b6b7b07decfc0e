"""The one async client of the Kubernetes API: raw JSON over one aiohttp session.

Why not a generated client (the official synchronous one, or its ``kubernetes_asyncio``
port): profiled at 1,000 stacks, the synchronous path spent most of the operator's CPU
per status write on what the write does not need — validating the call, building
response models, urllib3 — and its worker threads fought the event loop for the GIL,
which stretched the dispatcher's lag tail. ``kubernetes_asyncio`` would remove the
threads but keep the model building and validation of every answer. Kopf talks to the
API server the way this does: plain JSON on aiohttp, which the processes run anyway.
Callers read answers through the typed views of :mod:`.manifests`.

Every call has a timeout (:class:`~.settings.Timeouts`; a watch's read timeout is its
own length plus a margin): an API server that stops answering fails a call with
:class:`~.errors.UnreachableError`, it never hangs the loop. Refusals raise the
:mod:`.errors` class of their status. Writes whose answer nobody reads (patches, the
one write that scales with the fleet) read the reply's status only, never parse it.

The token is asked of :class:`~.settings.Credentials` on every call, so a rotated one
is used as soon as it is read. A call made *as someone else* (``token=``: the API
steering with its caller's token) goes over a second session whose TLS carries no
client certificate, so the API server authenticates the caller, not us.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp

from agentstack_core.kube.errors import UnreachableError, error_for
from agentstack_core.kube.manifests import ERROR, Listing, WatchEvent, mapping
from agentstack_core.kube.settings import KubeSettings

WATCH_SECONDS = 300
"""How long the API server keeps a watch open before it ends it (the caller watches
again from the last resourceVersion it saw)."""
WATCH_READ_MARGIN = 30.0
"""Seconds past a watch's length before a silent connection counts as lost."""

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

Params = Mapping[str, str]


class KubeClient:
    """Calls to one API server (one instance per process; :meth:`close` it)."""

    def __init__(self, settings: KubeSettings) -> None:
        self.settings = settings
        self._own: aiohttp.ClientSession | None = None
        self._callers: aiohttp.ClientSession | None = None

    # -- reading -----------------------------------------------------------------------

    async def get(
        self, path: str, params: Params | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        """The object (or any JSON document) at ``path``; :class:`~.errors.NotFoundError`
        if there is none. Read with ``token`` (someone else's) when given."""
        return await self._call("GET", path, params=params, token=token)

    async def list(self, path: str, params: Params | None = None) -> Listing:
        """The collection at ``path`` (``labelSelector``, ``fieldSelector`` in
        ``params``), with the resourceVersion to watch it from."""
        return Listing.of(await self._call("GET", path, params=params))

    async def watch(
        self,
        path: str,
        resource_version: str,
        params: Params | None = None,
        *,
        seconds: int = WATCH_SECONDS,
    ) -> AsyncIterator[WatchEvent]:
        """The changes of the collection at ``path`` after ``resource_version`` (with
        bookmarks), until the server ends the watch after ``seconds``. An ``ERROR``
        line is raised as its error (:class:`~.errors.GoneError` when the version is too
        old: list again). Lines are split here, not by the stream reader, which refuses
        lines longer than its buffer (a large object is one line)."""
        query = {
            **(params or {}),
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        timeout = aiohttp.ClientTimeout(
            sock_connect=self.settings.timeouts.connect, sock_read=seconds + WATCH_READ_MARGIN
        )
        try:
            async with self._session().get(
                path.lstrip("/"),
                params=query,
                headers=self._headers(),
                timeout=timeout,
                **self._tls(),
            ) as reply:
                if reply.status >= 300:
                    raise error_for(reply.status, await reply.text())
                pending = b""
                async for chunk in reply.content.iter_any():
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield _event(json.loads(line))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UnreachableError(f"watch of {path}: {exc!r}") from exc

    # -- writing -----------------------------------------------------------------------

    async def create(
        self, path: str, body: Mapping[str, Any], *, token: str | None = None
    ) -> dict[str, Any]:
        """POST ``body`` to the collection at ``path``: the object as created (a review's
        answer); :class:`~.errors.ConflictError` if it exists already. Made with
        ``token`` (someone else's: see the module doc) when given."""
        return await self._call("POST", path, body=body, content_type=JSON, token=token)

    async def replace(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT ``body`` (with the resourceVersion read): the object as stored;
        :class:`~.errors.ConflictError` if it changed since."""
        return await self._call("PUT", path, body=body, content_type=JSON)

    async def merge_patch(
        self, path: str, body: Mapping[str, Any], *, token: str | None = None
    ) -> None:
        """A JSON merge patch (RFC 7386) of ``path``; made with ``token`` (someone
        else's: see the module doc) when given."""
        await self._call(
            "PATCH", path, body=body, content_type=MERGE_PATCH, token=token, parse=False
        )

    async def json_patch(self, path: str, operations: Sequence[Mapping[str, Any]]) -> None:
        """A JSON patch (RFC 6902) of ``path``: :class:`~.errors.InvalidError` if a ``test``
        operation fails."""
        await self._call("PATCH", path, body=operations, content_type=JSON_PATCH, parse=False)

    async def delete(self, path: str, params: Params | None = None) -> None:
        """Delete the object (or, with selectors in ``params``, the collection) at
        ``path``."""
        await self._call("DELETE", path, params=params, parse=False)

    async def close(self) -> None:
        for session in (self._own, self._callers):
            if session is not None:
                await session.close()

    # -- the wire ----------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Any = None,
        content_type: str | None = None,
        token: str | None = None,
        parse: bool = True,
    ) -> dict[str, Any]:
        """The answer as a JSON object; with ``parse`` off, read but not parsed (``{}``)."""
        data = json.dumps(body).encode() if body is not None else None
        try:
            async with self._session(caller=token is not None).request(
                method,
                path.lstrip("/"),
                params=params,
                data=data,
                headers=self._headers(content_type, token),
                **self._tls(),
            ) as reply:
                if reply.status >= 300:
                    raise error_for(reply.status, await reply.text())
                raw = await reply.read()  # all of it: the connection goes back to the pool
                return dict(mapping(json.loads(raw))) if parse else {}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UnreachableError(f"{method} {path}: {exc!r}") from exc

    def _headers(self, content_type: str | None = None, token: str | None = None) -> dict[str, str]:
        headers = {"Accept": JSON}
        if content_type:
            headers["Content-Type"] = content_type
        authorization = f"Bearer {token}" if token else self.settings.credentials.authorization()
        if authorization:
            headers["Authorization"] = authorization
        return headers

    def _tls(self) -> dict[str, Any]:
        name = self.settings.tls_server_name
        return {"server_hostname": name} if name else {}

    def _session(self, *, caller: bool = False) -> aiohttp.ClientSession:
        session = self._callers if caller else self._own
        if session is None or session.closed:
            timeouts = self.settings.timeouts
            session = aiohttp.ClientSession(
                base_url=self.settings.server.rstrip("/") + "/",
                connector=aiohttp.TCPConnector(
                    ssl=self.settings.ssl_context(client_certificate=not caller)
                ),
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeouts.connect, sock_read=timeouts.read
                ),
            )
            if caller:
                self._callers = session
            else:
                self._own = session
        return session


def _event(line: Any) -> WatchEvent:
    event = WatchEvent.of(mapping(line))
    if event.type == ERROR:
        status = event.object.get("code")
        raise error_for(status if isinstance(status, int) else 500, dict(event.object))
    return event
