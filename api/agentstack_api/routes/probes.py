"""Probes and metrics, for the kubelet and Prometheus; open to all, not in the schema.

Routes (``GET``)::

    /healthz    200 while the process serves (liveness)
    /readyz     200 once the stack cache has listed the cluster's stacks, 503 before
                (readiness: until then every list would be empty, every stack a 404)
    /metrics    Prometheus text format of this process's registry
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agentstack_api import models
from agentstack_api.errors import error_response
from agentstack_api.params import Access

router = APIRouter()


@router.get("/healthz", response_model=models.Health, include_in_schema=False)
async def healthz() -> models.Health:
    return models.Health(status="ok")


@router.get("/readyz", response_model=models.Health, include_in_schema=False)
async def readyz(access: Access) -> Response:
    if not access.loaded:
        return error_response(503, "NotReady", "the stack cache is still loading")
    return JSONResponse({"status": "ok"})


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
