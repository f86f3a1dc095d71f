"""The storage seam: what the core asks of a database, at the level of what the core does.

Two backends implement :class:`Storage`: SQLite (``bridge/store/sqlite.py``, the embedded
default, one ``serve`` per file) and PostgreSQL (``bridge/store/postgres.py``, several
replicas on one database). Nothing outside ``bridge/store/`` sees SQL or a connection: the
receive path appends events, the workers claim, renew and book jobs, the pipeline and the
adapters keep per-call and per-adapter records, the CLI, metrics and the console read counts
and lists, and everything that must happen once across replicas (an adapter's deliveries, an
OAuth refresh, the history sweep, retention, the onlinePBX login and its request rate) goes
through :meth:`Storage.lock`, :meth:`Storage.try_lead` or :meth:`Storage.rate_slot`.

The contract suite (``tests/store/``) runs every method over both backends.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from bridge.adapter.locks import ProcessLocks
    from bridge.store.events import IncomingEvent, Stored
    from bridge.store.outbox import Job

BOOKABLE = ("done", "pending", "dead")  # what a run can end in (outbox.DONE, PENDING, DEAD)
LEASE_SECONDS = 30.0  # a claimed job is its worker's for this long, renewed while it runs

PlannedJobs = dict[str, list[tuple[str, str]]]
"""event type → the (adapter, action) jobs one event of that type causes."""


class StorageError(Exception):
    """The database could not commit (or be reached); nothing may be acknowledged."""


class StorageBusy(StorageError):
    """Another process already serves from this storage and it cannot be shared."""


def process_owner() -> str:
    """This process's name on the leases it takes: host, pid and a random tag (pids repeat)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def redact_url(url: str) -> str:
    """The URL without its password: the user info's, and a ``password`` query parameter
    (libpq and asyncpg take either)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # an unparsable URL: nothing of it is safe to show
        return "(the URL, unparsable)"
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = "&".join(
        f"{piece.partition('=')[0]}=***" if _is_password(piece) else piece
        for piece in parts.query.split("&")
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def url_schema(url: str) -> str:
    """The schema a PostgreSQL URL's ``search_path`` names (default ``public``); ValueError
    when it is not one plain name (the bridge's locks and channel are named after it)."""
    query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "search_path"), "public")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema):
        raise ValueError(
            f"search_path {schema!r} is not one plain schema name (letters, digits, _)"
        )
    return schema


def url_passwords(url: str) -> list[str]:
    """Every password ``url`` holds, as written and decoded (for the log redactor)."""
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
    except ValueError:
        return []
    found += [p.partition("=")[2] for p in parts.query.split("&") if _is_password(p)]
    return [s for p in found if p for s in {p, unquote(p)}]


def _is_password(query_piece: str) -> bool:
    return unquote(query_piece.partition("=")[0]).lower() == "password"


