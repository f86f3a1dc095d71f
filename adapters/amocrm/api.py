"""amoCRM's HTTP side: long-lived token or OAuth, the 403 hold, problem+json errors.

API v4 errors are ``application/problem+json``: ``title``, ``status``, ``detail`` and, for a
400 on bad input, ``validation-errors`` (per request_id, a list of ``code``/``path``/``detail``).
429 comes with a plain body. 403 means the account or its IP is restricted (amo blocks IPs
that abuse the API), 402 an unpaid account. A 403 is usually lifted by the admin (IP
whitelist, rights), so it holds the whole adapter (no request leaves for PAUSE_AFTER_403) and the
job is retried after the hold: it never goes dead for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from bridge.adapter import (
    AdapterContext,
    Answer,
    Auth,
    BearerToken,
    JsonAPI,
    OAuth2,
    Permanent,
    RetryLater,
)

PAUSE_AFTER_403 = 900.0  # seconds without any request after amo answered 403
FORBIDDEN_CHECK = (
    "check the account's IP whitelist (Settings > Security) for this server's address, the"
    " user's rights, and whether amoCRM blocked this IP for too many requests"
)


def validation_messages(body: Any) -> list[str]:
    """``path: detail (code)`` for each entry of a ``validation-errors`` envelope."""
    out: list[str] = []
    if not isinstance(body, dict):
        return out
    for group in body.get("validation-errors") or []:
        for err in (group or {}).get("errors") or []:
            path = err.get("path") or "?"
            detail = err.get("detail") or err.get("title") or "invalid"
            code = err.get("code")
            out.append(f"{path}: {detail}" + (f" ({code})" if code else ""))
    return out


def problem_text(body: Any) -> str:
    """The title/detail of a problem+json body (or its ``errors`` list), one line."""
    if not isinstance(body, dict):
        return ""
    parts = [str(body[k]) for k in ("title", "detail", "hint") if body.get(k)]
    for err in body.get("errors") or []:
        if isinstance(err, dict):
            text = err.get("title") or err.get("detail") or err.get("msg")
            if text:
                parts.append(
                    str(text) + (f" (status {err['status']})" if err.get("status") else "")
                )
    return "; ".join(dict.fromkeys(parts))


class AmoAPI(JsonAPI):
    """One amoCRM / Kommo account (``base_url`` is its own domain)."""

    VENDOR = "amoCRM"
    AUTH = Auth(
        token=BearerToken(),
        oauth=OAuth2(
            token_url="/oauth2/access_token",
            client_auth="body",
            encoding="json",
            redirect_uri_always=True,  # amo's token endpoint wants it on refreshes too
            reauthorize="re-authorize the integration and set a new authorization_code (codes"
            " are short-lived and work once)",
        ),
    )
    HINTS: ClassVar[Mapping[int, str]] = {
        401: " (token revoked or expired: issue a new access_token, or re-authorize the OAuth"
        " integration and set a new authorization_code)",
        402: " (the amoCRM account is not paid: Payment Required)",
        403: " (amoCRM refused access: the account may be blocked, the user lacks rights, or"
        " amoCRM restricted this server's IP address: IP whitelist or too many requests)",
    }

    def __init__(self, settings: Any, ctx: AdapterContext) -> None:
        super().__init__(settings, ctx, base_url=settings.base_url)

    def refusal(self, answer: Answer, what: str) -> str | Permanent | RetryLater | None:
        if answer.ok:
            return None
        if answer.status == 403:
            return self._forbidden(answer, what)
        if answer.status == 429:
            return "amoCRM rate limit (7 requests/s per account) exceeded"
        if answer.status == 400:  # bad input: amo's own words are the whole story
            problems = validation_messages(answer.body)
            text = f"amoCRM rejected the data: {'; '.join(problems)}" if problems else ""
            text = text or problem_text(answer.body)
            if text:
                return Permanent(f"{what}: HTTP 400: {text}")
        return problem_text(answer.body) or None

    def _forbidden(self, answer: Answer, what: str) -> RetryLater:
        """Hold every request for PAUSE_AFTER_403 (asking again keeps an IP blocked longer),
        say loudly what to check, and retry the job after the hold."""
        because = (
            "amoCRM answered 403 Forbidden a moment ago; requests are held so the account's IP"
            f" is not blocked for longer: {FORBIDDEN_CHECK}"
        )
        self.hold(PAUSE_AFTER_403, because)
        detail = problem_text(answer.body)
        self.ctx.log.critical(
            "AMOCRM ANSWERED 403 FORBIDDEN: requests held, jobs retried after the hold; "
            + FORBIDDEN_CHECK,
            reason=detail,
            held_seconds=PAUSE_AFTER_403,
        )
        return RetryLater(
            f"{what}: HTTP 403 {detail or 'Forbidden'}: held for {PAUSE_AFTER_403:.0f} s, then"
            f" retried; {FORBIDDEN_CHECK}",
            PAUSE_AFTER_403,
        )
