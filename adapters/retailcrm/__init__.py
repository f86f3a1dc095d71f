"""``retailcrm``: calls, missed-call tasks and new customers in RetailCRM (API v5).

``settings`` (the table), ``api`` (the key, form bodies, error envelope), ``adapter`` (the
telephony call log, customers, tasks, the telephony integration module), ``fake`` (a RetailCRM
account in memory for its tests and, behind aiohttp, the reliability harness).
"""

from bridge.adapter import Manifest

MANIFEST = Manifest(
    name="retailcrm",
    adapter="adapters.retailcrm.adapter:RetailCRMAdapter",
    title="RetailCRM",
    summary="calls in the telephony call log (`/api/v5/telephony/calls/upload`, with the"
    " recording and the PBX uuid as `externalId`), missed calls as tasks for the manager, the"
    " telephony integration module registered by `check`, the manager's call popup while the"
    " phone rings (`/api/v5/telephony/call/event`)",
    # calls/upload reports a repeated externalId in duplicateCalls (booked as done), but that
    # is not documented as a guarantee and tasks have none: not claimed as a key.
    idempotency_key=None,
    capabilities=frozenset(
        {"log_call", "create_task", "check", "find_contact", "create_contact"}
        | {"ringing", "answered", "over"}
    ),
    docs="docs/adapters/retailcrm.md",
    fake="adapters.retailcrm.fake:LoopbackRetailCRM",
    fake_table="adapters.retailcrm.fake:reliability_table",
    fake_secrets=("api_key",),
)
