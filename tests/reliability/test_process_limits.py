"""The bridge process at its limits (issue #12): out of file descriptors with idle half-open
connections, the rate of the "out of system resource" log, and what a start prints.

These start the real ``pbx-bridge serve`` in a process of its own (``process.forker``).
"""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bridge.receive.server import LoopErrorLog
from bridge.samples import sample
from tests.reliability.process import Run, forker, free_port, query, write_settings

TOKEN = "fd-test-token-0123456789abcdef"
FD_LIMIT = 128  # soft = hard: raising the soft limit cannot help, the cap has to
IDLE = 400  # half-open connections held open, several times the limit


class Serve:
    def __init__(self, config: Path, port: int, log: Path, fd_limit: int | None = None) -> None:
        self.config, self.port, self.log_path, self.fd_limit = config, port, log, fd_limit
        self.proc: Run | None = None

    async def start(self, stderr: str | None = None) -> None:
        """``pbx-bridge serve`` in a process of its own; ``stderr``: a terminal's path."""
        self.proc = await forker().spawn(
            ["serve", "-c", str(self.config)],
            stdout=self.log_path,
            stderr=stderr,
            nofile=self.fd_limit,
        )
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=1) as client:
            while True:
                assert self.proc.returncode is None, self.log()
                try:
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, self.log()
                await asyncio.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def terminate(self, within: float = 20) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), within)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[Serve]:
    port = free_port()
    config = write_settings(
        tmp_path / "settings.toml",
        {
            "server": {"host": "127.0.0.1", "port": port, "webhook_token": TOKEN},
            "storage": {"path": str(tmp_path / "bridge.db")},
            "adapters.local": {},
        },
    )
    serve = Serve(config, port, tmp_path / "bridge.log", fd_limit=FD_LIMIT)
    yield serve
    await serve.kill()


async def _half_open(port: int, n: int) -> list[socket.socket]:
    """``n`` connections that sent half a request line and then nothing (slowloris).

    Opened all at once: beyond the fd cap the bridge's accept queue is full and the kernel
    drops SYNs, so a connect waits for its SYN to be resent (1 s, 3 s, …); one after the other
    those waits add up to most of the test, side by side they overlap."""
    loop = asyncio.get_running_loop()
    opened: list[socket.socket] = []

    async def one() -> None:
        s = socket.socket()
        opened.append(s)
        s.setblocking(False)
        await loop.sock_connect(s, ("127.0.0.1", port))
        await loop.sock_sendall(s, b"POST /webhooks/onlinepbx/")

    try:
        await asyncio.gather(*(one() for _ in range(n)))
    except BaseException:
        for s in opened:
            s.close()
        raise
    return opened


# numbers of countries no earlier call loaded: phonenumbers reads their metadata on first use
NUMBERS = ["+81312345678", "+4930123456", "+5511912345678", "+61212345678", "+27211234567"]


async def _post(url: str, uuid: str, caller: str, timeout: float) -> int:
    body = {**sample("call_end", uuid=uuid), "caller": caller}
    async with httpx.AsyncClient(timeout=timeout) as client:
        r = await client.post(f"{url}/webhooks/onlinepbx/{TOKEN}", data=body)
        return r.status_code


