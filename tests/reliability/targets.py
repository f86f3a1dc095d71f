"""The adapters the reliability harness runs against: adding a CRM is one entry in ``CRM``.

Each entry pairs the adapter's settings table (pointed at a loopback fake) with the factory
of that fake. The fault table and the crash harness both iterate over ``CRM``; the crash
harness also runs ``local`` (no remote side: its rows live in the bridge's own file).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.reliability import crm_fakes as crm
from tests.reliability.fakes import FakeCRM, HttpReceiver

HTTP_SECRET = "whsec_" + base64.b64encode(b"reliability-signing-key-0123456789").decode()


@dataclass(frozen=True)
class CRMTarget:
    name: str  # the adapter's registry name (also used as the table name)
    table: Callable[[str], dict[str, Any]]  # base URL of the fake → [adapters.<name>] table
    fake: Callable[[Callable[[], float]], FakeCRM]  # the bridge's clock → an unstarted fake
    idempotent: bool  # the CRM drops a repeated write by its idempotency key
    secrets: tuple[str, ...] = ()  # every secret in ``table`` (grepped for in outputs)


def _http_table(base_url: str) -> dict[str, Any]:
    return {
        "type": "http",
        "url": f"{base_url}/hook",
        "secret": HTTP_SECRET,
        "rate_limit": 0,
        "concurrency": 4,
    }


# Shared by the CRM tables: no client-side rate limit and 4 requests at a time (the fakes are
# on loopback; the big crash run drains 4000 calls through each), and unknown numbers always
# get a record, so searching, creating and then finding are all exercised.
_CRM_COMMON = {"rate_limit": 0, "concurrency": 4, "create_contacts": "always"}


def _amocrm_table(base_url: str) -> dict[str, Any]:
    return {"type": "amocrm", "base_url": base_url, "access_token": crm.AMO_TOKEN, **_CRM_COMMON}


def _bitrix24_table(base_url: str) -> dict[str, Any]:
    # An OAuth app: an inbound webhook_url must be https, and the OAuth refresh is covered too.
    return {
        "type": "bitrix24",
        "base_url": base_url,
        "oauth_url": f"{base_url}/oauth/token/",
        "client_id": "local.reliability.1",
        "client_secret": crm.B24_SECRET,
        "refresh_token": crm.B24_REFRESH,
        "default_user": "1",
        **_CRM_COMMON,
    }


def _hubspot_table(base_url: str) -> dict[str, Any]:
    return {
        "type": "hubspot",
        "base_url": base_url,
        "access_token": crm.HUBSPOT_TOKEN,
        "search_rate_limit": 0,
        **_CRM_COMMON,
    }


def _pipedrive_table(base_url: str) -> dict[str, Any]:
    return {
        "type": "pipedrive",
        "base_url": base_url,
        "api_token": crm.PIPEDRIVE_TOKEN,
        **_CRM_COMMON,
    }


def _retailcrm_table(base_url: str) -> dict[str, Any]:
    # A task needs a performer: the fake account's one user.
    key = crm.RETAILCRM_KEY
    return dict(_CRM_COMMON, type="retailcrm", base_url=base_url, api_key=key, default_user="1")


def _zoho_table(base_url: str) -> dict[str, Any]:
    # The accounts server and the org's API on the fake; the PBX call id field makes every
    # write an upsert (Zoho's duplicate check: a repeated write updates the same record).
    return {
        "type": "zoho",
        "accounts_url": base_url,
        "base_url": base_url,
        "client_id": "1000.FAKEZOHOCLIENT0123456789ABCDEF",
        "client_secret": crm.ZOHO_SECRET,
        "refresh_token": crm.ZOHO_REFRESH,
        "call_id_field": crm.ZOHO_CALL_ID,
        "default_user": "4150868000000225013",
        **_CRM_COMMON,
    }


CRM: list[CRMTarget] = [
    CRMTarget(
        "http",
        _http_table,
        lambda clock: HttpReceiver(clock),
        idempotent=True,  # webhook-id is stable per call and kind
        secrets=(HTTP_SECRET,),
    ),
    CRMTarget(
        "amocrm",
        _amocrm_table,
        lambda clock: crm.FakeAmo(clock),
        # `uniq` is amo's dedup key for calls, but how amo answers a repeated one is not
        # documented (docs/adapters/amocrm.md), and tasks have none: not claimed.
        idempotent=False,
        secrets=(crm.AMO_TOKEN,),
    ),
    CRMTarget(
        "bitrix24",
        _bitrix24_table,
        lambda clock: crm.FakeBitrix24(clock),
        # register with the same EXTERNAL_CALL_ID returns the same CALL_ID for 30 minutes
        # while the call is not finished (b24restdocs, telephony-external-call-register.md).
        idempotent=True,
        # Not B24_ACCESS: an issued token is masked from when the bridge has it, and the
        # careless CRM of test_security quotes it to another adapter before that.
        secrets=(crm.B24_SECRET, crm.B24_REFRESH),
    ),
    CRMTarget(
        "hubspot",
        _hubspot_table,
        lambda clock: crm.FakeHubSpot(clock),
        idempotent=False,  # no idempotency key on calls or tasks
        secrets=(crm.HUBSPOT_TOKEN,),
    ),
    CRMTarget(
        "pipedrive",
        _pipedrive_table,
        lambda clock: crm.FakePipedrive(clock),
        idempotent=False,  # no idempotency key on call logs or activities
        secrets=(crm.PIPEDRIVE_TOKEN,),
    ),
    CRMTarget(
        "retailcrm",
        _retailcrm_table,
        crm.FakeRetailCRM,  # called with the clock
        # calls/upload answers a repeated externalId in duplicateCalls (the official client's
        # response model) instead of a second call, but RetailCRM does not document that as a
        # guarantee, and tasks have no key: not claimed (docs/adapters/retailcrm.md).
        idempotent=False,
        secrets=(crm.RETAILCRM_KEY,),
    ),
    CRMTarget(
        "zoho",
        _zoho_table,
        lambda clock: crm.FakeZoho(clock),
        # No idempotency key on Zoho inserts; with call_id_field (a unique custom field
        # holding the PBX call id) every write is an upsert by it, so a repeated write
        # updates the one record: on for this target.
        idempotent=True,
        secrets=(crm.ZOHO_SECRET, crm.ZOHO_REFRESH),
    ),
]
