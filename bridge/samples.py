"""Vendor-shaped onlinePBX events, for ``pbx-bridge send-sample`` and smoke tests.

Field for field as the onlinePBX documentation prints them (including uuids that are not
valid UUIDs); ``uuid`` and ``date`` are made fresh so each send is a new call.
"""

from __future__ import annotations

import secrets
import time

SAMPLES: dict[str, dict[str, str]] = {
    "call_start": {
        "domain": "onlinepbx.ru",
        "event": "call_start",
        "direction": "outbound",
        "caller": "505",
        "callee": "79111117960",
        "from_domain": "onlinepbx.ru",
        "to_domain": "",
        "gateway": "74991111282",
    },
    "call_user_start": {
        "domain": "onlinepbx.ru",
        "event": "call_user_start",
        "direction": "inbound",
        "caller": "79221111123",
        "callee": "101",
        "gateway": "73431111137",
    },
    "call_answered": {
        "domain": "onlinepbx.ru",
        "event": "call_answered",
        "direction": "outbound",
        "caller": "505",
        "callee": "79111117799",
        "to_domain": "",
        "gateway": "74991111112",
    },
    "call_end": {
        "domain": "onlinepbx.ru",
        "event": "call_end",
        "direction": "outbound",
        "caller": "145",
        "callee": "79502222919",
        "from_domain": "onlinepbx.ru",
        "to_domain": "onlinepbx.ru",
        "gateway": "74991111282",
        "call_duration": "149",
        "dialog_duration": "135",
        "hangup_cause": "NORMAL_CLEARING",
        "hangup_by": "caller",
    },
    "call_missed": {
        "domain": "onlinepbx.ru",
        "event": "call_missed",
        "caller": "79221111123",
        "from_domain": "onlinepbx.ru",
        "to_domain": "onlinepbx.ru",
        "gateway": "73431111137",
    },
}


def sample(event: str, uuid: str | None = None, now: float | None = None) -> dict[str, str]:
    if event not in SAMPLES:
        raise KeyError(f"no sample for {event!r}; known: {', '.join(SAMPLES)}")
    body = dict(SAMPLES[event])
    # Vendor-style id: UUID-shaped, with letters outside hex like the vendor's own samples.
    h = secrets.token_hex(16)
    body["uuid"] = uuid or f"{h[:8]}-{h[8:12]}-4{h[13:15]}g-{h[16:20]}-{h[20:32]}"
    body["date"] = str(int(now if now is not None else time.time()))
    return body
