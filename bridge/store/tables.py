"""What both backends read the same way: the job row's columns, the local adapter's tables."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bridge.store.outbox import CLOCK_SLACK, MAX_DUE_AHEAD, STATUSES

# Pending and due: on time, or booked by a clock ahead of ours (either sign of it; see
# outbox.CLOCK_SLACK). ``{now}`` is the backend's placeholder for the current time.
DUE = (
    "(due_at <= {now} OR due_at > {now} + "
    + repr(MAX_DUE_AHEAD)
    + " OR updated_at > {now} + "
    + repr(CLOCK_SLACK)
    + ")"
)

JOB_COLUMNS = (
    "j.id, j.event_id, j.adapter, j.action, j.status, j.attempts, j.due_at, j.created_at,"
    " j.updated_at, j.last_error, j.result, e.domain, e.uuid, e.event, e.payload, e.recovered"
)
LOCAL = {
    "calls": (
        "local_calls",
        (
            "call_key",
            "uuid",
            "direction",
            "client",
            "extension",
            "line",
            "started_at",
            "talk_seconds",
            "total_seconds",
            "result",
            "user_id",
            "contact_id",
            "recording_url",
        ),
        "id, started_at, direction, client, extension, line, talk_seconds, result, user_id,"
        " contact_id, uuid",
    ),
    "tasks": (
        "local_tasks",
        (
            "call_key",
            "uuid",
            "client",
            "title",
            "description",
            "due_at",
            "user_id",
            "contact_id",
        ),
        "id, due_at, client, title, user_id, contact_id, uuid",
    ),
}


def by_adapter(rows: Iterable[Any]) -> dict[str, dict[str, int]]:
    """(adapter, status, count) rows → adapter → every status → count."""
    out: dict[str, dict[str, int]] = {}
    for adapter, status, n in rows:
        out.setdefault(adapter, dict.fromkeys(STATUSES, 0))[status] = n
    return out
