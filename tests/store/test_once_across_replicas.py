"""What issue #15 says must hold across replicas, each checked with two replicas (two storages,
or two whole apps) on one real PostgreSQL schema, so that each fails if its mechanism is
taken out: one onlinePBX login and its 5 requests/s in total, one history sweeper, one
retention pruner, one OAuth refresh, one contact for a new caller.
"""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from bridge import registry
from bridge.adapter import Adapter, CheckResult, Contact
from bridge.adapter.oauth import OAuthTokens, TokenPair
from bridge.onlinepbx import reconcile
from bridge.onlinepbx.client import OnlinePBX
from bridge.redact import Redactor
from bridge.samples import sample
from bridge.settings import StorageSettings
from bridge.store import DONE, open_storage
from bridge.store.retention import Pruner
from bridge.store.state import AdapterState
from tests.conftest import WEBHOOK, FakeClock


@pytest.fixture
async def replicas(postgres_url):
    """``open(owner)``: one more replica's storage on the test's schema."""
    opened = []

    async def open_(owner: str):
        storage = await open_storage(StorageSettings(url=postgres_url), owner=owner)
        opened.append(storage)
        return storage

    yield open_
    for storage in opened:
        await storage.close()


class Stamped(list):
    """The fake PBX's request log, with each request's arrival time."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def append(self, item: Any) -> None:
        self.at.append(time.monotonic())
        super().append(item)


async def test_onlinepbx_one_login_and_5_requests_a_second_across_replicas(
    pbx, pbx_settings, replicas
) -> None:
    pbx.requests = Stamped()
    settings = pbx_settings().onlinepbx  # rate_limit 5
    a, b = await replicas("replica-a"), await replicas("replica-b")
    apis = [OnlinePBX(settings, db, redactor=Redactor()) for db in (a, b)]
    try:
        await asyncio.gather(*(api.history(0, 10) for api in apis for _ in range(3)))
    finally:
        for api in apis:
            await api.aclose()
    assert pbx.logins == 1  # the other replica adopted the stored session key
    gaps = [t1 - t0 for t0, t1 in zip(pbx.requests.at, pbx.requests.at[1:], strict=False)]
    assert len(pbx.requests) == 7 and min(gaps) > 0.15, gaps  # 1/5 s apart, both together


async def test_one_replica_sweeps_the_history_at_a_time(pbx, pbx_settings, replicas) -> None:
    sweeps = {"replica-a": 0, "replica-b": 0}

    def reconciler(db) -> reconcile.Reconciler:
        api = OnlinePBX(pbx_settings().onlinepbx, db, redactor=Redactor())
        r = reconcile.Reconciler(api, None, db)  # a dry run: counts, stores nothing

        async def sweep(lookback: float, name: str = db.owner) -> reconcile.Tally:
            sweeps[name] += 1
            return reconcile.Tally()

        r.sweep = sweep  # type: ignore[method-assign]
        return r

    a, b = await replicas("replica-a"), await replicas("replica-b")
    loops = [reconcile.sweep_forever(reconciler(db), 0.05, 60) for db in (a, b)]
    tasks = [asyncio.create_task(loop) for loop in loops]
    try:
        await asyncio.sleep(0.5)
        leader = max(sweeps, key=sweeps.__getitem__)
        assert sweeps[leader] >= 3 and min(sweeps.values()) == 0, sweeps
        await (a if leader == "replica-a" else b).close()  # the sweeping replica dies
        other = "replica-b" if leader == "replica-a" else "replica-a"
        await asyncio.sleep(0.5)
        assert sweeps[other] >= 3, sweeps  # the other took the sweep over
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_one_replica_prunes_at_a_time(replicas, monkeypatch) -> None:
    runs = {"replica-a": 0, "replica-b": 0}

    async def once(self: Pruner) -> dict[str, int]:
        runs[self._storage.owner] += 1
        return {}

    monkeypatch.setattr(Pruner, "once", once)
    a, b = await replicas("replica-a"), await replicas("replica-b")
    pruners = [Pruner(db, retention_days=30, every=0.05) for db in (a, b)]
    for pruner in pruners:
        pruner.start()
    try:
        await asyncio.sleep(0.5)
        assert max(runs.values()) >= 3 and min(runs.values()) == 0, runs
    finally:
        for pruner in pruners:
            await pruner.stop()


async def test_two_replicas_refreshing_one_oauth_pair_at_once_refresh_once(replicas) -> None:
    clock, calls = FakeClock(), []

    async def refresh(token: str) -> TokenPair:
        calls.append(token)
        await asyncio.sleep(0.05)  # a slow vendor: the other replica must wait, not race
        return TokenPair(f"access-{len(calls)}", f"refresh-{len(calls)}", clock() + 3600)

    def tokens(db) -> OAuthTokens:
        state = AdapterState(db, "crm")
        # state.locks: the storage's own locks, on PostgreSQL advisory locks
        return OAuthTokens(
            state,
            refresh,
            initial_refresh_token="first",
            clock=clock,
            locks=state.locks,
            lock_name="oauth:crm",
        )

    a, b = await replicas("replica-a"), await replicas("replica-b")
    got = await asyncio.gather(tokens(a).access_token(), tokens(b).access_token())
    assert got == ["access-1", "access-1"] and calls == ["first"]


# --- find-or-create of a contact, two whole apps delivering -------------------------------

CREATED: list[str] = []
CONTACTS: dict[str, Contact] = {}


class ContactsCRM(Adapter):
    """A CRM whose contact lookup and creation take a moment, as a real one's do."""

    async def find_contact(self, phone):
        await asyncio.sleep(0.05)
        return CONTACTS.get(phone.e164)

    async def create_contact(self, new):
        await asyncio.sleep(0.05)
        CREATED.append(new.phone.e164)
        CONTACTS[new.phone.e164] = Contact(f"c{len(CREATED)}", new.name, None)
        return CONTACTS[new.phone.e164]

    async def log_call(self, log):
        return f"log:{log.call.uuid}"

    async def create_task(self, task):
        return f"task:{task.call.uuid}"

    async def check(self):
        return CheckResult(account="contacts")


