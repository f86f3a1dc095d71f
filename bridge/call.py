"""The normalized call record every adapter receives, built from a stored onlinePBX event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.phones import Extension, NumberParser, Phone
from bridge.safetext import clean

BUSY_CAUSES = frozenset({"USER_BUSY"})
FAILED_CAUSES = frozenset(
    {
        "CALL_REJECTED",
        "UNALLOCATED_NUMBER",
        "SUBSCRIBER_ABSENT",
        "INVALID_NUMBER_FORMAT",
        "NO_ROUTE_DESTINATION",
        "NUMBER_CHANGED",
        "DESTINATION_OUT_OF_ORDER",
    }
)
#: Causes saying the number exists but its subscriber could not be reached right now.
UNREACHABLE_CAUSES = frozenset({"SUBSCRIBER_ABSENT", "DESTINATION_OUT_OF_ORDER"})

# Causes that mean the number itself is wrong (CRMs have a "wrong number" outcome for these).
WRONG_NUMBER_CAUSES = frozenset({"UNALLOCATED_NUMBER", "INVALID_NUMBER_FORMAT", "NUMBER_CHANGED"})

CALL_START = "call_start"
CALL_USER_START = "call_user_start"
CALL_ANSWERED = "call_answered"
CALL_END = "call_end"
CALL_MISSED = "call_missed"
CALL_OVER_EVENTS = (CALL_END, CALL_MISSED)
INBOUND = "inbound"
OUTBOUND = "outbound"


@dataclass(frozen=True, slots=True)
class Call:
    """One finished call, as the CRM should see it.

    ``client`` is None for internal (extension-to-extension) calls and for callers whose
    number cannot be read (hidden or malformed); such calls cause no CRM action.
    """

    uuid: str
    domain: str
    event: str
    direction: str  # "inbound" | "outbound"
    client: Phone | None
    client_raw: str
    extension: str | None
    gateway: str
    started_at: datetime
    ended_at: datetime
    total_seconds: int
    talk_seconds: int
    hangup_cause: str
    hangup_by: str
    recording_url: str | None
    recovered: bool = False
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def answered(self) -> bool:
        # NORMAL_CLEARING also appears on unanswered calls: talk time is the only truth.
        return self.talk_seconds > 0

    @property
    def outcome(self) -> str:
        """``answered``, ``missed`` (inbound nobody took), ``busy``, ``failed`` or ``no_answer``."""
        if self.answered:
            return "answered"
        if self.missed:
            return "missed"
        if self.hangup_cause in BUSY_CAUSES:
            return "busy"
        if self.hangup_cause in FAILED_CAUSES:
            return "failed"
        return "no_answer"

    @property
    def wrong_number(self) -> bool:
        """The call failed because the number does not exist or is malformed."""
        return not self.answered and self.hangup_cause in WRONG_NUMBER_CAUSES

    @property
    def unreachable(self) -> bool:
        """The call failed because the subscriber was absent or their line out of order."""
        return not self.answered and self.hangup_cause in UNREACHABLE_CAUSES

    @property
    def missed(self) -> bool:
        return self.event == CALL_MISSED

    @property
    def internal(self) -> bool:
        return self.client is None

    @property
    def key(self) -> str:
        """``domain/uuid``: the call's identity in the bridge (``crm_objects.call_key``)."""
        return f"{self.domain}/{self.uuid}"

    @property
    def client_number(self) -> str:
        """The client's number in E.164, or as onlinePBX sent it when it could not be read."""
        return self.client.e164 if self.client is not None else self.client_raw

    @property
    def line(self) -> str:
        """Our side of the call: the PBX line (gateway) it came in on or went out by, else the
        extension; empty when neither is known."""
        return self.gateway or self.extension or ""

    def parties(self, line: str | None = None) -> tuple[str, str]:
        """``(from, to)``: the client and our ``line`` (default :attr:`line`) by direction."""
        ours = self.line if line is None else line
        client = self.client_number
        return (client, ours) if self.direction == INBOUND else (ours, client)


def _int(payload: dict[str, Any], key: str) -> int:
    value = str(payload.get(key) or "").strip()
    return int(value) if value else 0


def build_call(payload: dict[str, Any], parser: NumberParser, *, recovered: bool = False) -> Call:
    """Turn an (already validated) webhook payload into a :class:`Call`."""
    event = str(payload.get("event", ""))
    direction = str(payload.get("direction") or "").strip().lower()
    if event == CALL_MISSED or direction != OUTBOUND:
        direction = INBOUND  # call_missed carries no direction: it is always inbound
    caller = str(payload.get("caller") or "")
    callee = str(payload.get("callee") or "")
    client_raw, staff_raw = (caller, callee) if direction == INBOUND else (callee, caller)
    client = parser.parse(client_raw)
    staff = parser.parse(staff_raw)
    extension = staff.number if isinstance(staff, Extension) else None
    if not isinstance(client, Phone):
        client = None

    total = _int(payload, "call_duration")
    talk = _int(payload, "dialog_duration")
    stamp = _int(payload, "date")
    # `date` is when the event was sent: for call_end / call_missed, the end of the call.
    ended = datetime.fromtimestamp(stamp, UTC)
    started = ended - timedelta(seconds=total)
    return Call(
        uuid=str(payload.get("uuid", "")),
        domain=str(payload.get("domain") or ""),
        event=event,
        direction=direction,
        client=client,
        client_raw=clean(client_raw),
        extension=extension,
        gateway=clean(str(payload.get("gateway") or "")),
        started_at=started,
        ended_at=ended,
        total_seconds=total,
        talk_seconds=talk,
        hangup_cause=clean(str(payload.get("hangup_cause") or "")),
        hangup_by=clean(str(payload.get("hangup_by") or "")),
        recording_url=str(payload.get("download_url") or "") or None,
        recovered=recovered,
        raw=payload,
    )
