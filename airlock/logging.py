"""One logging setup for every Airlock process: ``airlock api``, ``airlock worker`` and the processes
``airlock dev`` starts.

Standard-library records (uvicorn, the Temporal SDK, a trigger's own logger) and structlog events go
through one handler and one renderer: readable ``key=value`` lines (no colour codes unless the stream
is a terminal), or one JSON object per line with ``AIRLOCK_LOG_FORMAT=json``.

Work context: ``bind_work`` puts a test's or a trigger's id, queue and worker into structlog's
contextvars for the task that handles it; every line logged from that task, by structlog or by the
standard library, carries them.

Secrets: ``hide_in_logs`` names strings (a running trigger's kwargs and connections) that no line of
the current task may show. They are replaced in each record as it is made, so every handler sees the
scrubbed record, one added after this setup included; structlog events are scrubbed in their chain.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TextIO, get_args

import structlog

from airlock.secrets import scrub

if TYPE_CHECKING:
    from temporalio.runtime import LoggingConfig

LogFormat = Literal["console", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)
# One request line each at INFO: the worker's Execution API calls would drown everything else.
QUIET_LOGGERS = ("httpx", "httpcore")
# The Temporal SDK's Rust core logs here (forwarded), instead of writing its own format to stderr.
TEMPORAL_CORE_LOGGER = "temporalio.core"

_hidden: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "airlock_hidden_in_logs", default=()
)
# What the handlers of one HTTP request bound, shared with the code around them: uvicorn writes the
# access line from the outermost task, which does not see the contextvars a route sets further in (a
# middleware may run it in a task of its own). One mutable dict, visible from every copy of the context.
_request_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "airlock_request_fields", default=None
)


def hide_in_logs(*secrets: str | None) -> None:
    """From now on, in this task and the tasks it starts, no log line shows any of ``secrets``."""
    found = [s for s in secrets if s]
    if found:
        _hidden.set(tuple({*_hidden.get(), *found}))


def hidden_in_logs() -> tuple[str, ...]:
    return _hidden.get()


def bind_work(
    *,
    queue: str | None,
    worker: str | None,
    test_id: str | None = None,
    trigger_id: str | None = None,
    **more: Any,
) -> None:
    """Name the test or trigger this task works on: every later line of the task carries it.

    ``queue`` and ``worker`` are bound even when unknown (None), so that a line about a test always
    has the same keys."""
    fields: dict[str, Any] = {"test_id": test_id} if test_id is not None else {}
    if trigger_id is not None:
        fields["trigger_id"] = trigger_id
    fields.update(queue=queue, worker=worker, **more)
    structlog.contextvars.bind_contextvars(**fields)
    request = _request_fields.get()
    if request is not None:
        request.update(fields)


@contextmanager
def request_scope() -> Iterator[None]:
    """One HTTP request: what its handlers bind with ``bind_work`` reaches its access log line too."""
    token = _request_fields.set({})
    try:
        yield
    finally:
        _request_fields.reset(token)


def merge_request_fields(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the fields bound during this request, where the event has none of its own."""
    request = _request_fields.get()
    if request:
        for key, value in request.items():
            event_dict.setdefault(key, value)
    return event_dict


@contextmanager
def work_bound(**fields: Any) -> Iterator[None]:
    """``bind_work`` for a block of a longer task (a reaper pass goes through many tests)."""
    with structlog.contextvars.bound_contextvars(**fields):
        yield


# --- secret scrubbing -------------------------------------------------------------------------------


def _scrub_record(record: logging.LogRecord, secrets: tuple[str, ...]) -> None:
    # Formatters reuse exc_text once it is set: render the traceback now, scrubbed.
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = scrub(record.exc_text, *secrets)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info, *secrets)
    # A structlog event (a dict) was scrubbed in its own chain, and must stay a dict for its renderer.
    if not isinstance(record.msg, dict):
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # Arguments that do not fit the format: a handler would report it; show both, scrubbed.
            message = f"{record.msg} (arguments: {record.args!r})"
        record.msg, record.args = scrub(message, *secrets), ()


