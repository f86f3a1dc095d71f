"""Serving the app under `pbx-bridge serve`: the process-level defences aiohttp leaves to us.

- **File descriptors.** The soft ``RLIMIT_NOFILE`` is raised to the hard limit at start, and
  the number of open connections is capped well under it (:func:`connection_cap`): a flood
  of idle or half-open connections can then never take the descriptors the database, CRM
  calls and imports need. At the cap, a new connection evicts the oldest one that has no
  request in progress (stalled in its headers, or idle keep-alive), so onlinePBX still gets
  in while a slowloris holds hundreds of sockets.
- **Phone metadata.** phonenumbers loads a country's metadata on its first number, holding a
  lock it never releases if the load fails (an ``EMFILE`` while importing): every later
  number then blocks the event loop for good. It is all loaded at start instead.
- **Logs.** asyncio reports "socket.accept() out of system resource" on every accept that
  hits the limit; the report is rate-limited (:class:`LoopErrorLog`).
- **aiohttp's own 400s** (a malformed request line) quote the raw line, URL token included:
  they are answered with a JSON error that quotes nothing (:class:`BridgeRequestHandler`),
  and aiohttp's log lines pass the redactor (``bridge.logs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import phonenumbers
import structlog
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError

log = structlog.get_logger("bridge.server")

MAX_CONNECTIONS = 1000  # far more than onlinePBX opens; the cap is lower under a low fd limit
BACKLOG = 128
FD_SHARE = 0.5  # at most this share of the fd limit goes to client connections
UNDECODABLE = "body does not decode as its Content-Encoding says (gzip, deflate are accepted)"
LOG_EVERY = 10.0  # seconds between two reports of the same loop error


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one; the soft limit in force after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(fd_limit: int) -> int:
    return max(4, min(MAX_CONNECTIONS, int(fd_limit * FD_SHARE)))


def preload_phone_metadata() -> None:
    """Load every country's phonenumbers metadata now (see the module docstring)."""
    phonenumbers.PhoneMetadata.load_all()


class ConnectionGuard:
    """The open connections, oldest first, and which of them are serving a request."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open: OrderedDict[BridgeRequestHandler, None] = OrderedDict()
        self.busy: set[Any] = set()
        self.evicted = 0

    def opened(self, conn: BridgeRequestHandler) -> None:
        self.open[conn] = None
        while len(self.open) > self.cap:
            idle = next((c for c in self.open if c not in self.busy and c is not conn), None)
            if idle is None:  # every other connection is mid-request: refuse the new one
                idle = conn
            self.open.pop(idle, None)
            self.evicted += 1
            idle.force_close()
            if idle is conn:
                break

    def closed(self, conn: BridgeRequestHandler) -> None:
        self.open.pop(conn, None)
        self.busy.discard(conn)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable[..., Any]) -> Any:
        """Marks the connection busy while its request is served (it is not evicted)."""
        conn = request.protocol
        self.busy.add(conn)
        try:
            return await handler(request)
        finally:
            self.busy.discard(conn)


class BridgeRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, counted by the guard and with JSON low-level errors."""

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._guard.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._guard.closed(self)
        super().connection_lost(exc)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs it (redacted), checks state
        # aiohttp's message quotes the raw request line, token and all: say only what it was.
        what = (message or "").strip().splitlines()[0].rstrip(":") if message else ""
        error = "bad_request" if status < 500 else "internal_error"
        if isinstance(exc, ContentEncodingError):
            error, what = "bad_encoding", UNDECODABLE
        body: dict[str, Any] = {"ok": False, "error": error}
        if status < 500 and what:
            body["detail"] = what[:80]
        response = web.json_response(body, status=status)
        response.force_close()
        return response


class LoopErrorLog:
    """The event loop's exception handler: the same message at most once per ``every``
    seconds, with the number of repeats swallowed meanwhile."""

    def __init__(self, every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic):
        self._every = every
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message") or "event loop error")
        now = self._clock()
        last, swallowed = self._last.get(message, (-self._every, 0))
        if now - last < self._every:
            self._last[message] = (last, swallowed + 1)
            return
        if len(self._last) > 100:
            self._last.clear()
        self._last[message] = (now, 0)
        exc = context.get("exception")
        log.error(
            message,
            error=f"{type(exc).__name__}: {exc}" if exc else None,
            repeats_not_logged=swallowed,
        )


async def start(
    app: web.Application,
    host: str | None = None,
    port: int | None = None,
    *,
    socks: Sequence[socket.socket] = (),
    shutdown_timeout: float,
) -> tuple[web.AppRunner, list[asyncio.AbstractServer], ConnectionGuard]:
    """Start the app on ``socks`` (bound already) or ``host:port`` with the guard in front
    (one guard over all of them); stop with :func:`stop`."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(LoopErrorLog())
    guard = ConnectionGuard(connection_cap(raise_fd_limit()))
    app.middlewares.insert(0, guard.middleware)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    assert runner.server is not None
    factory = partial(BridgeRequestHandler, runner.server, loop=loop, guard=guard, access_log=None)
    # The accept loop takes up to ``backlog`` sockets before the guard sees any of them:
    # kept small beside the cap, so a burst never overshoots the fd limit.
    backlog = max(8, min(BACKLOG, guard.cap // 4))
    servers = []
    for sock in socks:
        sock.listen(backlog)
        servers.append(await loop.create_server(factory, sock=sock, backlog=backlog))
    if not socks:
        servers.append(
            await loop.create_server(factory, host, port, reuse_address=True, backlog=backlog)
        )
    return runner, servers, guard


async def stop(runner: web.AppRunner, servers: Sequence[asyncio.AbstractServer]) -> None:
    for server in servers:  # no new connections; then aiohttp's graceful path
        server.close()
    await runner.cleanup()


def run(app: web.Application, *, socks: Sequence[socket.socket], shutdown_timeout: float) -> None:
    """What ``web.run_app`` does, on our connection handler: serve until SIGTERM/SIGINT."""
    preload_phone_metadata()

    async def main() -> None:
        runner, servers, _ = await start(app, socks=socks, shutdown_timeout=shutdown_timeout)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        try:
            await done.wait()
        finally:
            await stop(runner, servers)

    asyncio.run(main())
