"""Pipedrive's HTTP side: API token or OAuth (on the token's ``api_domain``), its envelope.

Error envelope (v1 and v2)::

    {"success": false, "error": "...", "error_info": "...", "data": null, "errorCode": 401}

Limits: a per-company daily token budget (each operation's ``x-token-cost`` is in the
vendor's OpenAPI files: search 20, add person / activity 5, add call log 10), a burst
limit per 2-second window, and the Search API's own 10 requests per 2 seconds. A 429
carries ``Retry-After`` and/or ``x-ratelimit-*`` headers describing the *burst* window
(Pipedrive sets ``x-ratelimit-reset`` to a 10 s penalty once it is hit). When the burst
window still has room (``x-ratelimit-remaining`` > 0) or ``x-daily-requests-left`` is 0,
the 429 is the *daily* budget: it resets at the start of the next day, and asking again
every few seconds only earns a Cloudflare block page (an HTML 403): the adapter holds
every request until then instead, and reads such a 403 as "blocked for a while", not as
a refused permission.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from bridge.adapter import (
    Answer,
    ApiKeyHeader,
    Auth,
    JsonAPI,
    OAuth2,
    RetryLater,
    parse_retry_after,
)

API_DOMAIN = "api_domain"
DAY = 86_400.0
# After midnight UTC, a margin for Pipedrive's own clock (its docs say only "the start of
# the next day"; which time zone is not documented: see docs/adapters/pipedrive.md).
DAILY_RESET_MARGIN = 300.0
# How long to send nothing after Cloudflare's HTML 403 (an IP/token blocked for hammering).
CLOUDFLARE_HOLD = 900.0


def seconds_to_next_day(now: float) -> float:
    return DAY - (now % DAY) + DAILY_RESET_MARGIN


def _int_header(answer: Answer, name: str) -> int | None:
    value = answer.response.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def daily_budget_spent(answer: Answer, message: str) -> bool:
    """A 429 that is not the burst window's: the daily token budget (or the POST/PUT
    daily fair-usage limit of API tokens) is spent."""
    remaining = _int_header(answer, "x-ratelimit-remaining")
    return (
        (remaining is not None and remaining > 0)
        or _int_header(answer, "x-daily-requests-left") == 0
        or any(word in message.lower() for word in ("daily", "budget"))
    )


def cloudflare_block(answer: Answer) -> bool:
    """Pipedrive's own refusals are JSON; an HTML 403 is Cloudflare, in front of it."""
    headers = answer.response.headers
    return not answer.parsed and (
        "cloudflare" in headers.get("server", "").lower()
        or "cf-ray" in headers
        or b"cloudflare" in answer.response.content[:4096].lower()
    )


class PipedriveAPI(JsonAPI):
    """One Pipedrive company: authenticated JSON requests to API v1 and v2."""

    VENDOR = "Pipedrive"
    DEFAULT_BASE_URL = "https://api.pipedrive.com"
    AUTH = Auth(
        token=ApiKeyHeader("x-api-token"),
        oauth=OAuth2(
            token_url="https://oauth.pipedrive.com/oauth/token",
            client_auth="basic",
            extra_fields=(API_DOMAIN,),
            api_domain_field=API_DOMAIN,  # an OAuth token works on the company's own domain
            default_expires_in=3600,
            reauthorize="reinstall the app and set a new refresh_token",
        ),
    )
    HINTS: ClassVar[Mapping[int, str]] = {
        401: " (the API token is wrong or was regenerated: check api_token, or the OAuth app)",
        402: " (the Pipedrive plan does not include this feature)",
        403: " (the user behind the token lacks a permission; a user without account-settings"
        " access cannot log calls for other users: fix the `users` map or the permission set)",
    }

    # The Search API's own limit: 10 requests per 2 seconds, whatever the plan.
    PATH_LIMITS: ClassVar[Mapping[str, str]] = {r"/search$": "search_rate_limit"}

    def refusal(self, answer: Answer, what: str) -> str | RetryLater | None:
        body = answer.object  # a 2xx with success=false is a refusal too
        refused = str(body.get("error") or "") if body.get("success") is False else ""
        if answer.status == 429:
            if daily_budget_spent(answer, refused):
                wait = seconds_to_next_day(self.ctx.clock())
                why = (
                    "Pipedrive's daily API token budget is spent; requests wait until it"
                    " resets at the start of the next day (UTC)"
                )
                self.hold(wait, why)
                return RetryLater(f"{what}: HTTP 429 {refused or 'Too Many Requests'}: {why}", wait)
            return f"{refused or 'Too Many Requests'} (burst rate limit)"
        if answer.status == 403 and cloudflare_block(answer):
            why = (
                "Cloudflare in front of Pipedrive answered 403 (requests blocked for a while,"
                " usually after repeated 429s); requests are paused"
            )
            self.hold(CLOUDFLARE_HOLD, why)
            return RetryLater(f"{what}: HTTP 403: {why}", CLOUDFLARE_HOLD)
        return refused or None

    def retry_after(self, answer: Answer) -> float | None:
        return parse_retry_after(answer.response.headers.get("x-ratelimit-reset"))

    def unwrap(self, answer: Answer) -> Any:
        body = answer.body
        return body.get("data", body) if isinstance(body, dict) else body
