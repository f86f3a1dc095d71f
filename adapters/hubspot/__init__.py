"""``hubspot``: calls, missed-call tasks and new contacts in HubSpot CRM (API v3).

``settings`` (the table), ``api`` (auth, the search limit, the error envelope), ``adapter``
(the mapping onto HubSpot's contacts, calls and tasks), ``fake`` (HubSpot's answers for the unit
tests, served on loopback for the contract suite and the reliability harness).
"""

from bridge.adapter import Manifest

MANIFEST = Manifest(
    name="hubspot",
    adapter="adapters.hubspot.adapter:HubSpotAdapter",
    title="HubSpot",
    summary="call engagements (talk time in ms, status, recording) on the contact, missed calls"
    " as CALL tasks",
    idempotency_key=None,  # no idempotency key on calls or tasks
    capabilities=frozenset({"log_call", "create_task", "check", "find_contact", "create_contact"}),
    docs="docs/adapters/hubspot.md",
    fake="adapters.hubspot.fake:FakeHubSpot",
    fake_table="adapters.hubspot.fake:reliability_table",
    fake_secrets=("access_token",),
)
