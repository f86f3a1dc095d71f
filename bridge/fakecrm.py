"""A loopback fake CRM for adapter fakes: an aiohttp server that records every request and plays
faults, and the helpers every vendor fake shares.

Each ``adapters/<crm>/fake.py`` subclasses :class:`FakeCRM` (its vendor's success answers in
``answer``, its error envelope in ``error_json``, which call a request writes in ``call_key``);
the manifest names that class (``fake``) and a function giving an ``[adapters.<name>]`` table
pointed at it (``fake_table``). The contract suite and the reliability harness (kill -9, fault
table) run every such fake; an adapter author's own tests may too.

It lives in the package (not under tests/) because the adapters' fakes do: a fake is part of
an adapter's folder, and adapter code never imports the bridge's test tree.

Call keys are ``domain/uuid/kind``. No CRM is told the onlinePBX domain, so the fakes use the
sample events' (every event of the harness comes from ``bridge.samples``). A CRM object with no
field for the call uuid has it in its note or description: the harness sets the ``call_note``
and ``task_description`` templates to ``TEMPLATES`` (``{uuid}`` is a documented placeholder)
and ``marked`` reads the uuid back from the text written.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import cached_property
from itertools import count
from typing import Any, ClassVar

import httpx
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.samples import SAMPLES

# Fault names, shared by the fault table and the crash harness.
OK = "ok"
HTTP_500 = "5xx"
RATE_LIMIT_SECONDS = "429 Retry-After: seconds"
RATE_LIMIT_DATE = "429 Retry-After: HTTP date"
READ_TIMEOUT = "read timeout"
CONNECT_TIMEOUT = "connect timeout"
RESET = "connection reset"
NOT_JSON = "200, body not JSON"
UNAUTHORIZED = "401"
FORBIDDEN = "403"
DOWN = "down (connection refused)"

RETRY_AFTER_SECONDS = 120
GENERIC_ERRORS = {
    401: {"error": "invalid_token"},
    403: {"error": "forbidden"},
    429: {"error": "slow down"},
    500: {"error": "internal"},
}


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeCRM:
    """An aiohttp app on 127.0.0.1 playing ``fault`` for the next ``fault_times`` requests.

    ``clock`` is the clock the bridge runs on: ``Date`` and HTTP-date ``Retry-After``
    headers are written in it, as a real CRM's would be in real time. ``on_request`` runs
    after a request is recorded and before it is answered (the crash harness kills the
    bridge there: the CRM has the call, the bridge has not booked it).
    """

    clock: Callable[[], float]
    fault: str = OK
    fault_times: int = 0
    read_delay: float = 1.0
    on_request: Callable[[Recorded], None] | None = None
    error_body: Any = None  # what a 401/403 says (a careless CRM may quote credentials)
    #: fault → what the recorded reason says instead of ``faults.CAUSE`` (the vendor's words)
    causes: ClassVar[dict[str, str]] = {}
    requests: list[Recorded] = field(default_factory=list)
    server: TestServer | None = None

    async def start(self, port: int | None = None) -> FakeCRM:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1", port=port)
        await self.server.start_server()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def play(self, fault: str, times: int) -> None:
        self.fault, self.fault_times = fault, times

    def _current_fault(self) -> str:
        if self.fault_times <= 0:
            return OK
        self.fault_times -= 1
        return self.fault

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Recorded(
            request.method, request.path, dict(request.headers), body, dict(request.query)
        )
        self.requests.append(seen)
        if self.on_request is not None:
            self.on_request(seen)
        fault = self._current_fault()
        date = {"Date": formatdate(self.clock(), usegmt=True)}
        if fault == HTTP_500:
            return web.json_response(self.error_json(500), status=500, headers=date)
        if fault == RATE_LIMIT_SECONDS:
            headers = {**date, "Retry-After": str(RETRY_AFTER_SECONDS)}
            return web.json_response(self.error_json(429), status=429, headers=headers)
        if fault == RATE_LIMIT_DATE:
            when = formatdate(self.clock() + RETRY_AFTER_SECONDS, usegmt=True)
            headers = {**date, "Retry-After": when}
            return web.json_response(self.error_json(429), status=429, headers=headers)
        if fault == READ_TIMEOUT:
            await asyncio.sleep(self.read_delay)
        elif fault == RESET:
            assert request.transport is not None
            request.transport.abort()  # RST, no answer
            return web.Response()
        elif fault == NOT_JSON:
            return web.Response(
                text="<html>Bad Gateway</html>", status=200, headers=date, content_type="text/html"
            )
        elif fault == UNAUTHORIZED:
            # The vendor's envelope wins; a careless CRM's quote (error_body) rides along.
            vendor = self.error_json(401)
            quote = self.error_body or {}
            if isinstance(vendor, list):  # an error array (Salesforce): each entry quotes
                body: Any = [{**quote, **entry} for entry in vendor]
            else:
                body = {**quote, **vendor}
            return web.json_response(body, status=401, headers=date)
        elif fault == FORBIDDEN:
            return web.json_response(self.error_json(403), status=403, headers=date)
        answer = self.answer(seen)
        if isinstance(answer, web.Response):
            answer.headers.update(date)
            return answer
        return web.json_response(answer, headers=date)

    def answer(self, seen: Recorded) -> Any:
        """The success body (or a whole response); CRM-specific fakes override this."""
        return {"ok": True, "id": len(self.requests)}

    def error_json(self, status: int) -> Any:
        """The body of a 401/403/429/500; CRM-specific fakes answer in the vendor's envelope."""
        return GENERIC_ERRORS[status]

    def delivered(self) -> Counter[str]:
        """Call keys the CRM received (a key counted twice was written twice)."""
        keys: Counter[str] = Counter()
        for seen in self.requests:
            key = self.call_key(seen)
            if key is not None:
                keys[key] += 1
        return keys

    def call_key(self, seen: Recorded) -> str | None:
        raise NotImplementedError

    @cached_property
    def records(self) -> Records:
        """What this fake CRM created, by number (a later search finds it, as the CRM would)."""
        return Records()

    @staticmethod
    def json(seen: Recorded) -> Any:
        return json.loads(seen.body) if seen.body else None


