"""The real bridge as a subprocess (``python -m bridge serve``), for kill -9 and log greps."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # strings, numbers, booleans and lists are valid TOML as JSON


def write_settings(path: Path, tables: dict[str, dict[str, Any]]) -> Path:
    """``tables`` like ``{"server": {...}, "adapters.http": {...}}`` → a settings.toml."""
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# What ``python -m bridge`` runs, with the imports done before the go signal: a restart after a
# kill then takes the time the bridge itself needs (open the file, requeue, bind), not the
# interpreter's start-up, so a CI run fits many kills.
_WARM = (
    "import sys\n"
    "import bridge.cli, bridge.registry\n"
    "for name in bridge.registry.available():\n"
    "    bridge.registry.adapter_class(name)\n"
    "if sys.stdin.readline() == 'go\\n':\n"
    "    sys.exit(bridge.cli.main(sys.argv[1:]))\n"
)


class BridgeProcess:
    """Starts, kills and restarts one bridge; every run's output goes to ``logs/<n>.log``.

    A spare interpreter is kept warm with the bridge imported; ``start`` tells it to serve.
    """

    def __init__(self, config: Path, port: int, workdir: Path) -> None:
        self.config = config
        self.port = port
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.proc: asyncio.subprocess.Process | None = None
        self._spare: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _spawn(self) -> asyncio.subprocess.Process:
        log = (self.logs / f"{self.starts + 1:04d}.log").open("wb")
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _WARM,
                "--config",
                str(self.config),
                "serve",
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            log.close()

    async def start(self, timeout: float = 30.0) -> None:
        proc = self._spare or await self._spawn()
        self.starts += 1
        self._spare = await self._spawn()
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        self.proc = proc
        await self._healthy(timeout)

    async def close(self) -> None:
        """Kill the running bridge (if any) and the spare."""
        for proc in (self.proc, self._spare):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def _healthy(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while True:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    raise AssertionError(f"bridge exited with {self.proc.returncode}: {self.log()}")
                try:
                    if (await client.get(self.base_url + "/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError("bridge did not come up: " + self.log())
                await asyncio.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut or the OOM killer."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def wait(self) -> None:
        if self.proc is not None:
            await self.proc.wait()

    async def stop(self) -> int:
        """SIGTERM and wait: the graceful path."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 30)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A read on the bridge's file from outside (WAL lets it run beside the bridge)."""
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
