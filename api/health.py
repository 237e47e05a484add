"""Liveness and readiness, open to every caller: ``/health`` says the process answers (restart it if
not); ``/ready`` says it can do its work, the metadata database and Temporal both answering (send it
no traffic if not). Neither says more than which part failed and how: no address, no message."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Literal

import structlog
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from api.deps import Runtime, RuntimeDep

log = structlog.get_logger(__name__)
router = APIRouter(tags=["health"])
# A dependency slower than this is as good as down to a load balancer.
READY_TIMEOUT_SECONDS = 3.0
OK = "ok"


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    # Each dependency: "ok", or what went wrong ("no answer within 3 s", "unavailable (OperationalError)").
    checks: dict[Literal["database", "temporal"], str]


@router.get("/health")
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    responses={503: {"model": Readiness, "description": "the database or Temporal does not answer"}},
)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    database, temporal = await asyncio.gather(
        _answer("database", _database(runtime)), _answer("temporal", _temporal(runtime))
    )
    readiness = Readiness(
        status="ready" if database == temporal == OK else "not ready",
        checks={"database": database, "temporal": temporal},
    )
    return JSONResponse(readiness.model_dump(), status_code=200 if readiness.status == "ready" else 503)


async def _database(runtime: Runtime) -> None:
    async with runtime.sessions() as session:
        await session.execute(text("select 1"))


async def _temporal(runtime: Runtime) -> None:
    if runtime.temporal is None:
        raise ConnectionError("no Temporal client")
    serving = await runtime.temporal.service_client.check_health(
        timeout=timedelta(seconds=READY_TIMEOUT_SECONDS)
    )
    if not serving:
        raise ConnectionError("the frontend says it is not serving")


async def _answer(name: str, check: Awaitable[None]) -> str:
    try:
        await asyncio.wait_for(check, READY_TIMEOUT_SECONDS)
    except TimeoutError:
        log.warning("readiness: no answer", dependency=name, seconds=READY_TIMEOUT_SECONDS)
        return f"no answer within {READY_TIMEOUT_SECONDS:g} s"
    except Exception as exc:
        log.warning("readiness: unavailable", dependency=name, error=type(exc).__name__)
        return f"unavailable ({type(exc).__name__})"
    return OK
