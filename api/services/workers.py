"""Provisioned workers: a credential bound to queues, shown once and stored only as a hash."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from airlock.execution import WORKER_CREDENTIAL_PREFIX
from airlock.tls import read_pem
from api.core.config import Settings
from api.core.pki import check_issuer, issue_client_certificate
from api.db.models import Job, WorkerCredential, utcnow
from api.services import jobs
from api.services.errors import Conflict, NotFound


@dataclass(frozen=True)
class Provisioned:
    worker: WorkerCredential
    credential: str


def _hash(secret: str) -> str:
    # The secret is 256 random bits: a plain digest is as strong as a slow hash would be.
    return hashlib.sha256(secret.encode()).hexdigest()


def split_credential(token: str) -> tuple[str, str] | None:
    """``aw1.<name>.<secret>`` -> (name, secret); None for anything else (a JWT, say)."""
    if not token.startswith(WORKER_CREDENTIAL_PREFIX):
        return None
    name, sep, secret = token.removeprefix(WORKER_CREDENTIAL_PREFIX).partition(".")
    return (name, secret) if sep and name and secret else None


async def provision(
    session: AsyncSession, *, name: str, queues: list[str], triggerer: bool, expires_in_days: float
) -> Provisioned:
    """A worker's row and its credential; the row keeps only the credential's hash."""
    secret = secrets.token_urlsafe(32)
    worker = WorkerCredential(
        name=name,
        queues=sorted(set(queues)),
        triggerer=triggerer,
        secret_hash=_hash(secret),
        expires_at=utcnow() + timedelta(days=expires_in_days),
    )
    session.add(worker)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"a worker named {name!r} exists already") from None
    return Provisioned(worker, f"{WORKER_CREDENTIAL_PREFIX}{name}.{secret}")


async def list_(session: AsyncSession) -> list[WorkerCredential]:
    return list(await session.scalars(select(WorkerCredential).order_by(WorkerCredential.name)))


async def revoke(session: AsyncSession, name: str) -> WorkerCredential:
    """Revoked at once: its next call is refused, its jobs end, its workload tokens die. The row stays
    (without a usable hash) so that the name is not handed out again by mistake."""
    worker = await session.get(WorkerCredential, name, with_for_update=True)
    if worker is None:
        raise NotFound(f"no worker named {name!r}")
    now = utcnow()
    if worker.revoked_at is None:
        worker.revoked_at = now
        worker.secret_hash = ""
    await session.execute(
        update(Job)
        .where(Job.credential == name, Job.state == jobs.RUNNING)
        .values(state=jobs.COMPLETED, ended_at=now)
    )
    return worker


async def authenticate(session: AsyncSession, token: str) -> WorkerCredential | None:
    """The worker a credential belongs to, if the credential is valid now."""
    parts = split_credential(token)
    if parts is None:
        return None
    name, secret = parts
    worker = await session.get(WorkerCredential, name)
    if worker is None or not is_valid(worker):
        return None
    return worker if hmac.compare_digest(worker.secret_hash, _hash(secret)) else None


def is_valid(worker: WorkerCredential) -> bool:
    return worker.revoked_at is None and bool(worker.secret_hash) and worker.expires_at > utcnow()


async def active(session: AsyncSession, name: str) -> WorkerCredential | None:
    worker = await session.get(WorkerCredential, name)
    return worker if worker is not None and is_valid(worker) else None


@dataclass(frozen=True)
class WorkerTLSFiles:
    """What the API hands workers for TLS, read from its files (at start, to fail early, and at each
    provisioning, so that a replaced file takes effect without a restart)."""

    api_ca: str | None
    temporal_ca: str | None
    client_ca: tuple[bytes, bytes] | None

    @classmethod
    def load(cls, settings: Settings) -> WorkerTLSFiles:
        try:
            files = cls(
                api_ca=_pem_text(settings.worker_api_ca_file, "AIRLOCK_WORKER_API_CA_FILE"),
                temporal_ca=_pem_text(
                    settings.worker_temporal_tls_ca_file, "AIRLOCK_WORKER_TEMPORAL_TLS_CA_FILE"
                ),
                client_ca=None,
            )
            if (
                settings.worker_client_ca_cert_file is not None
                and settings.worker_client_ca_key_file is not None
            ):
                ca = (
                    read_pem(str(settings.worker_client_ca_cert_file), "AIRLOCK_WORKER_CLIENT_CA_CERT_FILE"),
                    read_pem(str(settings.worker_client_ca_key_file), "AIRLOCK_WORKER_CLIENT_CA_KEY_FILE"),
                )
                check_issuer(*ca)
                files = dataclasses.replace(files, client_ca=ca)
        except ValueError as exc:
            raise SystemExit(f"invalid TLS settings for provisioned workers: {exc}") from None
        return files


def _pem_text(path: Path | None, what: str) -> str | None:
    return None if path is None else read_pem(str(path), what).decode()


def tls_env(settings: Settings, worker: WorkerCredential) -> dict[str, str]:
    """A worker's TLS settings, inline: the CA that verifies the API, a client certificate signed for
    it (when the API has a worker CA), and its Temporal TLS settings."""
    files = WorkerTLSFiles.load(settings)
    env: dict[str, str] = {}
    if files.api_ca is not None:
        env["AIRLOCK_API_CA"] = files.api_ca
    temporal_tls = (
        settings.temporal_uses_tls if settings.worker_temporal_tls is None else settings.worker_temporal_tls
    )
    if temporal_tls:
        env["AIRLOCK_TEMPORAL_TLS"] = "true"
        if files.temporal_ca is not None:
            env["AIRLOCK_TEMPORAL_TLS_CA"] = files.temporal_ca
        if settings.worker_temporal_tls_server_name:
            env["AIRLOCK_TEMPORAL_TLS_SERVER_NAME"] = settings.worker_temporal_tls_server_name
    if files.client_ca is not None:
        cert, key = issue_client_certificate(*files.client_ca, worker.name, worker.expires_at)
        env |= {"AIRLOCK_API_CLIENT_CERT": cert, "AIRLOCK_API_CLIENT_KEY": key}
        if temporal_tls:
            env |= {"AIRLOCK_TEMPORAL_TLS_CERT": cert, "AIRLOCK_TEMPORAL_TLS_KEY": key}
    return env
