"""Checks on the fields the bridge relies on; everything else is kept as it came."""

from __future__ import annotations

import re
from typing import Any

from bridge.receive.parsing import KNOWN_FIELDS, RequestRejected
from bridge.settings import normalize_domain
from bridge.store.events import IncomingEvent

EARLIEST = 946_684_800  # 2000-01-01: onlinePBX did not exist before that
FUTURE_SLACK = 86_400  # a PBX clock a day ahead is odd but not absurd
MAX_DURATION = 7 * 86_400
MAX_VALUE = 2048  # characters in a known field
_EVENT = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "…")


def _whole(fields: dict[str, Any], key: str, low: int, high: int, what: str) -> None:
    value = fields.get(key)
    if value is None or value == "":
        return
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        raise RequestRejected(
            422, "invalid_field", f"{key} must be {what}, got {_shown(value)}", key
        )
    number = int(text)
    if not low <= number <= high:
        raise RequestRejected(
            422, "invalid_field", f"{key} is out of range ({low}..{high}): {number}", key
        )


def validate(fields: dict[str, Any], now: float, default_domain: str = "") -> IncomingEvent:
    """The event to store, or RequestRejected naming the field that is wrong.

    An event without ``domain`` is filed under ``default_domain`` (the configured onlinePBX
    account), so it deduplicates against the same call recovered from the call history.
    """
    for key in ("event", "uuid"):
        if not str(fields.get(key) or "").strip():
            raise RequestRejected(422, "missing_field", f"{key} is required", key)
    for key in KNOWN_FIELDS & fields.keys():
        value = fields[key]
        if len(value) > MAX_VALUE:
            raise RequestRejected(422, "invalid_field", f"{key} is longer than {MAX_VALUE}", key)
        if _CONTROL.search(value):
            raise RequestRejected(422, "invalid_field", f"{key} contains control characters", key)
    event = fields["event"].strip()
    if not _EVENT.match(event):
        raise RequestRejected(
            422, "invalid_field", f"event is not an event name: {_shown(event)}", "event"
        )
    uuid = fields["uuid"].strip()
    if len(uuid) > 128:
        raise RequestRejected(422, "invalid_field", "uuid is longer than 128 characters", "uuid")
    _whole(fields, "call_duration", 0, MAX_DURATION, "whole seconds")
    _whole(fields, "dialog_duration", 0, MAX_DURATION, "whole seconds")
    _whole(fields, "date", EARLIEST, int(now) + FUTURE_SLACK, "UNIX seconds")
    payload = dict(fields)
    if not str(payload.get("date") or "").strip():
        payload["date"] = str(int(now))  # the call time is needed downstream; arrival is closest
    return IncomingEvent(
        domain=normalize_domain(str(fields.get("domain") or "")) or default_domain,
        uuid=uuid,
        event=event,
        payload=payload,
    )
