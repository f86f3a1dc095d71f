"""The adapter SDK: the contract and toolkit every CRM package in ``adapters/`` imports.

One public namespace. A CRM adapter is ``adapters/<crm>/`` (see docs/ARCHITECTURE.md): a
``Manifest``, settings on :class:`CredentialSettings`, an ``api.py`` on :class:`JsonAPI` with a
declared :class:`Auth`, and an ``adapter.py`` on :class:`Adapter`.
"""

from bridge.adapter.api import Answer, JsonAPI
from bridge.adapter.auth import (
    ApiKeyHeader,
    Auth,
    BearerToken,
    BodyField,
    Credentials,
    CredentialSettings,
    NoToken,
    OAuth2,
)
from bridge.adapter.contract import (
    ACTIONS,
    CAPABILITIES,
    CREATE_CONTACT,
    CREATE_TASK,
    FIND_CONTACT,
    LOG_CALL,
    Adapter,
    AdapterContext,
    AdapterSettings,
    CallLog,
    CheckResult,
    Contact,
    CreatesContacts,
    FindsContacts,
    FollowUp,
    NewContact,
    capabilities,
    compact,
    user_number,
)
from bridge.adapter.errors import DeliveryError, Permanent, RetryLater
from bridge.adapter.files import Recording, RecordingGone, fetch_recording
from bridge.adapter.http import (
    CRMClient,
    json_body,
    json_object,
    parse_retry_after,
    raise_for_status,
    retry_after_of,
)
from bridge.adapter.manifest import Manifest
from bridge.adapter.outcomes import Delivered, Outcome, Skipped
from bridge.adapter.ratelimit import Limiter, SlidingWindow, TokenBucket, make_limiter

__all__ = [
    "ACTIONS",
    "CAPABILITIES",
    "CREATE_CONTACT",
    "CREATE_TASK",
    "FIND_CONTACT",
    "LOG_CALL",
    "Adapter",
    "AdapterContext",
    "AdapterSettings",
    "Answer",
    "ApiKeyHeader",
    "Auth",
    "BearerToken",
    "BodyField",
    "CRMClient",
    "CallLog",
    "CheckResult",
    "Contact",
    "CreatesContacts",
    "CredentialSettings",
    "Credentials",
    "Delivered",
    "DeliveryError",
    "FindsContacts",
    "FollowUp",
    "JsonAPI",
    "Limiter",
    "Manifest",
    "NewContact",
    "NoToken",
    "OAuth2",
    "Outcome",
    "Permanent",
    "Recording",
    "RecordingGone",
    "RetryLater",
    "Skipped",
    "SlidingWindow",
    "TokenBucket",
    "capabilities",
    "compact",
    "fetch_recording",
    "json_body",
    "json_object",
    "make_limiter",
    "parse_retry_after",
    "raise_for_status",
    "retry_after_of",
    "user_number",
]
