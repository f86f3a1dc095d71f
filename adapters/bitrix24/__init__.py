"""``bitrix24``: calls through telephony.externalCall.*, missed calls as to-dos or tasks.

``settings`` (webhook or OAuth app), ``rest`` (the REST envelope, auth and error codes),
``adapter`` (CRM search, lead creation, the telephony call log, to-dos and tasks).
"""

from bridge.adapter import Manifest

MANIFEST = Manifest(
    name="bitrix24",
    adapter="adapters.bitrix24.adapter:Bitrix24Adapter",
    title="Bitrix24",
    summary="calls through the telephony API (`telephony.externalCall.*`, with player and"
    " statistics; a CRM call activity where a webhook is refused), missed calls as to-dos or"
    " tasks",
    # register with the same EXTERNAL_CALL_ID returns the same CALL_ID for 30 minutes while
    # the call is not finished (b24restdocs, telephony-external-call-register.md).
    idempotency_key="EXTERNAL_CALL_ID",
    deduplicates=True,
    capabilities=frozenset({"log_call", "create_task", "check", "find_contact", "create_contact"}),
    docs="docs/adapters/bitrix24.md",
    fake="tests.reliability.crm_fakes:FakeBitrix24",
    fake_table="tests.reliability.crm_fakes:bitrix24_table",
    fake_secrets=("client_secret", "refresh_token"),
)
