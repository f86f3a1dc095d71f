"""A call-history record (``mongo_history/search.json``) as the webhook that was lost.

The synthesized payload has the fields :func:`bridge.call.build_call` reads, so a recovered
call reaches the CRM exactly as a delivered webhook would have.
"""

from __future__ import annotations

from typing import Any

from bridge.call import CALL_END, CALL_MISSED, INBOUND, OUTBOUND

LOCAL = "local"
RECOVERED_FROM = "mongo_history"


def _int(record: dict[str, Any], key: str) -> int:
    try:
        return int(float(record.get(key) or 0))
    except (TypeError, ValueError):
        return 0


def direction(record: dict[str, Any]) -> str:
    """``inbound``, ``outbound`` or ``local`` (extension to extension) from ``accountcode``."""
    code = str(record.get("accountcode") or "").strip().lower()
    if code == OUTBOUND:
        return OUTBOUND
    if code == LOCAL:
        return LOCAL
    return INBOUND  # "inbound" and "missed"


def finished(record: dict[str, Any]) -> bool:
    return bool(str(record.get("uuid") or "").strip()) and _int(record, "end_stamp") > 0


def answered_by(record: dict[str, Any]) -> str | None:
    """The extension that took the call: the first ``events[type=user]`` with an answer."""
    events = record.get("events")
    if not isinstance(events, list):
        return None
    for event in events:
        if (
            isinstance(event, dict)
            and event.get("type") == "user"
            and _int(event, "answered_stamp") > 0
            and str(event.get("number") or "").strip()
        ):
            return str(event["number"]).strip()
    return None


def event_type(record: dict[str, Any]) -> str:
    """``call_missed`` for an inbound call nobody talked on, else ``call_end``."""
    talk = _int(record, "user_talk_time")
    missed = str(record.get("accountcode") or "").lower() == "missed"
    return CALL_MISSED if direction(record) == INBOUND and (talk == 0 or missed) else CALL_END


def as_webhook(record: dict[str, Any], domain: str) -> dict[str, str]:
    """The webhook payload onlinePBX would have sent for this finished call."""
    way = direction(record)
    event = event_type(record)
    caller = str(record.get("caller_id_number") or "").strip()
    callee = str(record.get("destination_number") or "").strip()
    if way == INBOUND:
        callee = answered_by(record) or callee
    start, end = _int(record, "start_stamp"), _int(record, "end_stamp")
    duration = _int(record, "duration") or max(0, end - start)
    payload = {
        "domain": domain,
        "event": event,
        "uuid": str(record["uuid"]).strip(),
        "caller": caller,
        "callee": callee,
        "gateway": str(record.get("gateway") or "").strip(),
        "date": str(end),
        "call_duration": str(duration),
        "dialog_duration": str(_int(record, "user_talk_time")),
        "hangup_cause": str(record.get("hangup_cause") or ""),
        "recovered_from": RECOVERED_FROM,
    }
    if event == CALL_END:
        payload["direction"] = OUTBOUND if way == OUTBOUND else INBOUND
    return payload
