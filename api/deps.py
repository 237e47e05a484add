"""Shared dependencies of the public and Execution APIs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.core.config import Settings
from api.core.crypto import SecretBox


@dataclass
class Runtime:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    box: SecretBox
    temporal: Client | None = None


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    # One transaction per request: committed when the route returns, rolled back when it raises.
    async with runtime.sessions.begin() as session:
        yield session


# scope="function": the commit runs before the response is sent, so a 2xx means stored and a failed
# commit reaches the client as an error (with the default scope FastAPI sends the answer first).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
