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


async def get_session(request: Request, runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    # One transaction per request: committed when the route returns, rolled back when it raises.
    # Shared by every dependency of the request (authentication reads the worker's credential in it):
    # Cadwyn's versioned copies of a route do not share FastAPI's dependency cache, and a second
    # transaction would wait for the only SQLite connection the first one holds.
    shared: AsyncSession | None = getattr(request.state, "session", None)
    if shared is not None:
        yield shared
        return
    async with runtime.sessions.begin() as session:
        request.state.session = session
        try:
            yield session
        finally:
            request.state.session = None


# scope="function": the commit runs before the response is sent, so a 2xx means stored and a failed
# commit reaches the client as an error (with the default scope FastAPI sends the answer first).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
