"""HubSpot's HTTP side: private-app token or OAuth, the search limit, its error envelope.

Error envelope (every 4xx/5xx of the v3 APIs)::

    {"status": "error", "message": "...", "correlationId": "...", "category": "VALIDATION_ERROR"}

429 answers also carry ``policyName`` (``TEN_SECONDLY_ROLLING``, ``SECONDLY`` for search,
``DAILY``) and usually no ``Retry-After``: the wait is derived from the policy when missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from bridge.adapter import (
    Answer,
    Auth,
    BearerToken,
    JsonAPI,
    OAuth2,
    RetryLater,
    retry_after_of,
)

SEARCH_SUFFIX = "/search"
# Seconds to wait on a 429 without Retry-After, by HubSpot's policyName.
POLICY_WAIT = {"SECONDLY": 1.0, "TEN_SECONDLY_ROLLING": 10.0, "DAILY": 3600.0}
DEFAULT_POLICY_WAIT = 10.0
# Statuses HubSpot documents as "try again", with the wait when no Retry-After comes.
TRANSIENT = {423: ("Locked", 2.0), 477: ("Migration in progress", 60.0)}


class HubSpotAPI(JsonAPI):
    """One HubSpot account: authenticated JSON requests under both HubSpot limits."""

    VENDOR = "HubSpot"
    DEFAULT_BASE_URL = "https://api.hubapi.com"
    AUTH = Auth(
        token=BearerToken(),
        oauth=OAuth2(
            # The date-versioned endpoint: /oauth/v1/token is retired on 2027-02-16.
            token_url="/oauth/2026-03/token",
            client_auth="body",
            default_expires_in=1800,
            reauthorize="reinstall the app and set a new refresh_token",
        ),
    )
    HINTS: ClassVar[Mapping[int, str]] = {
        401: " (the access token is wrong, revoked or expired: check access_token, or the"
        " OAuth client_id/client_secret/refresh_token)",
        403: " (the private app or OAuth app lacks a scope: it needs crm.objects.contacts.read,"
        " crm.objects.contacts.write and crm.objects.owners.read)",
    }
    # CRM search has its own, lower limit (per token), on top of the general one.
    PATH_LIMITS: ClassVar[Mapping[str, str]] = {SEARCH_SUFFIX + "$": "search_rate_limit"}

    @staticmethod
    def _envelope(answer: Answer) -> dict[str, Any] | None:
        body = answer.object
        return body if not answer.ok and "message" in body else None

    def refusal(self, answer: Answer, what: str) -> str | RetryLater | None:
        body = self._envelope(answer)
        # Transient, though 4xx: 423 Locked (a record being written by another request:
        # HubSpot says retry after 2 s) and 477 Migration in progress (the portal is moving
        # between data centres; the answer carries Retry-After).
        if answer.status in TRANSIENT:
            detail = (body or {}).get("message") or TRANSIENT[answer.status][0]
            wait = retry_after_of(answer.response, TRANSIENT[answer.status][1])
            return RetryLater(f"{what}: HTTP {answer.status} {detail}", wait)
        if body is None:
            return None
        category = body.get("category") or body.get("errorType")
        detail = f"{category}: {body['message']}" if category else str(body["message"])
        if answer.status == 429:
            detail += f" (policy {body.get('policyName') or 'unknown'})"
        return detail

    def retry_after(self, answer: Answer) -> float | None:
        body = self._envelope(answer)
        if body is None:
            return None
        return POLICY_WAIT.get(str(body.get("policyName") or ""), DEFAULT_POLICY_WAIT)
