"""``zoho``: calls, missed-call tasks and new leads or contacts in Zoho CRM (API v8).

``settings`` (the table, the data centres, the credit budget by edition), ``api`` (OAuth per
data centre, ``Zoho-oauthtoken`` requests, Zoho's refusals), ``adapter`` (the mapping onto the
Contacts/Leads, Calls and Tasks modules, from the org's field metadata), ``fake`` (a Zoho org
that answers and refuses as Zoho does, for the tests and the reliability harness).
"""

from bridge.adapter import Manifest

MANIFEST = Manifest(
    name="zoho",
    adapter="adapters.zoho.adapter:ZohoAdapter",
    title="Zoho CRM",
    summary="Calls records (type, start, mm:ss duration, result, recording) on the contact or"
    " lead, missed calls as Tasks with a reminder; fields read from the org's layout;"
    " requests and answers contract-tested against Zoho's OpenAPI files",
    # Zoho inserts have none; `call_id_field` (a unique custom field) turns writes into upserts.
    idempotency_key=None,
    capabilities=frozenset({"log_call", "create_task", "check", "find_contact", "create_contact"}),
    docs="docs/adapters/zoho.md",
    fake="adapters.zoho.fake:FakeZoho",
    fake_table="adapters.zoho.fake:reliability_table",
    fake_secrets=("client_secret", "refresh_token"),
)
