from __future__ import annotations

from fastapi import APIRouter, Query, Response, status

from api.deps import RuntimeDep, SessionDep
from api.public.datamodels import (
    MAX_DB_INT,
    ConnectionCreate,
    ConnectionList,
    ConnectionResponse,
    ConnectionUpdate,
)
from api.services import connections

router = APIRouter(prefix="/connections", tags=["connections"])


@router.post("", status_code=status.HTTP_201_CREATED, responses={409: {"description": "already exists"}})
async def create_connection(
    body: ConnectionCreate, session: SessionDep, runtime: RuntimeDep
) -> ConnectionResponse:
    conn = await connections.create(session, runtime.box, body)
    return connections.to_response(conn, runtime.box)


@router.get("")
async def list_connections(
    session: SessionDep,
    runtime: RuntimeDep,
    search: str | None = Query(None, max_length=250, description="a part of the id or the host, any case"),
    conn_type: str | None = Query(None, max_length=50),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_DB_INT),
) -> ConnectionList:
    rows, total = await connections.list_(
        session, limit=limit, offset=offset, search=search, conn_type=conn_type
    )
    return ConnectionList(
        connections=[connections.to_response(c, runtime.box) for c in rows], total_entries=total
    )


@router.get("/{connection_id}", responses={404: {"description": "not found"}})
async def get_connection(connection_id: str, session: SessionDep, runtime: RuntimeDep) -> ConnectionResponse:
    return connections.to_response(await connections.get(session, connection_id), runtime.box)


@router.patch("/{connection_id}", responses={404: {"description": "not found"}})
async def update_connection(
    connection_id: str, body: ConnectionUpdate, session: SessionDep, runtime: RuntimeDep
) -> ConnectionResponse:
    conn = await connections.update(session, runtime.box, connection_id, body)
    return connections.to_response(conn, runtime.box)


@router.delete(
    "/{connection_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {"description": "not found"}}
)
async def delete_connection(connection_id: str, session: SessionDep) -> Response:
    await connections.delete(session, connection_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