class Storage(ABC):
    """Every port of the storage; see the module docstring."""

    backend: ClassVar[str]

    def __init__(self, *, owner: str | None = None, lease_seconds: float = LEASE_SECONDS) -> None:
        self.owner = owner or process_owner()
        self.lease_seconds = lease_seconds
        self.migrated: tuple[int, int] = (0, 0)  # schema version before and after opening

    # --- lifecycle ----------------------------------------------------------------------

    @property
    @abstractmethod
    def where(self) -> str:
        """Where the data lives, safe to print (a path, or the URL without its password)."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections, locks and leads; closing twice is harmless."""

    @abstractmethod
    async def schema_version(self) -> int:
        """The migration the database is at."""

    @abstractmethod
    async def hold_instance(self) -> None:
        """Called by ``serve`` only: StorageBusy if this storage cannot take one more server
        (SQLite: a second ``serve`` on one file). PostgreSQL takes any number of replicas."""

    @abstractmethod
    async def ping_write(self, now: float) -> None:
        """Prove a commit reaches the database now (for /readyz); StorageError if not."""

    @abstractmethod
    async def probe_event_write(self, now: float) -> None:
        """Prove an event-sized commit goes through now (a row put into ``events`` and taken
        out in one transaction): after a failed event commit only this says events fit again."""

    @abstractmethod
    async def newest_event_at(self) -> float | None:
        """``received_at`` of the newest stored event (retention never prunes past it)."""

    @property
    def last_commit_failed(self) -> bool:
        """The most recent commit attempted failed (readiness reflects it)."""
        return False

    # --- events -------------------------------------------------------------------------

    @abstractmethod
    async def append(
        self, events: Sequence[IncomingEvent], planned: PlannedJobs, now: float
    ) -> tuple[list[Stored], set[str]]:
        """Insert ``events`` and the jobs they cause in ONE transaction, committed when this
        returns. A repeat of a stored ``(domain, uuid, event)`` (also within ``events``) is a
        duplicate and causes nothing. Returns one result per event and the adapters that got
        jobs (other replicas are woken for them). StorageError: nothing was stored."""

    @abstractmethod
    async def final_uuids(
        self, uuids: Sequence[str], domain: str, events: Sequence[str]
    ) -> set[str]:
        """Which of ``uuids`` already have one of ``events`` under ``domain`` (or none given)."""

    # --- jobs ---------------------------------------------------------------------------

    @abstractmethod
    async def claim(
        self, adapter: str, limit: int, now: float, *, live: int | None = None
    ) -> list[Job]:
        """Mark due pending jobs running under this process's lease (expiring
        ``lease_seconds`` from ``now``) and return them, in one transaction.

        The fast lane: live jobs (``tables.LIVE_LANE``) come first, before any post-call
        job or retry, oldest due first. Without ``live``: up to ``limit`` jobs in all, live
        ones first; with ``live=k``: up to ``k`` live jobs plus up to ``limit`` others (a
        worker's two budgets, so a full post-call lane never holds a card back).

        Per-call order: a job is taken only while no other job of its adapter and call
        (domain/uuid) is running and no earlier one (lower id) is pending, so the jobs of
        one call run one at a time, in arrival order. Jobs another replica claims at the
        same moment are skipped, never taken twice."""

    @abstractmethod
    async def renew(self, job_ids: Sequence[int], now: float) -> int:
        """Extend this process's leases on ``job_ids``; how many it still holds."""

    async def book(
        self,
        job_id: int,
        status: str,
        now: float,
        *,
        result: str | None = None,
        error: str | None = None,
        due_at: float | None = None,
    ) -> bool:
        """Record a claimed job's outcome (done/pending/dead). False when this process no
        longer holds its lease (it expired and another worker took the job)."""
        if status not in BOOKABLE:
            raise ValueError(f"cannot book a job as {status!r}")
        return await self._book(job_id, status, now, result, error, due_at)

    @abstractmethod
    async def _book(
        self, job_id: int, status: str, now: float, result: Any, error: Any, due_at: Any
    ) -> bool:
        """:meth:`book` once the status is known to be one a job may end a run in."""

    @abstractmethod
    async def release(self, job_id: int, now: float) -> None:
        """Put a job interrupted by shutdown back to pending without counting the attempt."""

    @abstractmethod
    async def requeue_expired(self, now: float, adapter: str | None = None) -> int:
        """Running jobs whose lease has expired (their worker died) are pending again; a job
        under a live lease, also another replica's, is never touched."""

    @abstractmethod
    async def next_due(self, adapter: str, now: float, *, lane: str | None = None) -> float | None:
        """When the adapter's next claimable job is due (now for one a clock ahead booked);
        only one lane's with ``lane`` ("live" or "post"). A job waiting for its call's turn is left
        out: the job it waits for is counted, or wakes the worker when it is booked."""

    @abstractmethod
    async def call_events(self, domain: str, uuid: str) -> set[str]:
        """The stored event names of one call (``call_user_start:<ext>`` as stored): what a
        live job asks before showing a card (has the call ended, was it answered)."""

    @abstractmethod
    async def job_counts(self) -> dict[str, dict[str, int]]:
        """adapter → status → count."""

    @abstractmethod
    async def list_jobs(
        self, *, status: str | None = None, adapter: str | None = None, limit: int = 50
    ) -> list[Job]: ...

    @abstractmethod
    async def get_job(self, job_id: int) -> Job | None: ...

    @abstractmethod
    async def retry_dead(self, job_ids: Sequence[int] | None, now: float) -> int:
        """Dead jobs (all, or ``job_ids``) pending again, due now, attempts and age restarted."""

    # --- per-call, per-adapter and bridge records ----------------------------------------

    @abstractmethod
    async def call_record(self, adapter: str, call_key: str, name: str) -> str | None:
        """What ``adapter`` created in its CRM for one call (``crm_objects``)."""

    @abstractmethod
    async def put_call_record(
        self, adapter: str, call_key: str, name: str, value: str, now: float
    ) -> None: ...

    @abstractmethod
    async def adapter_value(self, adapter: str, key: str) -> str | None:
        """Long-lived adapter data (``adapter_state``: OAuth pairs, cached ids)."""

    @abstractmethod
    async def put_adapter_value(self, adapter: str, key: str, value: str, now: float) -> None: ...

    @abstractmethod
    async def meta(self, key: str) -> str | None:
        """Bridge-wide values: generated token and signing key, onlinePBX session, cursors."""

    @abstractmethod
    async def put_meta(self, key: str, value: str) -> None: ...

    @abstractmethod
    async def put_meta_if_absent(self, key: str, value: str) -> str:
        """Store ``value`` unless the key exists; what is stored (every replica agrees)."""

    # --- the local adapter's records ------------------------------------------------------

    @abstractmethod
    async def local_contact(self, phone: str) -> dict[str, Any] | None:
        """``{"id", "name", "owner_id"}`` of the local contact for an E.164 number."""

    @abstractmethod
    async def local_add_contact(
        self, contact_id: str, phone: str, name: str, owner_id: str | None, created_at: str
    ) -> dict[str, Any]:
        """Create the contact unless one exists for ``phone``; the stored one."""

    @abstractmethod
    async def local_add(self, kind: str, row: dict[str, Any]) -> int:
        """Insert a ``calls`` or ``tasks`` row keyed by ``row["call_key"]`` (once per call);
        its id."""

    @abstractmethod
    async def local_list(self, kind: str, limit: int = 50) -> list[dict[str, Any]]:
        """Newest ``calls`` or ``tasks`` first."""

    @abstractmethod
    async def local_count(self, kind: str) -> int: ...

    @abstractmethod
    async def local_live_ring(self, row: dict[str, Any]) -> None:
        """A call rings for ``row["extension"]``: add the call in progress (``row``: call_key,
        domain, uuid, direction, client, line, extension, user_id, contact_id, started_at,
        updated_at) or add the extension to the ones that rang (once each). An answered
        call stays answered."""

    @abstractmethod
    async def local_live_answer(self, row: dict[str, Any]) -> None:
        """``row["extension"]`` took the call: its state is ``answered`` (added if a ring
        was never seen)."""

    @abstractmethod
    async def local_live_end(self, call_key: str) -> bool:
        """The call is over: no longer in progress. Whether it was."""

    @abstractmethod
    async def local_live_list(
        self, limit: int = 200, since: float | None = None
    ) -> list[dict[str, Any]]:
        """Calls in progress, newest first, updated at or after ``since``: call_key, domain,
        uuid, direction, client, line, state (``ringing``/``answered``), ringing (the
        extensions that rang, in order), answered_by, user_id, contact_id, started_at,
        updated_at."""

    # --- once across replicas -------------------------------------------------------------

    @property
    @abstractmethod
    def locks(self) -> ProcessLocks:
        """Named exclusive locks shared by every process on this storage, in the adapter
        SDK's shape (``hold(name, wait)``; the OAuth refresh takes one)."""

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        """An exclusive lock held across every process on this storage while the block
        runs (an OAuth refresh, an onlinePBX login). Waits for the holder."""
        return self.locks.hold(name)

    @abstractmethod
    async def try_lead(self, name: str) -> bool:
        """Take (or keep) the lead of ``name`` for this process if no live process has it.
        The lead lasts until :meth:`resign` or this process's death or disconnection."""

    @abstractmethod
    def leads(self, name: str) -> bool:
        """This process holds the lead of ``name`` (as far as it knows right now)."""

    @abstractmethod
    async def resign(self, name: str) -> None: ...

    @abstractmethod
    async def rate_slot(self, name: str, interval: float) -> float:
        """Reserve the next send slot of a rate shared by every process (one request per
        ``interval`` seconds); the seconds to wait before sending."""

    @abstractmethod
    def listen(self, wake: Callable[[set[str]], None]) -> None:
        """Call ``wake(adapters)`` when another process stores jobs for those adapters."""

    async def notify(self, adapters: set[str]) -> None:
        """Tell every process that ``adapters`` have new due jobs (the CLI's retry)."""

    # --- maintenance ----------------------------------------------------------------------

    @abstractmethod
    async def prune(self, cutoff: float, chunk: int) -> dict[str, int]:
        """Delete done jobs, then events with no job left and their calls' CRM ids, older
        than ``cutoff``, ``chunk`` rows per short transaction. Rows deleted per table."""
