"""The toolkit and contract for CRM adapters (everything an ``adapters/`` module imports)."""

from bridge.adapter.contract import (
    ACTIONS,
    CREATE_TASK,
    LOG_CALL,
    Adapter,
    AdapterContext,
    AdapterSettings,
    CallLog,
    CheckResult,
    Contact,
    FollowUp,
)
from bridge.adapter.errors import DeliveryError, Permanent, RetryLater
from bridge.adapter.http import (
    CRMClient,
    json_body,
    json_object,
    parse_retry_after,
    raise_for_status,
)
from bridge.adapter.ratelimit import Limiter, SlidingWindow, TokenBucket, make_limiter

__all__ = [
    "ACTIONS",
    "CREATE_TASK",
    "LOG_CALL",
    "Adapter",
    "AdapterContext",
    "AdapterSettings",
    "CRMClient",
    "CallLog",
    "CheckResult",
    "Contact",
    "DeliveryError",
    "FollowUp",
    "Limiter",
    "Permanent",
    "RetryLater",
    "SlidingWindow",
    "TokenBucket",
    "json_body",
    "json_object",
    "make_limiter",
    "parse_retry_after",
    "raise_for_status",
]
