"""structlog set-up: JSON lines (console on a TTY), secrets masked in every line.

Every line carries ``msg``; lines about a call also carry ``uuid`` and ``event`` (the
onlinePBX event type, passed as ``_event`` because structlog reserves ``event``), and lines
about a job ``adapter`` and ``job_id``.
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


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    """Log lines to stderr: JSON, or console rendering when stderr is a terminal."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            # Log calls pass the onlinePBX event as `_event`; the message moves to "msg".
            structlog.processors.EventRenamer("msg", replace_by="_event"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
