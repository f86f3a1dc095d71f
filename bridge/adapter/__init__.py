"""The adapter SDK: the contract and toolkit every CRM package in ``adapters/`` imports.

One public namespace. A CRM adapter is ``adapters/<crm>/`` (see docs/ARCHITECTURE.md): a
``Manifest``, settings on :class:`CredentialSettings`, an ``api.py`` on :class:`JsonAPI` with a
declared :class:`Auth`, and an ``adapter.py`` on :class:`JsonAdapter` (an :class:`Adapter` that
builds and closes its API).
"""

from bridge.adapter.api import Answer, JsonAdapter, JsonAPI
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
    ANSWERED,
    CAPABILITIES,
    CARD_ACTIONS,
    CREATE_CONTACT,
    CREATE_TASK,
    FIND_CONTACT,
    LIVE_ACTIONS,
    LOG_CALL,
    OVER,
    RINGING,
    Adapter,
    AdapterContext,
    AdapterSettings,
    CallLog,
    CheckResult,
    Contact,
    CreatesContacts,
    FindsContacts,
    FollowUp,
    LiveCall,
    NewContact,
    capabilities,
    compact,
    supports,
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
from bridge.adapter.locks import KeyLocks
from bridge.adapter.manifest import Manifest
from bridge.adapter.outcomes import Delivered, Outcome, Skipped
from bridge.adapter.ratelimit import Limiter, SlidingWindow, TokenBucket, make_limiter

__all__ = [
    "ACTIONS",
    "ANSWERED",
    "CAPABILITIES",
    "CARD_ACTIONS",
    "CREATE_CONTACT",
    "CREATE_TASK",
    "FIND_CONTACT",
    "LIVE_ACTIONS",
    "LOG_CALL",
    "OVER",
    "RINGING",
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
    "JsonAdapter",
    "KeyLocks",
    "Limiter",
    "LiveCall",
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
    "supports",
    "user_number",
]
