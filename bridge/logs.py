"""structlog set-up: JSON lines (console on a TTY), secrets masked in every line.

Every line carries ``msg``; lines about a call also carry ``uuid`` and ``event`` (the
onlinePBX event type, passed as ``_event`` because structlog reserves ``event``), and lines
about a job ``adapter`` and ``job_id``.

Libraries' stdlib logging (aiohttp's "Error handling request" with the raw request line, and
asyncio's loop errors) goes through the same chain, so it is JSON and masked too.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from bridge.redact import REDACTOR


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return REDACTOR(value)
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def redact_secrets(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    if not REDACTOR:
        return event_dict
    return {k: _mask(v) for k, v in event_dict.items()}


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    # Resolved per logger, so a replaced sys.stderr (tests, daemons) is honoured.
    return structlog.PrintLogger(sys.stderr)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current ``sys.stderr`` (replaced by tests and daemons)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_STDLIB_HANDLER: logging.Handler | None = None
# level, time, traceback as text, then secrets masked (last: the traceback may quote one)
_STAMPED_AND_MASKED = (
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
    redact_secrets,
)


class _CauseNotTraceback(logging.Filter):
    """asyncpg's pool retries its connection floor every second while PostgreSQL is away,
    each time a warning with the whole traceback: keep the one line, with the cause."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.levelno < logging.ERROR:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = record.exc_text = None
        return True


_ONE_LINE = _CauseNotTraceback()
logging.getLogger("asyncpg.pool").addFilter(_ONE_LINE)


def _route_stdlib_logging(level: str, renderer: Any) -> None:
    """The root logger's one handler renders through structlog, secrets masked."""
    global _STDLIB_HANDLER
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                *_STAMPED_AND_MASKED,
                structlog.processors.EventRenamer("msg"),
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    if _STDLIB_HANDLER is not None:
        root.removeHandler(_STDLIB_HANDLER)
    root.addHandler(handler)
    root.setLevel(max(logging.getLevelName(level), logging.INFO))
    _STDLIB_HANDLER = handler


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    """Log lines to stderr: JSON, or console rendering when stderr is a terminal."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    _route_stdlib_logging(level, renderer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *_STAMPED_AND_MASKED,
            # Log calls pass the onlinePBX event as `_event`; the message moves to "msg".
            structlog.processors.EventRenamer("msg", replace_by="_event"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
