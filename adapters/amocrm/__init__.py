"""``amocrm`` / ``kommo``: amoCRM and Kommo (API v4), see docs/adapters/amocrm.md.

``settings`` (the table), ``api`` (auth, the 403 hold, problem+json errors), ``adapter``
(contacts, leads, Unsorted, calls, tasks and the call notification), ``fake`` (amo's answers
and an account in memory, for the unit tests and the reliability harness).
"""

from bridge.adapter import Manifest

MANIFEST = Manifest(
    name="amocrm",
    aliases=("kommo",),
    adapter="adapters.amocrm.adapter:AmoCRMAdapter",
    title="amoCRM / Kommo",
    summary="calls in the contact's timeline (`/api/v4/calls`, deduplicated by the PBX uuid),"
    ' missed calls as "call back" tasks, the incoming-call notification to the ringing user'
    " (`/api/v2/events`)",
    idempotency_key="uniq",  # amo's dedup key for calls (how it answers a repeat: undocumented)
    capabilities=frozenset(
        {"log_call", "create_task", "check", "find_contact", "create_contact", "ringing"}
    ),
    docs="docs/adapters/amocrm.md",
    fake="adapters.amocrm.fake:LoopbackAmo",
    fake_table="adapters.amocrm.fake:reliability_table",
    fake_secrets=("access_token",),
    retries_forbidden=True,  # 403 = IP restriction the admin lifts: hold, then retry
)
