"""The load generator: ``wrk`` (Debian package) with a Lua script posting an onlinePBX
``call_end`` body; a Python generator only when wrk is not installed (and it says so)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.common import call_end_form, load_average, percentile

LUA = Path(__file__).resolve().parent / "post_call_end.lua"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass(frozen=True)
class Load:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors

    def row(self) -> str:
        return (
            f"{self.rps:8.0f} req/s  p50 {self.p50_ms:6.1f} ms  p99 {self.p99_ms:6.1f} ms"
            f"  ({self.requests} requests, {self.errors} errors)"
        )


class NoRequests(RuntimeError):
    """The load generator completed no request: the server did not answer at all."""

    def __init__(self, url: str, seconds: float, detail: str) -> None:
        super().__init__(
            f"the load generator completed no request to {url} in {seconds:g} s ({detail};"
            f" {load_average()}): the server is down, not answering, or the machine is too"
            " loaded for this run"
        )


def generator() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def _body_template() -> str:
    return re.sub(r"uuid=[^&]*", "uuid=UUID", call_end_form())


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


async def run_wrk(url: str, seconds: float, connections: int) -> Load:
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "-s",
        str(LUA),
        url,
        env={**os.environ, "BODY": _body_template()},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await proc.communicate())[0].decode()
    if proc.returncode:
        raise RuntimeError(f"wrk failed:\n{out}")
    total = re.search(r"(\d+) requests in", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if not total or int(total.group(1)) == 0 or "50" not in lat or "99" not in lat or not rps:
        # wrk prints no latency distribution when nothing completed (a server that never
        # answered within the run): say that, instead of a KeyError on the missing figures.
        said = sock.group(0) if sock else "no socket errors reported"
        raise NoRequests(url, seconds, f"wrk: {said}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (
        sum(int(g) for g in sock.groups()) if sock else 0
    )
    return Load(int(total.group(1)), float(rps.group(1)), _ms(lat["50"]), _ms(lat["99"]), errors)


async def run_python(url: str, seconds: float, connections: int) -> Load:
    """Fallback when wrk is missing: 32 keep-alive connections posting back to back."""
    template = _body_template()
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def worker(n: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        i = 0
        while time.monotonic() < deadline:
            i += 1
            body = template.replace("UUID", f"p{os.getpid()}-{n}-{i}-{time.time_ns()}")
            start = time.perf_counter()
            try:
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
                ) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append((time.perf_counter() - start) * 1000)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.monotonic()
        await asyncio.gather(*(worker(n, session) for n in range(connections)))
        took = time.monotonic() - began
    if not latencies or errors == len(latencies):
        raise NoRequests(url, seconds, f"python generator: {errors} failed attempts")
    return Load(
        len(latencies),
        len(latencies) / took,
        percentile(latencies, 50),
        percentile(latencies, 99),
        errors,
    )


async def drive(url: str, seconds: float, connections: int = 32) -> Load:
    if generator() == "wrk":
        return await run_wrk(url, seconds, connections)
    return await run_python(url, seconds, connections)


async def warm_up(url: str, connections: int = 32, seconds: float = 2, tries: int = 3) -> None:
    """Load ``url`` for ``seconds`` until a run completes requests (``tries`` runs at most):
    on a loaded machine a server that just became ready can stall its first seconds."""
    for attempt in range(1, tries + 1):
        try:
            await drive(url, seconds, connections)
            return
        except NoRequests:
            if attempt == tries:
                raise
            print(f"  (warm-up {attempt} completed no request; {load_average()}; again)")