async def test_two_replicas_create_one_contact_for_a_new_caller(
    postgres_url, make_settings, start_bridge, monkeypatch
) -> None:
    ep = EntryPoint("contacts", f"{__name__}:ContactsCRM", registry.ENTRY_POINT_GROUP)
    real = registry.entry_points
    monkeypatch.setattr(registry, "entry_points", lambda group: [*real(group=group), ep])
    CREATED.clear()
    CONTACTS.clear()
    settings = make_settings(
        storage={"url": postgres_url},
        adapters={"contacts": {"rate_limit": 0, "concurrency": 4}},
    )
    apps = [await start_bridge(settings), await start_bridge(settings)]
    for i in range(8):  # one new caller, eight calls, sent to both replicas in turn
        payload = sample("call_end", uuid=f"new-caller-{i}")
        payload.update(direction="inbound", caller="79221234567", callee="145")
        answer = await apps[i % 2].post(WEBHOOK, data=payload)
        assert answer.status == 200, await answer.text()
    storage = await open_storage(StorageSettings(url=postgres_url))
    try:
        deadline = time.monotonic() + 15
        while (await storage.job_counts()).get("contacts", {}).get(DONE, 0) < 8:
            assert time.monotonic() < deadline, await storage.job_counts()
            await asyncio.sleep(0.05)
    finally:
        await storage.close()
    assert CREATED == ["+79221234567"]


async def test_a_closed_replica_never_takes_a_lead_again(replicas) -> None:
    """A task still running after its storage closed (shutdown order) must not open a new
    lock connection and take the lead back from the replica that should have it."""
    a, b = await replicas("replica-a"), await replicas("replica-b")
    assert await a.try_lead("onlinepbx-sweep")
    await a.close()
    assert not await a.try_lead("onlinepbx-sweep")
    assert await b.try_lead("onlinepbx-sweep")


async def test_a_replica_whose_clock_runs_ahead_leaves_live_leases_alone(replicas) -> None:
    """Leases are stamped with the claiming replica's clock; a replica starting with its clock
    minutes ahead must still not requeue (and so re-deliver) a live replica's running job."""
    from bridge.store import IncomingEvent

    a, b = await replicas("replica-a"), await replicas("replica-b")
    plan = {"call_end": [("crm", "log_call")]}
    now = time.time()
    old = now - 3 * a.lease_seconds
    await a.append([IncomingEvent("d", "dead", "call_end", {"uuid": "dead"})], plan, old)
    [dead] = await a.claim("crm", 1, old)  # a replica that died: expired a minute ago
    await a.append([IncomingEvent("d", "live", "call_end", {"uuid": "live"})], plan, now)
    [live] = await a.claim("crm", 1, now)  # its lease runs to now + 30 s
    assert await b.requeue_expired(now + 600) == 1  # b's clock: ten minutes ahead
    assert (await b.get_job(live.id)).status == "running" and (
        await b.get_job(dead.id)
    ).status == "pending"