async def _delivered(db: Path, n: int, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        done = query(db, "SELECT COUNT(*) FROM jobs WHERE status = 'done'")[0][0]
        if done >= n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(query(db, "SELECT id, status, last_error FROM jobs"))


async def test_out_of_file_descriptors_the_bridge_still_answers_and_delivers(
    bridge: Serve, tmp_path: Path
) -> None:
    """#12 item 1: idle half-open connections far beyond the fd limit. onlinePBX's webhooks
    are still answered while they are held, calls of new countries are delivered, and
    once they close everything goes on; SIGTERM still stops the bridge."""
    await bridge.start()
    db = tmp_path / "bridge.db"
    idle = await _half_open(bridge.port, IDLE)
    try:
        await asyncio.sleep(0.5)
        started = time.monotonic()
        statuses = [
            await _post(bridge.url, f"fd-{n}", number, timeout=10)
            for n, number in enumerate(NUMBERS[:3])
        ]
        took = time.monotonic() - started
        assert statuses == [200, 200, 200], (statuses, bridge.log()[-2000:])
        await _delivered(db, 3)
        healthz = await _status(f"{bridge.url}/healthz")
        assert healthz == 200
    finally:
        for s in idle:
            s.close()
    await asyncio.sleep(0.5)
    statuses = [
        await _post(bridge.url, f"fd-after-{n}", number, timeout=10)
        for n, number in enumerate(NUMBERS[3:])
    ]
    assert statuses == [200, 200]
    await _delivered(db, 5)
    assert await bridge.terminate() == 0
    log = bridge.log()
    resource_lines = log.count("out of system resource")
    assert resource_lines <= 5, resource_lines
    print(
        f"FD LIMIT {FD_LIMIT}, {IDLE} half-open connections: 3 webhooks answered in"
        f" {took:.2f} s while held, 5 delivered, 'out of system resource' lines: {resource_lines}"
    )


async def _status(url: str) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(url)).status_code


def test_the_out_of_resource_log_is_rate_limited(capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]
    handler = LoopErrorLog(every=10.0, clock=lambda: now[0])
    context = {"message": "socket.accept() out of system resource", "exception": OSError(24)}
    for _ in range(8600):  # what one second of EMFILE used to log
        handler(None, context)  # type: ignore[arg-type]
        now[0] += 1 / 8600
    now[0] += 10
    handler(None, context)  # type: ignore[arg-type]
    lines = [line for line in capsys.readouterr().err.splitlines() if "out of system" in line]
    assert len(lines) == 2, lines
    assert '"repeats_not_logged": 8599' in lines[1]


# --- 5. the webhook URL on start ------------------------------------------------------------


async def _first_lines(serve: Serve, master: int, want: str, within: float = 20) -> str:
    loop = asyncio.get_running_loop()
    seen = b""
    deadline = time.monotonic() + within
    while want.encode() not in seen and time.monotonic() < deadline:
        try:
            seen += await asyncio.wait_for(loop.run_in_executor(None, os.read, master, 4096), 2)
        except (TimeoutError, OSError):
            break
    return seen.decode(errors="replace")


def _token(db: Path) -> str:
    return str(query(db, "SELECT value FROM meta WHERE key = 'webhook_token'")[0][0])


async def test_the_generated_webhook_url_is_shown_once_and_only_to_a_terminal(
    tmp_path: Path,
) -> None:
    from bridge.cli import main  # noqa: F401  (the CLI the subprocess runs)

    port = free_port()
    config = write_settings(
        tmp_path / "settings.toml",
        {
            "server": {"host": "127.0.0.1", "port": port},  # no token: one is generated
            "storage": {"path": str(tmp_path / "bridge.db")},
        },
    )
    serve = Serve(config, port, tmp_path / "bridge.log")
    master, slave = pty.openpty()
    try:
        terminal = os.ttyname(slave)
        await serve.start(stderr=terminal)  # the first start, on a terminal
        first = await _first_lines(serve, master, "In onlinePBX")
        assert await serve.terminate() == 0
        (token,) = query(
            tmp_path / "bridge.db", "SELECT value FROM meta WHERE key = 'webhook_token'"
        )[0]
        assert f"/webhooks/onlinepbx/{token}" in first, first
        await serve.start(stderr=terminal)  # a later start, still a terminal
        second = await _first_lines(serve, master, "In onlinePBX")
        assert await serve.terminate() == 0
        assert token not in second and "webhook-url" in second, second
    finally:
        os.close(master)
        os.close(slave)
    # Into a file (a log, `docker logs`): never, not even on the start that generated it.
    (tmp_path / "bridge.db").unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp_path}/bridge.db{suffix}").unlink(missing_ok=True)
    await serve.start()
    assert await serve.terminate() == 0
    (token,) = query(tmp_path / "bridge.db", "SELECT value FROM meta WHERE key = 'webhook_token'")[
        0
    ]
    assert token not in serve.log(), serve.log()[-1500:]
    assert "webhook-url" in serve.log()
