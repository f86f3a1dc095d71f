"""``amocrm`` / ``kommo``: amoCRM and Kommo (API v4), see docs/adapters/amocrm.md.

``settings`` (the table), ``api`` (auth, the 403 pause, problem+json errors), ``adapter``
(contacts, leads, Unsorted, calls and tasks).
"""

from bridge.adapter import Manifest

MANIFEST = Manifest(
    name="amocrm",
    aliases=("kommo",),
    adapter="adapters.amocrm.adapter:AmoCRMAdapter",
    title="amoCRM / Kommo",
    summary="calls in the contact's timeline (`/api/v4/calls`, deduplicated by the PBX uuid),"
    ' missed calls as "call back" tasks',
    idempotency_key="uniq",  # amo's dedup key for calls (how it answers a repeat: undocumented)
    capabilities=frozenset({"log_call", "create_task", "check", "find_contact", "create_contact"}),
    docs="docs/adapters/amocrm.md",
    fake="tests.reliability.crm_fakes:FakeAmo",
    fake_table="tests.reliability.crm_fakes:amocrm_table",
    fake_secrets=("access_token",),
)
