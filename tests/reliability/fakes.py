"""Fake CRMs on loopback for the reliability harness.

A fake CRM records every request it gets and answers according to the *fault* it is told
to play. Each fake knows how to say which call keys (``domain/uuid/kind``) it holds, so the
harness can count deliveries and duplicates without knowing the CRM's API.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.test_utils import TestServer

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
HTTP_SECRET = "whsec_" + base64.b64encode(b"reliability-signing-key-0123456789").decode()
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


class HttpReceiver(FakeCRM):
    """The ``http`` adapter's receiver. ``webhook-id`` is its idempotency key."""

    def call_key(self, seen: Recorded) -> str | None:
        if seen.method != "POST" or not seen.body:
            return None
        doc = json.loads(seen.body)
        return f"{doc['call']['domain']}/{doc['call']['uuid']}/{doc['type']}"

    def idempotency_keys(self) -> Counter[str]:
        return Counter(s.headers.get("webhook-id", "") for s in self.requests if s.body)


def http_table(base_url: str) -> dict[str, Any]:
    return {
        "type": "http",
        "url": f"{base_url}/hook",
        "secret": HTTP_SECRET,
        "rate_limit": 0,
        "concurrency": 4,
    }
