"""``pipedrive``: call logs, missed-call activities and new persons in Pipedrive.

``settings`` (the table), ``api`` (auth, limits, error envelope), ``adapter`` (the mapping onto
API v1 call logs and v2 persons/activities), ``fake`` (Pipedrive's answers for the unit tests,
served on loopback for the contract suite and the reliability harness).
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
    fake="adapters.pipedrive.fake:FakePipedrive",
    fake_table="adapters.pipedrive.fake:reliability_table",
    fake_secrets=("api_token",),
)
