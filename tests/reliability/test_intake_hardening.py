"""Intake and output promises an adversarial review broke (issue #12): undecodable bodies,
aiohttp's own 400s and logs, lone surrogates, control characters in CRM texts and CLI
output, and made-up event names in the metrics."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.app import create_app
from bridge.receive import server
from bridge.samples import sample
from tests.conftest import TOKEN, WEBHOOK, rows
from tests.reliability.process import free_port, write_settings

BOUNDARY = "b0undary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def _multipart(
    fields: dict[str, str], part_headers: str = "", raw_name: bytes | None = None
) -> bytes:
    out = b""
    for key, value in fields.items():
        name = raw_name if raw_name is not None and key == "odd" else key.encode()
        out += (
            f"--{BOUNDARY}\r\n".encode()
            + b'Content-Disposition: form-data; name="'
            + name
            + b'"\r\n'
            + part_headers.encode()
            + b"\r\n"
            + value.encode()
            + b"\r\n"
        )
    return out + f"--{BOUNDARY}--\r\n".encode()


EVENT = sample("call_end", uuid="intake-1")
HANDLER_CASES = {
    # (body, headers) → a 4xx JSON error, never a 500 or a text page
    "part charset unknown": (
        _multipart(EVENT, "Content-Type: text/plain; charset=x-no-such-charset\r\n"),
        {"Content-Type": MULTIPART},
    ),
    "part transfer encoding unknown": (
        _multipart(EVENT, "Content-Transfer-Encoding: x-uuencode\r\n"),
        {"Content-Type": MULTIPART},
    ),
    "body gzip that is not gzip": (
        b"event=call_end&uuid=x",
        {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"},
    ),
    "body content encoding unknown": (
        b"event=call_end&uuid=x",
        {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "x-zip"},
    ),
    # #12 item 9: a lone surrogate in any parser is refused before it reaches the store
    "multipart name with a byte that is not UTF-8": (
        _multipart({**EVENT, "odd": "1"}, raw_name=b"na\xffme"),
        {"Content-Type": MULTIPART},
    ),
    "JSON key with a lone surrogate": (
        json.dumps({**EVENT, "\udcff": "1"}).encode(),
        {"Content-Type": "application/json"},
    ),
}


@pytest.mark.parametrize("case", HANDLER_CASES)
async def test_undecodable_bodies_get_a_4xx_json_error(
    case: str, make_settings: Callable[..., Any], start_bridge: Callable[..., Any]
) -> None:
    settings = make_settings()
    client = await start_bridge(settings)
    body, headers = HANDLER_CASES[case]
    r = await client.post(WEBHOOK, data=body, headers=headers)
    assert 400 <= r.status < 500, (r.status, await r.text())
    assert r.content_type == "application/json"
    answer = await r.json()
    assert answer["ok"] is False and answer["error"] and answer["detail"]
    assert await rows(settings, "SELECT COUNT(*) FROM events") == [(0,)]


async def test_a_bad_event_beside_good_ones_costs_only_itself(
    make_settings: Callable[..., Any], start_bridge: Callable[..., Any]
) -> None:
    settings = make_settings()
    client = await start_bridge(settings)
    bad = _multipart({**sample("call_end", uuid="bad"), "odd": "1"}, raw_name=b"\xff")
    answers = await asyncio.gather(
        *(client.post(WEBHOOK, data=sample("call_end", uuid=f"good-{n}")) for n in range(5)),
        client.post(WEBHOOK, data=bad, headers={"Content-Type": MULTIPART}),
        *(client.post(WEBHOOK, data=sample("call_end", uuid=f"good-{n}")) for n in range(5, 10)),
    )
    statuses = [a.status for a in answers]
    assert statuses == [200] * 5 + [400] + [200] * 5, statuses
    assert await rows(settings, "SELECT COUNT(*) FROM events") == [(10,)]


# --- the served app (``pbx-bridge serve``'s connection handler) ------------------------------


@pytest.fixture
async def served(make_settings: Callable[..., Any]) -> AsyncIterator[tuple[int, Any]]:
    settings = make_settings()
    app = create_app(settings)
    port = free_port()
    runner, srv, _ = await server.start(app, "127.0.0.1", port, shutdown_timeout=1)
    yield port, settings
    await server.stop(runner, srv)


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    return answer


def _split(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


MALFORMED = {
    "junk after the version": f"POST /webhooks/onlinepbx/{TOKEN} HTTP/1.1 x\r\nHost: a\r\n\r\n",
    "control byte in the path": f"POST /webhooks/onlinepbx/{TOKEN}\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
    "space in the path": f"POST /webhooks/onlinepbx/{TOKEN} x HTTP/1.1\r\nHost: a\r\n\r\n",
    "header without colon": f"POST /webhooks/onlinepbx/{TOKEN} HTTP/1.1\r\nHost {TOKEN}\r\n\r\n",
}


@pytest.mark.parametrize("case", MALFORMED)
async def test_aiohttps_own_400_and_its_log_hold_no_token(
    case: str, served: tuple[int, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    port, _ = served
    status, headers, body = _split(await _raw(port, MALFORMED[case].encode("latin-1")))
    assert status == 400
    assert TOKEN.encode() not in body
    assert headers["content-type"].startswith("application/json"), headers
    assert json.loads(body)["ok"] is False
    await asyncio.sleep(0.05)
    logged = capsys.readouterr().err
    assert "Error handling request" in logged  # aiohttp did log it …
    assert TOKEN not in logged  # … through the redactor


PARSER_CASES = {
    "br without brotli": (b"xx", "br"),
    "deflate that is not": (b"not deflate", "deflate"),
    "gzip that is not": (b"not gzip", "gzip"),
}


@pytest.mark.parametrize("case", PARSER_CASES)
async def test_content_encoding_that_does_not_decode_is_a_4xx_json_error(
    case: str, served: tuple[int, Any]
) -> None:
    port, settings = served
    body, encoding = PARSER_CASES[case]
    head = (
        f"POST {WEBHOOK} HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded"
        f"\r\nContent-Encoding: {encoding}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    status, headers, answer = _split(await _raw(port, head.encode() + body))
    assert 400 <= status < 500, (status, answer)
    assert headers["content-type"].startswith("application/json"), (headers, answer)
    assert json.loads(answer)["error"] == "bad_encoding"
    assert await rows(settings, "SELECT COUNT(*) FROM events") == [(0,)]


async def test_a_real_gzip_body_is_still_taken(served: tuple[int, Any]) -> None:
    port, _ = served
    from urllib.parse import urlencode

    body = gzip.compress(urlencode(sample("call_end")).encode())
    head = (
        f"POST {WEBHOOK} HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded"
        f"\r\nContent-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    status, _, answer = _split(await _raw(port, head.encode() + body))
    assert status == 200, answer


# --- 16. controls and bidi overrides ----------------------------------------------------------

UNSAFE_TEXT = "NORMAL\u202eGNIRAELC\u202c\x9b31m\u2066x\u2069\x85"
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


async def test_controls_and_bidi_overrides_stay_out_of_crm_texts(
    make_settings: Callable[..., Any], start_bridge: Callable[..., Any]
) -> None:
    settings = make_settings(
        adapters={"local": {}},
        schedule={"templates": {"outcome_answered": "{hangup_cause} {line}"}},
    )
    client = await start_bridge(settings)
    body = {**sample("call_end", uuid="bidi-1"), "hangup_cause": UNSAFE_TEXT}
    body["gateway"] = "7495\u202e1234"
    assert (await client.post(WEBHOOK, data=body)).status == 200
    for _ in range(300):  # both jobs: over + log_call
        if await rows(settings, "SELECT status FROM jobs") == [("done",), ("done",)]:
            break
        await asyncio.sleep(0.02)
    written = await rows(settings, "SELECT result, line FROM local_calls")
    assert written, await rows(settings, "SELECT status, last_error FROM jobs")
    for text in written[0]:
        assert not UNSAFE.search(text or ""), repr(text)
    assert "NORMALGNIRAELC" in written[0][0]


def test_controls_and_bidi_overrides_stay_out_of_cli_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.cli import main
    from bridge.store.events import EventWriter, IncomingEvent
    from bridge.store.sqlite import SQLiteStorage

    async def seed() -> None:
        db = await SQLiteStorage.open(tmp_path / "b.db")
        try:
            payload = {**sample("call_end", uuid="bidi-2"), "note": UNSAFE_TEXT}
            writer = EventWriter(db, lambda event: [("local", "log_call")])
            await writer.submit(IncomingEvent("pbx.example.com", "bidi-2", "call_end", payload))
            await db.db.write("UPDATE jobs SET last_error = ?", (f"HTTP 400 {UNSAFE_TEXT}",))
        finally:
            await db.close()

    asyncio.run(seed())
    config = write_settings(tmp_path / "cli.toml", {"storage": {"path": str(tmp_path / "b.db")}})
    for argv in (["outbox", "show", "1"], ["outbox", "list"], ["outbox", "list", "--json"]):
        assert main([*argv, "-c", str(config)]) == 0
        out = capsys.readouterr()
        assert not UNSAFE.search(out.out), (argv, repr(out.out))
        assert "NORMALGNIRAELC" in out.out, (argv, out.out)


# --- 19. bounded metric labels -------------------------------------------------------------------


async def test_made_up_event_names_do_not_make_metric_series(
    make_settings: Callable[..., Any], start_bridge: Callable[..., Any]
) -> None:
    client = await start_bridge(make_settings())
    for n in range(60):
        body = {**sample("call_end", uuid=f"m-{n}"), "event": f"made_up_{n}"}
        assert (await client.post(WEBHOOK, data=body)).status == 200
    page = await (await client.get("/metrics")).text()
    labels = set(re.findall(r'pbx_bridge_events_total\{event="([^"]*)"', page))
    assert len(labels) <= 6, sorted(labels)[:10]
    assert "other" in labels
    print(f"METRICS after 60 made-up event names: {len(labels)} event label values")
