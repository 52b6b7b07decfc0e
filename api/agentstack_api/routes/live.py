"""The live page: one HTML file that reads the API and its streams from the browser.

Routes (``GET``, not in the OpenAPI schema)::

    /     static/index.html: the fleet, and one stack's trace and feed, kept current

The page is read from the package on each request (it is small, and a build step or a
second copy would only drift); it talks to the API with ``fetch`` and EventSource.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()


@router.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    html = resources.files("agentstack_api").joinpath("static/index.html")
    return HTMLResponse(html.read_text(encoding="utf-8"))
