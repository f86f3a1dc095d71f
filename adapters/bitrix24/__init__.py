"""``bitrix24``: calls through telephony.externalCall.*, missed calls as to-dos or tasks.

``settings`` (webhook or OAuth app), ``api`` (the REST envelope, auth, redirects and error
codes), ``adapter`` (CRM search, lead creation, the live call card, the telephony call log,
to-dos and tasks), ``fake`` (a portal in memory for its tests and, behind aiohttp, the contract
suite and the reliability harness).
"""

from bridge.adapter import Manifest

MANIFEST = Manifest(
    name="bitrix24",
    adapter="adapters.bitrix24.adapter:Bitrix24Adapter",
    title="Bitrix24",
    summary="the caller's card while the phone rings and every call through the telephony API"
    " (`telephony.externalCall.*`, with player and statistics; a CRM call activity where a"
    " webhook is refused), missed calls as missed calls plus to-dos or tasks",
    # register with the same EXTERNAL_CALL_ID returns the same CALL_ID for 30 minutes while
    # the call is not finished (b24restdocs, telephony-external-call-register.md).
    idempotency_key="EXTERNAL_CALL_ID",
    deduplicates=True,
    capabilities=frozenset(
        {
            "log_call",
            "create_task",
            "check",
            "find_contact",
            "create_contact",
            "ringing",
            "answered",
            "over",
        }
    ),
    docs="docs/adapters/bitrix24.md",
    fake="adapters.bitrix24.fake:FakeBitrix24",
    fake_table="adapters.bitrix24.fake:reliability_table",
    fake_secrets=("client_secret", "refresh_token"),
)
