"""What the benchmarks share: loopback servers in child processes, the bridge's settings
file, a fake CRM, the machine description and percentile helpers."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

HOST = "127.0.0.1"  # every benchmark stays on loopback
TOKEN = "bench-token-0123456789abcdef"
SAMPLE_FORM = Path(__file__).resolve().parent.parent / "tests" / "samples" / "call_end.form"


def call_end_form() -> str:
    """The onlinePBX ``call_end`` body, form-encoded, as the vendor documents it."""
    return SAMPLE_FORM.read_text().strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def load_average() -> str:
    """``uptime``'s three figures, quoted with every benchmark result."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} cores)"


def start_timeout() -> float:
    """How long a child may take to come up: 30 s on a quiet machine, more under load.

    A bridge imports aiohttp, pydantic, structlog and every adapter before it binds; with the
    machine's run queue at 12-15 on 2 cores (other test suites) that took well over 20 s.
    ``PBX_BRIDGE_BENCH_START_TIMEOUT`` overrides it.
    """
    fixed = os.environ.get("PBX_BRIDGE_BENCH_START_TIMEOUT")
    if fixed:
        return float(fixed)
    per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    return max(30.0, 30.0 * (1 + per_core))


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").strip().splitlines()[-lines:]
    return "\n  last lines of " + str(log) + ":\n    " + "\n    ".join(text) if text else ""


def _http_status(port: int, path: str) -> int | None:
    """A bare GET on loopback; None while nothing answers."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
            s.sendall(request.encode())
            head = s.recv(64).decode("latin-1")
    except OSError:
        return None
    parts = head.split(" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def wait_ready(
    port: int,
    proc: subprocess.Popen[bytes] | None = None,
    *,
    path: str | None = None,
    timeout: float | None = None,
    log: Path | None = None,
    what: str = "the child",
) -> float:
    """Wait until ``path`` on ``port`` answers 200 (with ``path=None``: until the port
    accepts). Raises a ``RuntimeError`` naming the port, the wait, the machine's load and the
    end of ``log`` if ``proc`` exits first or nothing answers in time. Returns seconds waited.
    """
    limit = start_timeout() if timeout is None else timeout
    began = time.monotonic()
    status: int | None = None
    while time.monotonic() - began < limit:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"{what} on {HOST}:{port} exited with {proc.returncode} before it was ready"
                + _tail(log)
            )
        if path is None:
            with socket.socket() as s:
                if s.connect_ex((HOST, port)) == 0:
                    return time.monotonic() - began
        else:
            status = _http_status(port, path)
            if status == 200:
                return time.monotonic() - began
        time.sleep(0.05)
    seen = "nothing listening" if status is None else f"last answer {status}"
    raise RuntimeError(
        f"{what} on {HOST}:{port} was not ready ({path or 'port open'}) after {limit:.0f} s"
        f" ({seen}; {load_average()}). Set PBX_BRIDGE_BENCH_START_TIMEOUT to wait longer."
        + _tail(log)
    )


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_settings(
    workdir: Path, port: int, adapters: dict[str, dict[str, Any]], **extra: Any
) -> Path:
    """A settings TOML for a bridge on loopback with the given adapter tables."""
    lines = [
        "[server]",
        f'host = "{HOST}"',
        f"port = {port}",
        f'webhook_token = "{TOKEN}"',
        "shutdown_grace_seconds = 1",
        "[storage]",
        f'path = "{workdir / "bridge.db"}"',
    ]
    for key, value in extra.get("storage", {}).items():
        lines.append(f"{key} = {value!r}")
    lines += ["[log]", f'level = "{extra.get("log_level", "INFO")}"', 'format = "json"']
    for name, table in adapters.items():
        lines.append(f"[adapters.{name}]")
        for key, value in table.items():
            shown = (
                f'"{value}"'
                if isinstance(value, str)
                else repr(value).lower()
                if isinstance(value, bool)
                else repr(value)
            )
            lines.append(f"{key} = {shown}")
    path = workdir / "settings.toml"
    path.write_text("\n".join(lines) + "\n")
    tomllib.loads(path.read_text())  # fail here, not in the child, on a typo
    return path


@contextmanager
def bridge_process(config: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``pbx-bridge serve`` in a child process, its JSON log lines going to ``log``; yields
    once ``/readyz`` answers 200 (the database is open and writable, the workers run)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "--config", str(config), "serve"],
            stdout=out,
            stderr=out,
        )
    try:
        wait_ready(port, proc, path="/readyz", log=log, what="the bridge")
        yield proc
    finally:
        stop(proc)


@contextmanager
def child(args: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc, what=" ".join(args[1:3]))
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def webhook_url(port: int) -> str:
    return f"http://{HOST}:{port}/webhooks/onlinepbx/{TOKEN}"


@dataclass
class FakeCRM:
    """A loopback CRM that enforces ``limit`` requests per ``window`` seconds (sliding, the
    strictest reading), answers 429 above it, and adds ``latency`` seconds to every answer.

    ``limit=0`` means no limit. Arrival times are ``time.monotonic()`` (system-wide, so they
    compare with the benchmark's own clock).
    """

    limit: int = 0
    window: float = 1.0
    latency: float = 0.0
    arrivals: list[float] = field(default_factory=list)
    accepted: list[float] = field(default_factory=list)
    rejected: int = 0
    contacts: dict[str, str] = field(default_factory=dict)
    lookups: int = 0
    first_seen: dict[str, float] = field(default_factory=dict)  # call uuid → first arrival
    _runner: web.AppRunner | None = None
    port: int = 0

    def _over(self, now: float) -> bool:
        if not self.limit:
            return False
        recent = [t for t in self.accepted[-self.limit :] if t > now - self.window]
        return len(recent) >= self.limit

    async def _handle(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        self.arrivals.append(now)
        if self._over(now):
            self.rejected += 1
            return web.json_response(
                {"error": "too many"}, status=429, headers={"Retry-After": "1"}
            )
        self.accepted.append(now)
        raw = await request.read()
        if raw.startswith(b"{"):
            call = json.loads(raw).get("call") or {}
            if call.get("uuid"):
                self.first_seen.setdefault(call["uuid"], now)
        if self.latency:
            await asyncio.sleep(self.latency)
        if request.path == "/contacts" and request.method == "GET":
            self.lookups += 1
            phone = request.query.get("phone", "")
            found = self.contacts.get(phone)
            return web.json_response({"contacts": [{"id": found, "phone": phone}] if found else []})
        if request.path == "/contacts":
            body = await request.json()
            cid = f"c{len(self.contacts) + 1}"
            self.contacts[body["phone"]] = cid
            return web.json_response({"id": cid})
        return web.json_response({"ok": True, "id": f"r{len(self.accepted)}"})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, HOST, self.port).start()
        return f"http://{HOST}:{self.port}"

    async def close(self) -> None:
        if self._runner:
            await self._runner.cleanup()
