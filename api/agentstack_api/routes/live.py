"""The live page: an HTML shell and its script, which reads the API and its streams.

Routes (``GET``, not in the OpenAPI schema)::

    /                    static/index.html: the page's markup and style
    /static/app.js       its script: the TypeScript modules of ``web/src``, bundled
    /static/app.js.map   the script's source map (the browser's tools show the sources)

The script is built by ``npm --prefix web run build`` and committed (``hack/lint.sh``
fails when it is not the build of its sources), so the wheel and the image ship it and
serve it without Node. Only the files named in :data:`ASSETS` are served: a request
names an entry of that table, never a path. They are read from the package on each
request (they are small), so a rebuilt bundle shows in an editable install at once;
``no-cache`` makes the browser ask again, so a page and its script never mismatch.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from agentstack_api.errors import ApiError

router = APIRouter()

ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.js.map": "application/json",
}
"""The page's built files under ``static/``, with their content types."""

NO_CACHE = {"Cache-Control": "no-cache"}


def _read(name: str) -> bytes:
    return resources.files("agentstack_api").joinpath("static", name).read_bytes()


@router.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(_read("index.html"), headers=NO_CACHE)


@router.get("/static/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(404, "NotFound", f"the live page has no file {name!r}")
    return Response(_read(name), media_type=media_type, headers=NO_CACHE)
