"""amoCRM's error answers → RetryLater / Permanent with a reason an admin can act on.

API v4 errors are ``application/problem+json``: ``title``, ``status``, ``detail`` and, for a
400 on bad input, ``validation-errors`` (per request_id, a list of ``code``/``path``/``detail``).
429 comes with a plain body. 403 means the account or its IP is restricted (amo blocks IPs
that abuse the API), 402 an unpaid account.
"""

from __future__ import annotations

from typing import Any

import httpx

from bridge.adapter import DeliveryError, Permanent, RetryLater, raise_for_status
from bridge.adapter.http import retry_after_of


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


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


def amo_error(response: httpx.Response, what: str) -> DeliveryError:
    """The delivery error for a non-2xx amoCRM answer to ``what`` (e.g. ``POST /api/v4/calls``)."""
    status = response.status_code
    body = _json(response)
    label = f"{what}: HTTP {status}"
    if status == 400:
        problems = validation_messages(body)
        if problems:
            return Permanent(f"{label}: amoCRM rejected the data: {'; '.join(problems)}")
        text = problem_text(body)
        if text:
            return Permanent(f"{label}: {text}")
    if status == 401:
        return Permanent(
            f"{label}: token revoked or expired: issue a new access_token (or re-authorize the"
            " OAuth integration and set a new authorization_code)"
        )
    if status == 402:
        return Permanent(f"{label}: the amoCRM account is not paid (Payment Required)")
    if status == 403:
        text = problem_text(body)
        return Permanent(
            f"{label}: amoCRM refused access{': ' + text if text else ''}. The account may be"
            " blocked, the user lacks rights, or amoCRM restricted this server's IP address"
            " (IP whitelist or too many requests)"
        )
    if status == 429:
        return RetryLater(
            f"{label}: amoCRM rate limit (7 requests/s per account) exceeded",
            retry_after_of(response),
        )
    if 200 <= status < 300:  # callers only pass failures; keep the types honest anyway
        return RetryLater(f"{label}: unexpected answer")
    try:
        raise_for_status(response, what)
    except DeliveryError as exc:
        return exc
    return RetryLater(f"{label}: unexpected answer")
