"""The two ways a delivery can fail.

Anything else an adapter raises is treated as a bug or a passing fault: logged with its
traceback and retried with backoff (so a fixed deploy delivers it), dead after the retry window.
"""

from __future__ import annotations


class DeliveryError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryLater(DeliveryError):
    """Transient: network trouble, timeouts, 429, 5xx, or the CRM asking to come back later.

    ``retry_after`` (seconds) is honoured when the CRM named a time.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Permanent(DeliveryError):
    """Retrying cannot help (bad request, revoked token, missing permission): dead at once."""
