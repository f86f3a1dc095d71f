"""What both backends read the same way: the job row's columns, the local adapter's tables."""

from __future__ import annotations

from collections.abc import Callable, Iterable
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

# The fast lane: live jobs (bridge.adapter.contract.LIVE_ACTIONS, spelled here because the
# store imports no adapter code; tests/test_live.py holds the two equal). They are claimed
# before any other job of their adapter, through their own partial index ``jobs_live``
# (migration 4), whose WHERE this text must repeat exactly for SQLite to use it.
LIVE_LANE = ("ringing", "answered", "over")
LIVE_IN = "j.action IN ('ringing', 'answered', 'over')"
LANES = {"live": LIVE_IN, "post": f"NOT {LIVE_IN}", None: "1 = 1"}

# Per-call order: a job waits while another job of its adapter and call (the events'
# domain/uuid) is running, or an earlier one (lower id: it arrived first) is still pending.
# Done and dead ones never hold a call back; live jobs are retried only for a short while
# (deliver/worker.py), so a failing card delays the call's post-call job by seconds, not hours.
# ``j`` is the job, ``e`` its event.
# CROSS JOIN fixes SQLite's join order (PostgreSQL plans it as a plain join): from the
# call's few events (the UNIQUE (domain, uuid, event) index) to their jobs (UNIQUE
# (event_id, …)); left to itself SQLite walked every pending job through the status index.
IN_TURN = (
    "NOT EXISTS (SELECT 1 FROM events e2 CROSS JOIN jobs k"
    " WHERE e2.domain = e.domain AND e2.uuid = e.uuid AND k.event_id = e2.id"
    " AND k.adapter = j.adapter AND k.id <> j.id"
    " AND (k.status = 'running' OR (k.status = 'pending' AND k.id < j.id)))"
)

# The same rule for PostgreSQL's claim, which names no event beside the job: a correlated
# probe per candidate (OFFSET 0 keeps the planner from flattening it into an anti-join over
# every pending job), so a claim walking jobs_pending in due order stops after its LIMIT.
IN_TURN_EACH = (
    "NOT EXISTS (SELECT 1 FROM events e CROSS JOIN events e2 CROSS JOIN jobs k"
    " WHERE e.id = j.event_id AND e2.domain = e.domain AND e2.uuid = e.uuid"
    " AND k.event_id = e2.id AND k.adapter = j.adapter AND k.id <> j.id"
    " AND (k.status = 'running' OR (k.status = 'pending' AND k.id < j.id)) OFFSET 0)"
)

# Pending jobs of one adapter and lane booked by a clock that was ahead (see
# outbox.CLOCK_SLACK: due now), by two index ranges (jobs_pending / jobs_live on due_at,
# jobs_status on updated_at) rather than a scan of every pending job. Placeholders: {adapter},
# {ahead} (now + MAX_DUE_AHEAD), {slack} (now + CLOCK_SLACK), {lane}.
AHEAD = (
    "SELECT j.id FROM jobs j WHERE j.status = 'pending' AND j.adapter = {adapter} AND {lane}"
    " AND j.due_at > {ahead} UNION ALL"
    " SELECT j.id FROM jobs j WHERE j.status = 'pending' AND j.updated_at > {slack}"
    " AND j.adapter = {adapter} AND {lane}"
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


# The local adapter's calls in progress (``local_live``): one row per call, written by its
# ringing / answered / over. Both backends run the same statements; only the placeholder and
# the substring function differ.
LIVE_COLUMNS = (
    "call_key",
    "domain",
    "uuid",
    "direction",
    "client",
    "line",
    "state",
    "ringing",
    "answered_by",
    "user_id",
    "contact_id",
    "started_at",
    "updated_at",
)


def live_upsert(state: str, mark: Callable[[int], str], find: str) -> str:
    """Insert the call in progress or update it for one ring (``state`` ringing) or the
    answer. ``ringing`` keeps each extension once, in order; a ring never undoes an answer
    (events arrive out of order), and the first contact and user found are kept."""
    marks = ", ".join(mark(i) for i in range(1, len(LIVE_COLUMNS) + 1))
    rang = (
        f"CASE WHEN {find}(local_live.ringing, excluded.ringing) > 0 THEN local_live.ringing"
        " ELSE local_live.ringing || substr(excluded.ringing, 2) END"
    )
    if state == "answered":
        sets = (
            "state = 'answered', answered_by = excluded.answered_by,"
            " user_id = COALESCE(excluded.user_id, local_live.user_id)"
        )
    else:
        sets = "user_id = COALESCE(local_live.user_id, excluded.user_id)"
    return (
        f"INSERT INTO local_live ({', '.join(LIVE_COLUMNS)}) VALUES ({marks})"
        f" ON CONFLICT (call_key) DO UPDATE SET ringing = {rang}, {sets},"
        " contact_id = COALESCE(local_live.contact_id, excluded.contact_id),"
        " updated_at = excluded.updated_at"
    )


def live_values(row: dict[str, Any], state: str) -> list[Any]:
    """The ``live_upsert`` parameters for a ring or answer ``row`` (see Storage.local_live_ring)."""
    ext = str(row.get("extension") or "")
    values = {
        **row,
        "state": state,
        "ringing": f",{ext}," if ext else ",",
        "answered_by": (ext or None) if state == "answered" else None,
    }
    return [values.get(c) for c in LIVE_COLUMNS]


def live_listed(record: Any) -> dict[str, Any]:
    """A ``local_live`` row as the ports hand it out (``ringing`` as a list)."""
    out = dict(record)
    out["ringing"] = [x for x in out["ringing"].split(",") if x]
    return out
