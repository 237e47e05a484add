"""Settings every Temporal client of Airlock reads (``AIRLOCK_*``): the API and the workers alike."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from airlock.logging import LogFormat, LogLevel


class TemporalSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIRLOCK_", extra="ignore")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    # Every process logs through airlock.logging: "console" lines, or "json" (one object per line).
    log_format: LogFormat = "console"
    log_level: LogLevel = "INFO"

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
