"""amoCRM's HTTP side: long-lived token or OAuth, the 403 pause, problem+json errors.

API v4 errors are ``application/problem+json``: ``title``, ``status``, ``detail`` and, for a
400 on bad input, ``validation-errors`` (per request_id, a list of ``code``/``path``/``detail``).
429 comes with a plain body. 403 means the account or its IP is restricted (amo blocks IPs
that abuse the API), 402 an unpaid account.
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
        self._paused_until = 0.0

    def refusal(self, answer: Answer, what: str) -> str | Permanent | None:
        if answer.ok:
            return None
        if answer.status == 429:
            return "amoCRM rate limit (7 requests/s per account) exceeded"
        if answer.status == 400:  # bad input: amo's own words are the whole story
            problems = validation_messages(answer.body)
            text = f"amoCRM rejected the data: {'; '.join(problems)}" if problems else ""
            text = text or problem_text(answer.body)
            if text:
                return Permanent(f"{what}: HTTP 400: {text}")
        return problem_text(answer.body) or None

    async def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        now = self.ctx.clock()
        if now < self._paused_until:
            raise RetryLater(
                f"{method} {path}: not sent: amoCRM answered 403 Forbidden a moment ago, requests"
                " are paused so the account's IP is not blocked for longer",
                self._paused_until - now,
            )
        return await super().request(method, path, **kwargs)

    def raise_for(self, answer: Answer, what: str) -> None:
        if answer.status == 403:
            self._paused_until = self.ctx.clock() + PAUSE_AFTER_403
            self.ctx.log.error(
                "AMOCRM ANSWERED 403 FORBIDDEN: requests paused; check the IP whitelist, the"
                " user's rights and whether amoCRM blocked this server's IP",
                reason=problem_text(answer.body),
                paused_seconds=PAUSE_AFTER_403,
            )
        super().raise_for(answer, what)
