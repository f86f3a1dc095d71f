"""A fake onlinePBX API (aiohttp) that behaves like the documented one.

- ``POST /{domain}/auth.json`` with ``auth_key`` → ``key_id`` and ``key``; other requests need
  ``x-pbx-authentication: key_id:key`` or get ``isNotAuth``.
- errors are HTTP 200 with ``status: "0"`` and a ``comment``.
- ``mongo_history/search.json``: calls by start time (window ≤ 7 days) or by ``uuid``; with
  ``download=1`` a download link that expires 30 minutes after issue (then 404
  ``KEY_IS_EXPIRED``); downloads honour ``Range``.

The clock is the test's, so expiry needs no sleeping.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.settings import Settings
from tests.conftest import FakeClock

LINK_LIFETIME = 30 * 60
DOMAIN = "example.onpbx.ru"
API_KEY = "fake-api-key-0123456789"
PUBLIC_URL = "https://bridge.example.com"


def call_record(
    uuid: str,
    start: int,
    *,
    kind: str = "inbound",
    client: str = "79161234567",
    extension: str = "101",
    talk: int = 60,
    ring: int = 10,
    gateway: str = "74951112233",
) -> dict[str, Any]:
    """A history record shaped like onlinePBX's ``mongo_history`` answer."""
    inbound = kind in ("inbound", "missed")
    user_event: dict[str, Any] = {"type": "user", "number": extension, "answered_stamp": 0}
    if talk:
        user_event["answered_stamp"] = start + ring
    return {
        "uuid": uuid,
        "caller_id_name": "",
        "caller_id_number": client if inbound else extension,
        "destination_number": gateway if inbound else client,
        "start_stamp": start,
        "end_stamp": start + ring + talk,
        "duration": ring + talk,
        "user_talk_time": talk,
        "hangup_cause": "NORMAL_CLEARING",
        "accountcode": kind,
        "gateway": gateway,
        "events": [user_event],
    }


@dataclass
class FakeOnlinePBX:
    clock: Callable[[], float]
    domain: str = DOMAIN
    api_key: str = API_KEY
    calls: list[dict[str, Any]] = field(default_factory=list)
    recordings: dict[str, bytes] = field(default_factory=dict)
    keys: set[str] = field(default_factory=set)
    logins: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)
    fail_history_at: int | None = None  # the n-th history search (1-based) answers HTTP 500
    hang_history_at: int | None = None  # the n-th history search never answers
    hanging: asyncio.Event = field(default_factory=asyncio.Event)  # set when it hangs
    _links: dict[str, tuple[str, float]] = field(default_factory=dict)
    _history_calls: int = 0
    server: TestServer | None = None

    # --- test controls ---------------------------------------------------------------------

    def expire_keys(self) -> None:
        """What onlinePBX does ~3 days after the key was last used."""
        self.keys.clear()

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def searches(self) -> list[dict[str, str]]:
        return [r for r in self.requests if r["path"].endswith("search.json")]

    # --- the API ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{domain}/auth.json", self.auth)
        app.router.add_post("/{domain}/mongo_history/search.json", self.search)
        app.router.add_get("/calls-records/download/{token}/rec.mp3", self.download)
        return app

    @staticmethod
    def _error(comment: str, **extra: Any) -> web.Response:
        return web.json_response({"status": "0", "comment": comment, **extra})

    async def auth(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.requests.append({"path": request.path, **{k: str(v) for k, v in form.items()}})
        if request.match_info["domain"] != self.domain:
            return self._error("Domain not found")
        if form.get("auth_key") != self.api_key:
            return self._error("Auth key not found")
        self.logins += 1
        key_id, key = secrets.token_hex(8), secrets.token_hex(16)
        self.keys.add(f"{key_id}:{key}")
        return web.json_response({"status": "1", "data": {"key_id": key_id, "key": key}})

    async def search(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append({"path": request.path, **form})
        if request.headers.get("x-pbx-authentication") not in self.keys:
            return self._error("Not authorized", isNotAuth=True)
        if "uuid" in form:
            found = [c for c in self.calls if c["uuid"] == form["uuid"]]
            if form.get("download") == "1":
                return self._download_link(request, form["uuid"], bool(found))
            return web.json_response({"status": "1", "data": found})
        self._history_calls += 1
        if self._history_calls == self.fail_history_at:
            return web.Response(status=500, text="internal error")
        if self._history_calls == self.hang_history_at:
            self.hanging.set()
            await asyncio.Event().wait()
        try:
            start, end = int(form["start_stamp_from"]), int(form["start_stamp_to"])
        except (KeyError, ValueError):
            return self._error("start_stamp_from and start_stamp_to are required")
        if end - start > 7 * 86_400:
            return self._error("Period must not exceed 7 days")
        found = [c for c in self.calls if start <= c["start_stamp"] <= end]
        return web.json_response({"status": "1", "data": found})

    def _download_link(self, request: web.Request, uuid: str, known: bool) -> web.Response:
        if not known or uuid not in self.recordings:
            return self._error("Record not found")
        token = secrets.token_hex(12)
        self._links[token] = (uuid, self.clock())
        url = f"{request.scheme}://{request.host}/calls-records/download/{token}/rec.mp3"
        return web.json_response({"status": "1", "data": url})

    async def download(self, request: web.Request) -> web.StreamResponse:
        issued = self._links.get(request.match_info["token"])
        if issued is None or self.clock() - issued[1] > LINK_LIFETIME:
            return web.Response(status=404, text="KEY_IS_EXPIRED")
        body = self.recordings[issued[0]]
        headers = {"Accept-Ranges": "bytes", "Content-Type": "audio/mpeg"}
        if request.http_range.start is not None or request.http_range.stop is not None:
            part = body[request.http_range]
            first = request.http_range.start or 0
            headers["Content-Range"] = f"bytes {first}-{first + len(part) - 1}/{len(body)}"
            return web.Response(status=206, body=part, headers=headers)
        return web.Response(body=body, headers=headers)


async def start_fake(clock: Callable[[], float]) -> FakeOnlinePBX:
    fake = FakeOnlinePBX(clock)
    fake.server = TestServer(fake.app())
    await fake.server.start_server()
    return fake


@pytest.fixture
def pbx_clock() -> FakeClock:
    """One clock for the bridge and the fake PBX (link expiry, sweep windows)."""
    return FakeClock()


@pytest.fixture
async def pbx(pbx_clock: FakeClock) -> AsyncIterator[FakeOnlinePBX]:
    fake = await start_fake(pbx_clock)
    yield fake
    assert fake.server is not None
    await fake.server.close()


@pytest.fixture
def pbx_settings(make_settings: Callable[..., Settings], pbx: FakeOnlinePBX) -> Callable[..., Any]:
    """Bridge settings pointing at the fake PBX: ``[onlinepbx]`` and ``server.public_url``."""

    def make(**kw: Any) -> Settings:
        onlinepbx = {
            "domain": pbx.domain,
            "api_key": pbx.api_key,
            "base_url": pbx.base_url,
            "rate_limit": 5,
            "sweep_interval_minutes": 0,
            **kw.pop("onlinepbx", {}),
        }
        server = {"public_url": PUBLIC_URL, **kw.pop("server", {})}
        return make_settings(onlinepbx=onlinepbx, server=server, **kw)

    return make
