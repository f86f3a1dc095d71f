"""``salesforce``: calls as completed Call tasks, missed calls as open tasks with a reminder,
new Leads or Contacts, in Salesforce (REST API, OAuth 2.0 client credentials).

``settings`` (the table), ``api`` (the declared token flow, the error arrays), ``adapter``
(SOSL, Task, Lead, Contact), ``fake`` (an org in memory for its tests and, behind aiohttp, the
reliability harness).
"""

from bridge.adapter import Manifest

MANIFEST = Manifest(
    name="salesforce",
    adapter="adapters.salesforce.adapter:SalesforceAdapter",
    title="Salesforce",
    summary="completed Call tasks (`TaskSubtype = 'Call'`, `CallType`, duration, `CallObject`"
    " = the PBX uuid, result) on the Contact or Lead found by SOSL, missed calls as open tasks"
    " with a reminder; OAuth client credentials",
    # Salesforce has no idempotency key on creates; the adapter looks the Task up by
    # CallObject (the PBX uuid) before creating one, which closes the crash window.
    idempotency_key="Task.CallObject (looked up before each create)",
    docs="docs/adapters/salesforce.md",
    capabilities=frozenset({"log_call", "create_task", "check", "find_contact", "create_contact"}),
    fake="adapters.salesforce.fake:LoopbackSalesforce",
    fake_table="adapters.salesforce.fake:reliability_table",
    fake_secrets=("client_secret",),
)
