"""Numbered schema migrations: one list, written once for both backends.

Each migration is a template: ``{id}`` is the integer key (SQLite's rowid alias, PostgreSQL's
identity column), ``{ref}`` a column referring to one, ``{float}`` a UNIX time. The version a
database is at is ``meta.schema_version``. Opening a storage reads it: a database from a newer
pbx-bridge is refused (its schema may mean things this code does not know), an older one is
migrated, all pending steps in one transaction that also records the new version.
Migrations run at start and by ``pbx-bridge migrate``, always under an exclusive lock (SQLite:
the write lock of ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock), so two
replicas starting together never apply one twice: the second waits, then finds the work done.

Add a migration by appending to the list; never edit one that has shipped.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the schema of the first releases (IF NOT EXISTS: such files already have it).
    """
    CREATE TABLE IF NOT EXISTS meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS events (
        id          {id},
        domain      TEXT NOT NULL,
        uuid        TEXT NOT NULL,
        event       TEXT NOT NULL,
        payload     TEXT NOT NULL,
        received_at {float} NOT NULL,
        recovered   INTEGER NOT NULL DEFAULT 0,
        UNIQUE (domain, uuid, event)
    );
    CREATE TABLE IF NOT EXISTS jobs (
        id         {id},
        event_id   {ref} NOT NULL REFERENCES events (id),
        adapter    TEXT NOT NULL,
        action     TEXT NOT NULL,
        status     TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'running', 'done', 'dead')),
        attempts   INTEGER NOT NULL DEFAULT 0,
        due_at     {float} NOT NULL,
        created_at {float} NOT NULL,
        updated_at {float} NOT NULL,
        last_error TEXT,
        result     TEXT,
        UNIQUE (event_id, adapter, action)
    );
    CREATE INDEX IF NOT EXISTS jobs_pending ON jobs (adapter, due_at) WHERE status = 'pending';
    CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, updated_at);
    CREATE TABLE IF NOT EXISTS crm_objects (
        adapter    TEXT NOT NULL,
        call_key   TEXT NOT NULL,
        name       TEXT NOT NULL,
        value      TEXT NOT NULL,
        created_at {float} NOT NULL,
        PRIMARY KEY (adapter, call_key, name)
    );
    CREATE INDEX IF NOT EXISTS crm_objects_call ON crm_objects (call_key);
    CREATE TABLE IF NOT EXISTS adapter_state (
        adapter    TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      TEXT NOT NULL,
        updated_at {float} NOT NULL,
        PRIMARY KEY (adapter, key)
    )
    """,
    # 2: job leases; the local adapter's tables (created by the adapter itself before);
    # shared rate slots.
    """
    ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
    ALTER TABLE jobs ADD COLUMN lease_expires {float};
    CREATE INDEX IF NOT EXISTS jobs_running ON jobs (lease_expires) WHERE status = 'running';
    CREATE TABLE IF NOT EXISTS local_contacts (
        id         TEXT PRIMARY KEY,
        phone      TEXT NOT NULL UNIQUE,
        name       TEXT NOT NULL,
        owner_id   TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS local_calls (
        id            {id},
        call_key      TEXT NOT NULL UNIQUE,
        uuid          TEXT NOT NULL,
        direction     TEXT NOT NULL,
        client        TEXT NOT NULL,
        extension     TEXT,
        line          TEXT,
        started_at    TEXT NOT NULL,
        talk_seconds  INTEGER NOT NULL,
        total_seconds INTEGER NOT NULL,
        result        TEXT NOT NULL,
        user_id       TEXT,
        contact_id    TEXT,
        recording_url TEXT
    );
    CREATE TABLE IF NOT EXISTS local_tasks (
        id          {id},
        call_key    TEXT NOT NULL UNIQUE,
        uuid        TEXT NOT NULL,
        client      TEXT NOT NULL,
        title       TEXT NOT NULL,
        description TEXT NOT NULL,
        due_at      TEXT NOT NULL,
        user_id     TEXT,
        contact_id  TEXT
    );
    CREATE TABLE IF NOT EXISTS rate_slots (
        name    TEXT PRIMARY KEY,
        next_at {float} NOT NULL
    )
    """,
    # 3: the admin console's own tables (bridge/store/reports.py): refused webhooks (capped),
    # intake counters per hour, the search index of numbers and uuids, one row per ended call
    # (for the hourly chart), revoked sessions. (IF
    # NOT EXISTS: SQLite files of the console's first version created the first three.)
    """
    CREATE TABLE IF NOT EXISTS rejected_webhooks (
        id      {id},
        at      {float} NOT NULL,
        sender  TEXT NOT NULL,
        status  INTEGER NOT NULL,
        reason  TEXT NOT NULL,
        detail  TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE IF NOT EXISTS intake_hourly (
        hour    INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        n       BIGINT NOT NULL,
        PRIMARY KEY (hour, outcome)
    );
    CREATE TABLE IF NOT EXISTS admin_call_index (
        key      TEXT NOT NULL,
        event_id {ref} NOT NULL,
        PRIMARY KEY (key, event_id)
    ){norowid};
    CREATE TABLE IF NOT EXISTS admin_calls (
        domain   TEXT NOT NULL,
        uuid     TEXT NOT NULL,
        ended_at {float} NOT NULL,
        answered INTEGER NOT NULL,
        PRIMARY KEY (domain, uuid)
    );
    CREATE INDEX IF NOT EXISTS admin_calls_ended ON admin_calls (ended_at, answered);
    CREATE TABLE IF NOT EXISTS admin_revoked (
        nonce TEXT PRIMARY KEY,
        until {float} NOT NULL
    )
    """,
    # 4: the fast lane's index (live jobs are claimed first, see tables.LIVE_IN: the same
    # WHERE text); the local adapter's calls in progress (``ringing`` holds the extensions
    # that rang as ",101,102,": a membership test in SQL on both backends).
    """
    CREATE INDEX IF NOT EXISTS jobs_live ON jobs (adapter, due_at)
        WHERE status = 'pending' AND action IN ('ringing', 'answered', 'over');
    CREATE TABLE IF NOT EXISTS local_live (
        call_key    TEXT PRIMARY KEY,
        domain      TEXT NOT NULL,
        uuid        TEXT NOT NULL,
        direction   TEXT NOT NULL,
        client      TEXT NOT NULL,
        line        TEXT,
        state       TEXT NOT NULL,
        ringing     TEXT NOT NULL DEFAULT ',',
        answered_by TEXT,
        user_id     TEXT,
        contact_id  TEXT,
        started_at  {float} NOT NULL,
        updated_at  {float} NOT NULL
    );
    CREATE INDEX IF NOT EXISTS local_live_updated ON local_live (updated_at)
    """,
]

TYPES = {
    "sqlite": {
        "id": "INTEGER PRIMARY KEY",
        "ref": "INTEGER",
        "float": "REAL",
        "norowid": " WITHOUT ROWID",
    },
    "postgresql": {
        "id": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        "ref": "BIGINT",
        "float": "DOUBLE PRECISION",
        "norowid": "",
    },
}
LATEST = len(MIGRATIONS)


def statements(number: int, backend: str) -> list[str]:
    """Migration ``number``'s statements for ``backend`` (they contain no ';' of their own)."""
    script = MIGRATIONS[number - 1].format(**TYPES[backend])
    return [s.strip() for s in script.split(";") if s.strip()]


def too_new(found: int, where: str) -> str:
    return (
        f"the database at {where} is at schema version {found}, newer than this pbx-bridge"
        f" knows ({LATEST}): upgrade pbx-bridge (never run an older release on a migrated"
        " database)"
    )
