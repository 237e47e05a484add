"""Settings every process of Airlock reads (``AIRLOCK_*``): how it logs, how it reaches Temporal, how
it reaches the API. The API, the workers and the CLI each combine the parts they use."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from airlock.logging import LogFormat, LogLevel
from airlock.tls import address_host, client_context, read_pem, refuse_plaintext

if TYPE_CHECKING:
    from temporalio.service import TLSConfig


class ProcessSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIRLOCK_", extra="ignore")

    # Every process logs through airlock.logging: "console" lines, or "json" (one object per line).
    log_format: LogFormat = "console"
    log_level: LogLevel = "INFO"
    # Plain HTTP or gRPC to a host other than loopback carries credentials in clear: refused unless
    # the operator says the network between the two is trusted.
    allow_plaintext: bool = False

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        return value.strip().lower() if info.field_name == "log_format" else value.strip().upper()

    def __repr_args__(self) -> Any:
        # repr() and str() of settings (a log line, a traceback) show URLs without their password:
        # a database URL, an API URL with userinfo.
        for name, value in super().__repr_args__():
            yield name, hide_url_password(value) if isinstance(value, str) else value


class TemporalSettings(ProcessSettings):
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    # TLS to Temporal: on when asked, or when any of its settings below is given. The CA (a path or
    # the PEM itself) defaults to the system's roots, which Temporal Cloud's certificates chain to.
    temporal_tls: bool = False
    temporal_tls_ca: str | None = None
    temporal_tls_cert: str | None = None
    temporal_tls_key: str | None = Field(default=None, repr=False)
    temporal_tls_server_name: str | None = None
    # A Temporal Cloud API key, sent as a bearer token (over TLS, always).
    temporal_api_key: str = Field(default="", repr=False)

    @property
    def temporal_uses_tls(self) -> bool:
        return self.temporal_tls or any(
            (
                self.temporal_tls_ca,
                self.temporal_tls_cert,
                self.temporal_tls_key,
                self.temporal_tls_server_name,
                self.temporal_api_key,
            )
        )

    def temporal_tls_config(self) -> TLSConfig | bool:
        """What ``Client.connect(tls=...)`` takes; refuses plaintext to a host off loopback."""
        from temporalio.service import TLSConfig

        if not self.temporal_uses_tls:
            refuse_plaintext("Temporal", address_host(self.temporal_address), allowed=self.allow_plaintext)
            return False
        if bool(self.temporal_tls_cert) != bool(self.temporal_tls_key):
            raise SystemExit("AIRLOCK_TEMPORAL_TLS_CERT and AIRLOCK_TEMPORAL_TLS_KEY go together")
        with invalid_tls_settings("Temporal"):
            return TLSConfig(
                server_root_ca_cert=_pem(self.temporal_tls_ca, "AIRLOCK_TEMPORAL_TLS_CA"),
                client_cert=_pem(self.temporal_tls_cert, "AIRLOCK_TEMPORAL_TLS_CERT"),
                client_private_key=_pem(self.temporal_tls_key, "AIRLOCK_TEMPORAL_TLS_KEY"),
                domain=self.temporal_tls_server_name,
            )


class ApiLinkSettings(ProcessSettings):
    """How a worker or the CLI reaches the API: its URL and, for HTTPS, the CA to verify it with and
    the client certificate it asks for (each a path or the PEM itself)."""

    api_url: str = "http://127.0.0.1:8080"
    api_ca: str | None = None
    api_client_cert: str | None = None
    api_client_key: str | None = Field(default=None, repr=False)

    def api_tls(self) -> ssl.SSLContext | bool:
        """What httpx's ``verify`` takes for the API; refuses plain HTTP to a host off loopback."""
        parts = urlsplit(self.api_url)
        if parts.scheme != "https":
            refuse_plaintext("the API", parts.hostname or "", allowed=self.allow_plaintext)
            return True
        with invalid_tls_settings("the API"):
            return client_context(
                self.api_ca, self.api_client_cert, self.api_client_key, what="AIRLOCK_API_*"
            )


def _pem(value: str | None, what: str) -> bytes | None:
    return read_pem(value, what) if value else None


@contextlib.contextmanager
def invalid_tls_settings(link: str) -> Iterator[None]:
    """A PEM that cannot be read or a key that does not match its certificate: a clean refusal to
    start, naming the link."""
    try:
        yield
    except (ValueError, ssl.SSLError) as exc:
        raise SystemExit(f"invalid TLS settings for {link}: {exc}") from None


def split_list(value: object) -> object:
    """A comma-separated environment value as a list: ``AIRLOCK_QUEUES=net-a,net-b``."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def hide_url_password(value: str) -> str:
    """``scheme://user:***@host/...`` for a URL with a password; anything else unchanged."""
    if "://" not in value or "@" not in value:
        return value
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return value
    if not password:
        return value
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def env_file_text(env: Mapping[str, str]) -> str:
    """A worker's environment as the lines of an env file (``airlock worker --env-file`` reads them)."""
    return "".join(f"{key}='{value}'\n" for key, value in env.items())
