"""``pipedrive``: call logs, missed-call activities and new persons in Pipedrive.

``settings`` (the table), ``api`` (auth, limits, error envelope), ``adapter`` (the mapping onto
API v1 call logs and v2 persons/activities), ``fake`` (a loopback Pipedrive for the harness).
"""

from bridge.adapter import Manifest

MANIFEST = Manifest(
    name="pipedrive",
    adapter="adapters.pipedrive.adapter:PipedriveAdapter",
    title="Pipedrive",
    summary="call logs on the person, missed calls as call activities; requests"
    " contract-tested against Pipedrive's OpenAPI files",
    idempotency_key=None,  # no idempotency key on call logs or activities
    capabilities=frozenset({"log_call", "create_task", "check", "find_contact", "create_contact"}),
    docs="docs/adapters/pipedrive.md",
    fake="tests.reliability.crm_fakes:FakePipedrive",
    fake_table="tests.reliability.crm_fakes:pipedrive_table",
    fake_secrets=("api_token",),
)