# -- what every vendor fake shares --------------------------------------------------------------

DOMAIN = SAMPLES["call_end"]["domain"]
CALL, TASK = "call.logged", "task.created"
TEMPLATES = {
    "call_note": "Line {line}, talked {talk} s of {total} s, hangup: {hangup_cause}. pbx:{uuid}",
    "task_description": "Missed call from {client} at {time} to line {line}. pbx:{uuid}",
}
_MARK = re.compile(r"pbx:([\w.-]+)")

#: Shared by the fakes' tables: no client-side rate limit and 4 requests at a time (the fakes are
#: on loopback; the big crash run drains 4000 calls through each), and unknown numbers always
#: get a record, so searching, creating and then finding are all exercised.
CRM_COMMON: dict[str, Any] = {"rate_limit": 0, "concurrency": 4, "create_contacts": "always"}


def key(uuid: str, kind: str) -> str:
    return f"{DOMAIN}/{uuid}/{kind}"


def marked(text: Any, kind: str) -> str | None:
    """The call key of a note or description written from ``TEMPLATES``."""
    m = _MARK.search(str(text or ""))
    return key(m.group(1), kind) if m else None


def digits(value: Any) -> str:
    """Only the digits of a phone number as a CRM stored or was sent it."""
    return re.sub(r"\D", "", str(value or ""))


def last10(value: Any) -> str:
    return digits(value)[-10:]


class Records:
    """New record ids, and the number each record was created for."""

    def __init__(self) -> None:
        self._ids = count(1001)
        self.by_phone: dict[str, int] = {}  # last 10 digits → record id

    def new(self, phone: Any = None) -> int:
        record = next(self._ids)
        if phone is not None:
            self.by_phone.setdefault(last10(phone), record)
        return record

    def find(self, phone: Any) -> int | None:
        return self.by_phone.get(last10(phone))


_NOT_RELAYED = {"content-type", "content-length", "content-encoding", "transfer-encoding"}


def relay(response: httpx.Response) -> web.Response:
    """An answer built as an httpx response (a vendor fake's, or a respx helper's), served by
    aiohttp with its headers (``Retry-After``, rate-limit headers…); aiohttp sets the framing."""
    headers = {k: v for k, v in response.headers.items() if k.lower() not in _NOT_RELAYED}
    if response.status_code == 204:
        return web.Response(status=204, headers=headers)
    kind = response.headers.get("content-type", "application/json").split(";")[0]
    return web.Response(
        body=response.content, status=response.status_code, content_type=kind, headers=headers
    )


def as_httpx(base_url: str, seen: Recorded) -> httpx.Request:
    """A request recorded by aiohttp, as the httpx request an in-memory vendor fake answers."""
    return httpx.Request(
        seen.method,
        httpx.URL(base_url + seen.path, params=seen.query),
        headers=seen.headers,
        content=seen.body,
    )
