"""The real bridge as a process of its own (``pbx-bridge serve``), for kill -9 and log greps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
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


# One interpreter with the bridge imported forks every bridge and CLI run the reliability tests
# start: a (re)start then takes the time the bridge itself needs (read the settings, open the
# file, requeue, bind), not an interpreter's start-up and imports (1-2 s of CPU each, on a
# machine whose cores the whole suite shares), so a CI run fits many kills. Each run is still
# its own process, killed with a real SIGKILL; it gets the environment, working directory,
# output files and fd limit it asks for. Requests are JSON lines on stdin; the forker answers
# ``pid N`` per request and ``exit N CODE`` when a run ends (it reaps them all).
_FORKER = r"""
import json, os, resource, select, signal, sys
import bridge.cli, bridge.registry
for name in bridge.registry.available():
    bridge.registry.adapter_class(name)
wake_r, wake_w = os.pipe()
os.set_blocking(wake_r, False)
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGCHLD, lambda *_: None)
def say(line):
    os.write(1, (line + "\n").encode())
def run(req):
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.close(wake_r)
    os.close(wake_w)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    if req["nofile"]:
        resource.setrlimit(resource.RLIMIT_NOFILE, (req["nofile"], req["nofile"]))
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    err = os.open(req["stderr"], os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOCTTY, 0o600)
    for fd, std in ((null, 0), (out, 1), (err, 2)):
        os.dup2(fd, std)
        os.close(fd)
    code = 1
    try:
        code = bridge.cli.main(req["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code or 0)
say("ready")
pending = b""
while True:
    try:
        ready = select.select([0, wake_r], [], [])[0]
    except InterruptedError:
        continue
    if wake_r in ready:
        try:
            os.read(wake_r, 4096)
        except BlockingIOError:
            pass
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        say(f"exit {pid} {os.waitstatus_to_exitcode(status)}")
    if 0 in ready:
        data = os.read(0, 1 << 16)
        if not data:
            break
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            req = json.loads(line)
            pid = os.fork()
            if pid == 0:
                run(req)
            say(f"pid {pid}")
"""


class Run:
    """One process the forker started: ``pid``, ``returncode`` once it ended, ``wait()``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        while self.returncode is None:
            await asyncio.sleep(0.005)
        return self.returncode


class Forker:
    """The forking interpreter (one per test session, started on first use)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _FORKER],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.runs: dict[int, Run] = {}
        self.exits: dict[int, int] = {}  # ended before its pid line was read (very fast runs)
        self.pids: queue.Queue[int] = queue.Queue()
        self.lock = threading.Lock()
        self.ready = threading.Event()
        threading.Thread(target=self._read, name="forker", daemon=True).start()
        if not self.ready.wait(60):
            raise RuntimeError("the bridge forker did not start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            kind, *rest = raw.decode().split()
            if kind == "ready":
                self.ready.set()
            elif kind == "pid":
                self.pids.put(int(rest[0]))
            elif kind == "exit":
                pid, code = int(rest[0]), int(rest[1])
                with self.lock:
                    run = self.runs.pop(pid, None)
                    if run is None:
                        self.exits[pid] = code
                    else:
                        run.returncode = code

    async def spawn(
        self,
        argv: list[str],
        *,
        stdout: Path,
        stderr: Path | str | None = None,
        nofile: int | None = None,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> Run:
        request = {
            "argv": argv,
            "stdout": str(stdout),
            "stderr": str(stderr or stdout),
            "nofile": nofile,
            "env": {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            "cwd": str(cwd),
        }
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        loop = asyncio.get_running_loop()
        pid = await loop.run_in_executor(None, self.pids.get, True, 30)
        run = Run(pid)
        with self.lock:
            if pid in self.exits:
                run.returncode = self.exits.pop(pid)
            else:
                self.runs[pid] = run
        return run


_forker: Forker | None = None


def forker() -> Forker:
    global _forker
    if _forker is None or _forker.proc.poll() is not None:
        _forker = Forker()
    return _forker


class BridgeProcess:
    """Starts, kills and restarts one bridge; every run's output goes to ``logs/<n>.log``."""

    def __init__(self, config: Path, port: int, workdir: Path) -> None:
        self.config = config
        self.port = port
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.proc: Run | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> None:
        self.starts += 1
        log = self.logs / f"{self.starts:04d}.log"
        self.proc = await forker().spawn(["--config", str(self.config), "serve"], stdout=log)
        await self._healthy(timeout)

    async def close(self) -> None:
        """Kill the running bridge (if any)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

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
