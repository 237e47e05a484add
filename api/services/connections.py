from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from airlock.connection import ConnectionFields
from airlock.secrets import mask, unmask
from api.core.crypto import SecretBox
from api.db.models import Connection, ConnectionTest, new_revision
from api.public.datamodels import ConnectionCreate, ConnectionResponse, ConnectionUpdate
from api.services.errors import Conflict, NotFound


def to_response(conn: Connection, box: SecretBox) -> ConnectionResponse:
    return ConnectionResponse(
        connection_id=conn.connection_id,
        conn_type=conn.conn_type,
        description=conn.description,
        host=conn.host,
        port=conn.port,
        login=conn.login,
        schema_=conn.schema_,
        # Extras often carry API keys and tokens: secret-looking keys, at any depth, come back masked.
        extra=mask(box.decrypt_json(conn.extra)),
        has_password=conn.password is not None,
        created_at=conn.created_at,
        updated_at=conn.updated_at,
    )


def fields_of(conn: Connection | ConnectionTest, box: SecretBox) -> ConnectionFields:
    """The decrypted fields of a saved connection, or of the connection a test was submitted with."""
    return ConnectionFields(
        conn_type=conn.conn_type,
        host=conn.host,
        port=conn.port,
        login=conn.login,
        password=box.decrypt(conn.password),
        schema_=conn.schema_,
        extra=box.decrypt_json(conn.extra),
    )


async def get(session: AsyncSession, connection_id: str, *, lock: bool = False) -> Connection:
    query = select(Connection).where(Connection.connection_id == connection_id)
    conn = await session.scalar(query.with_for_update() if lock else query)
    if conn is None:
        raise NotFound(f"connection {connection_id!r} not found")
    return conn


async def revision_of(session: AsyncSession, connection_id: str) -> str | None:
    """The saved connection's current revision, None when there is none."""
    revision: str | None = await session.scalar(
        select(Connection.revision).where(Connection.connection_id == connection_id)
    )
    return revision


async def list_(
    session: AsyncSession,
    *,
    limit: int,
    offset: int,
    search: str | None = None,
    conn_type: str | None = None,
) -> tuple[list[Connection], int]:
    """A page of connections by id; ``search`` matches a part of the id or the host, any case."""
    query = select(Connection)
    if search:
        # autoescape: LIKE's wildcards in the search match themselves.
        query = query.where(
            or_(
                Connection.connection_id.icontains(search, autoescape=True),
                Connection.host.icontains(search, autoescape=True),
            )
        )
    if conn_type:
        query = query.where(Connection.conn_type == conn_type)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(query.order_by(Connection.connection_id).limit(limit).offset(offset))
    return list(rows), total


async def create(session: AsyncSession, box: SecretBox, body: ConnectionCreate) -> Connection:
    conn = Connection(connection_id=body.connection_id)
    apply_fields(conn, box, body.model_dump(exclude={"connection_id"}))
    try:
        async with session.begin_nested():
            session.add(conn)
    except IntegrityError:
        raise Conflict(f"connection {body.connection_id!r} already exists") from None
    return conn


async def update(
    session: AsyncSession, box: SecretBox, connection_id: str, body: ConnectionUpdate
) -> Connection:
    # Locked: a test saving this connection at the same moment sees this change, or this one waits.
    conn = await get(session, connection_id, lock=True)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("conn_type", "") is None:
        changes.pop("conn_type")
    if "extra" in changes:
        changes["extra"] = unmask(changes["extra"] or {}, box.decrypt_json(conn.extra))
    apply_fields(conn, box, changes)
    conn.revision = new_revision()
    await session.flush()
    return conn


async def save_unless_changed(
    session: AsyncSession, box: SecretBox, connection_id: str, fields: ConnectionFields, revision: str | None
) -> str | None:
    """Write ``fields`` as the saved connection if it is still at ``revision`` (None: still absent);
    otherwise write nothing and say what happened to it."""
    conn = await session.scalar(
        select(Connection).where(Connection.connection_id == connection_id).with_for_update()
    )
    current = conn.revision if conn is not None else None
    if current != revision:
        if conn is None:
            return f"connection {connection_id!r} was deleted since the test started"
        if revision is None:
            return f"connection {connection_id!r} was created since the test started"
        return f"connection {connection_id!r} changed since the test started"
    if conn is not None:
        apply_fields(conn, box, fields.model_dump())
        conn.revision = new_revision()
        await session.flush()
        return None
    conn = Connection(connection_id=connection_id)
    apply_fields(conn, box, fields.model_dump())
    try:
        # A connection created under this id at this very moment (there was no row to lock) wins.
        async with session.begin_nested():
            session.add(conn)
    except IntegrityError:
        return f"connection {connection_id!r} was created since the test started"
    return None


async def delete(session: AsyncSession, connection_id: str) -> None:
    await session.delete(await get(session, connection_id, lock=True))
    await session.flush()


def apply_fields(conn: Connection | ConnectionTest, box: SecretBox, values: dict[str, Any]) -> None:
    for name, value in values.items():
        if name == "password":
            conn.password = box.encrypt(value)
        elif name == "extra":
            conn.extra = box.encrypt_json(value or {})
        elif name in ("schema", "schema_"):
            conn.schema_ = value
        else:
            setattr(conn, name, value)