def install_secret_scrubbing() -> None:
    """Scrub every log record made while ``hide_in_logs`` names secrets (idempotent).

    A record factory rather than a handler filter: a handler added later (a trigger's, a test's)
    gets the record already scrubbed."""
    current = logging.getLogRecordFactory()
    if getattr(current, "_airlock_scrubbing", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        secrets = _hidden.get()
        if secrets:
            _scrub_record(record, secrets)
        return record

    factory._airlock_scrubbing = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _scrub_value(value: Any, secrets: tuple[str, ...]) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    # Renderers show other values by repr(): scrub what they would show.
    text = value if isinstance(value, str) else repr(value)
    cleaned = scrub(text, *secrets)
    return value if cleaned == text else cleaned


def scrub_event(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the hidden secrets out of every value of the event."""
    secrets = _hidden.get()
    if secrets:
        for key, value in list(event_dict.items()):
            if not key.startswith("_"):  # structlog's own bookkeeping (the stdlib record)
                event_dict[key] = _scrub_value(value, secrets)
    return event_dict


# --- the setup --------------------------------------------------------------------------------------

Processor = Callable[[Any, str, MutableMapping[str, Any]], Any]


def _access_fields(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """uvicorn's access line, as fields too: method, path, status (JSON readers filter on them)."""
    record = event_dict.get("_record")
    if record is not None and record.name == "uvicorn.access":
        args = event_dict.get("positional_args")
        if isinstance(args, tuple) and len(args) == 5:
            client, method, path, _version, status = args
            event_dict.update(client=client, method=method, path=path, status=status)
    event_dict.pop("positional_args", None)
    return event_dict


def _drop_positional_args(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event_dict.pop("positional_args", None)  # already in the message
    return event_dict


def _shared_processors(json: bool) -> list[Processor]:
    """What structlog events and stdlib records both go through before they are rendered."""
    return [
        structlog.contextvars.merge_contextvars,
        merge_request_fields,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso" if json else "%Y-%m-%d %H:%M:%S", utc=json),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.UnicodeDecoder(),
    ]


class _AirlockHandler(logging.StreamHandler[TextIO]):
    """Marks the handler this module installed, so that a second setup replaces it."""


def configure_logging(
    log_format: str = "console", level: str = "INFO", *, stream: TextIO | None = None
) -> None:
    """Set up stdlib logging and structlog for this process; call it once, first thing in ``main``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    level = level.upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    json = log_format == "json"
    stream = stream or sys.stderr
    shared = _shared_processors(json)
    renderer: Processor
    if json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=_is_terminal(stream), exception_formatter=structlog.dev.plain_traceback
        )
    formatter = structlog.stdlib.ProcessorFormatter(
        # JSON readers filter an access line on its fields; the console line says it all already.
        foreign_pre_chain=[_access_fields, *shared] if json else [_drop_positional_args, *shared],
        # The scrub runs again here: a stdlib record's traceback is rendered by this chain.
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            scrub_event,
            renderer,
        ],
        pass_foreign_args=True,
    )
    handler = _AirlockHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _AirlockHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    numeric = logging.getLevelName(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric))
    # uvicorn's and the SDK's loggers write through the root handler, in this format, and nowhere else.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "temporalio"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    logging.captureWarnings(True)
    install_secret_scrubbing()
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            *shared,
            scrub_event,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    _forward_temporal_core_logs(level)


def _forward_temporal_core_logs(level: str) -> None:
    """The SDK's Rust core writes its own lines to stderr unless its logs are forwarded here."""
    from temporalio.runtime import Runtime, TelemetryConfig

    Runtime.set_default(
        Runtime(telemetry=TelemetryConfig(logging=temporal_core_logging(level))), error_if_already_set=False
    )


def temporal_core_logging(level: str) -> LoggingConfig:
    """How a Temporal runtime's core logs: through this setup, at ``level``. A runtime made for more
    (a worker's metrics) logs the same way with it."""
    from temporalio.runtime import LogForwardingConfig, LoggingConfig, TelemetryFilter

    core_level = {"DEBUG": "INFO", "INFO": "WARN", "WARNING": "WARN"}.get(level, "ERROR")
    return LoggingConfig(
        filter=TelemetryFilter(core_level=core_level, other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger(TEMPORAL_CORE_LOGGER)),
    )


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
