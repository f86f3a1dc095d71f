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
from bridge.adapter.ratelimit import TokenBucket

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
    "Permanent",
    "RetryLater",
    "TokenBucket",
    "json_body",
    "json_object",
    "parse_retry_after",
    "raise_for_status",
]
