"""The harness's names for the loopback fake base (``bridge.fakecrm``: faults, ``FakeCRM``,
``Recorded``) and the ``http`` adapter's receiver (``adapters.http.fake``), kept here so the
reliability tests read ``fakes.HTTP_500``, ``fakes.FakeCRM``… as before."""

from adapters.http.fake import SECRET as HTTP_SECRET
from adapters.http.fake import HttpReceiver
from adapters.http.fake import reliability_table as http_table
from bridge.fakecrm import (
    CONNECT_TIMEOUT,
    DOWN,
    FORBIDDEN,
    GENERIC_ERRORS,
    HTTP_500,
    NOT_JSON,
    OK,
    RATE_LIMIT_DATE,
    RATE_LIMIT_SECONDS,
    READ_TIMEOUT,
    RESET,
    RETRY_AFTER_SECONDS,
    UNAUTHORIZED,
    FakeCRM,
    Recorded,
)

__all__ = [
    "CONNECT_TIMEOUT",
    "DOWN",
    "FORBIDDEN",
    "GENERIC_ERRORS",
    "HTTP_500",
    "HTTP_SECRET",
    "NOT_JSON",
    "OK",
    "RATE_LIMIT_DATE",
    "RATE_LIMIT_SECONDS",
    "READ_TIMEOUT",
    "RESET",
    "RETRY_AFTER_SECONDS",
    "UNAUTHORIZED",
    "FakeCRM",
    "HttpReceiver",
    "Recorded",
    "http_table",
]
