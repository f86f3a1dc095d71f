"""Hostile webhook bodies (hypothesis): never a 5xx, nothing stored for a rejection, every
rejection a JSON error naming the problem, the server healthy afterwards.

The bulk goes straight through the parse and validate layer: ``FUZZ_PARSE_EXAMPLES`` examples
of 31 bodies each (one drawn from structured strategies, thirty built from a drawn seed, which
is cheap). A second batch goes over HTTP to the real app in-process (``FUZZ_HTTP_EXAMPLES``
requests), adding content types, multipart and the handler. ``PBX_BRIDGE_BIG=1`` raises both.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.app import create_app
from bridge.receive.parsing import KNOWN_FIELDS, RequestRejected, parse_form, parse_json
from bridge.receive.validate import validate
from bridge.samples import sample
from tests.conftest import WEBHOOK, rows
from tests.reliability.sizes import FUZZ_HTTP_EXAMPLES, FUZZ_PARSE_EXAMPLES

NOW = 1_780_000_000.0
FIELDS = sorted(KNOWN_FIELDS)
ABSURD_VALUES = [
    "-1",
    "1e400",
    "NaN",
    "99999999999999999999999999",
    "0x10",
    "١٢٣",  # Arabic-Indic digits: isdigit() but not what the bridge means
    "²",
    " 149 ",
    "",
    "9" * 5000,
    "2038-01-19T03:14:08Z",
    "\x00",
    "\ud800",
]
ABSURD = st.sampled_from(ABSURD_VALUES)
HUGE = st.builds(
    lambda c, n: c * n, st.sampled_from(["x", "й", "9", "\u202e"]), st.integers(2000, 9000)
)
TEXT = st.one_of(st.text(max_size=60), ABSURD, HUGE)
KEY = st.one_of(st.sampled_from(FIELDS), st.text(max_size=20))
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSON_VALUE = st.recursive(
    JSON_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEY, inner, max_size=3)
)


def _valid_base() -> dict[str, str]:
    return sample("call_end", uuid="fuzz", now=NOW)


@st.composite
def field_sets(draw: Any) -> list[tuple[str, Any]]:
    """Mostly-valid events with fields dropped, added, repeated and corrupted."""
    pairs = list(_valid_base().items())
    pairs = [p for p in pairs if not draw(st.booleans()) or draw(st.integers(0, 9)) > 1]
    pairs += draw(st.lists(st.tuples(KEY, TEXT), max_size=4))
    if pairs and draw(st.booleans()):
        key, _ = draw(st.sampled_from(pairs))
        pairs.append((key, draw(TEXT)))  # a key given twice
    return pairs


def _form(pairs: list[tuple[str, Any]]) -> bytes:
    return "&".join(
        f"{quote_plus(str(k), errors='surrogatepass')}={quote_plus(str(v), errors='surrogatepass')}"
        for k, v in pairs
    ).encode("utf-8", "surrogatepass")


def _json_text(pairs: list[tuple[str, Any]]) -> bytes:
    # Written by hand so repeated keys survive; surrogates become invalid UTF-8 bytes.
    inner = ",".join(f"{json.dumps(str(k))}:{json.dumps(v)}" for k, v in pairs)
    return ("{" + inner + "}").encode("utf-8", "surrogatepass")


DEEP = st.integers(1, 100_000).map(
    lambda n: b'{"uuid":"x","event":"e","n":' + b"[" * n + b"]" * n + b"}"
)
FORM_BODIES = st.one_of(
    field_sets().map(_form),
    st.binary(max_size=100),
    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
JSON_BODIES = st.one_of(
    field_sets().map(_json_text),
    st.lists(st.tuples(KEY, JSON_VALUE), max_size=6).map(_json_text),
    JSON_VALUE.map(lambda v: json.dumps(v).encode()),
    DEEP,
    st.binary(max_size=100),
)


def _mutant(rng: random.Random) -> tuple[str, bytes]:
    """A hostile body built from a seed: cheap to make, so the bulk can be large.

    A valid event with fields dropped, added, repeated, or given absurd, huge, binary or
    control-character values; encoded as a form or as JSON, then perhaps truncated or salted
    with bytes that are not UTF-8.
    """
    pairs: list[tuple[str, Any]] = [p for p in _valid_base().items() if rng.random() > 0.1]
    for _ in range(rng.randint(0, 4)):
        key = rng.choice([*FIELDS, "extra", "", "x" * 300, "ключ", "\x00k"])
        value: Any = rng.choice([*ABSURD_VALUES, "x" * rng.randint(1, 9000), str(rng.random())])
        if rng.random() < 0.2:
            value = rng.choice([None, True, 10 ** rng.randint(0, 400), -1.5, [1, {"a": []}], {}])
        pairs.insert(rng.randint(0, len(pairs)), (key, value))
    kind = rng.choice(("form", "json"))
    body = _json_text(pairs) if kind == "json" else _form(pairs)
    roll = rng.random()
    if roll < 0.1:
        body = body[: rng.randint(0, len(body))]
    elif roll < 0.2:
        at = rng.randint(0, len(body))
        body = (
            body[:at]
            + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"%ff", b"\x00"])
            + body[at:]
        )
    elif roll < 0.25:
        depth = rng.randint(30, 50_000)
        body = b'{"uuid":"u","event":"e","n":' + b"[" * depth + b"]" * depth + b"}"
    return kind, body


SEEDED = st.integers(0, 2**64).map(lambda seed: _mutant(random.Random(seed)))
PARSERS: dict[str, tuple[Callable[[bytes], dict[str, Any]], Any]] = {
    "form": (parse_form, FORM_BODIES),
    "json": (parse_json, JSON_BODIES),
}
STRUCTURED = st.one_of(*(st.tuples(st.just(k), s) for k, (_, s) in PARSERS.items()))
MUTANTS_PER_EXAMPLE = 30  # seeded bodies checked with each drawn one: 31 bodies an example


def _check_rejection(exc: RequestRejected) -> None:
    assert 400 <= exc.status < 500, exc.status
    body = exc.body()
    assert body["ok"] is False and body["error"] and body["detail"]


@settings(
    max_examples=FUZZ_PARSE_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(st.integers(0, 2**64), STRUCTURED)
def test_parse_and_validate_accept_or_name_the_problem(seed: int, case: tuple[str, bytes]) -> None:
    rng = random.Random(seed)
    for kind, body in [case, *(_mutant(rng) for _ in range(MUTANTS_PER_EXAMPLE))]:
        parse, _ = PARSERS[kind]
        try:
            event = validate(parse(body), NOW)
        except RequestRejected as exc:
            _check_rejection(exc)
        else:
            assert event.uuid and event.event  # what was accepted is usable
            json.dumps(event.payload, ensure_ascii=False).encode()  # and can be stored


CONTENT_TYPES = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/json",
        "multipart/form-data",
        "text/plain",
        "application/xml",
        "application/json; charset=latin-1",
        "multipart/form-data; boundary=",
        "",
        "application/json;;;q",
        None,
    ]
)


@st.composite
def requests(draw: Any) -> tuple[str | None, Any]:
    ctype = draw(CONTENT_TYPES)
    if ctype == "multipart/form-data":
        form = FormData()
        for key, value in draw(field_sets()):
            # Names go into a part header, where the client refuses control characters.
            name = "".join(ch for ch in str(key) if ch.isprintable() and ch != '"') or "x"
            form.add_field(name, str(value).encode("utf-8", "replace").decode())
        return None, form
    kind = "json" if ctype and "json" in ctype else "form"
    if draw(st.integers(0, 3)):
        return ctype, draw(SEEDED)[1]
    return ctype, draw(PARSERS[kind][1])


def test_webhook_survives_hostile_requests(make_settings: Callable[..., Any]) -> None:
    bridge_settings = make_settings(server={"max_body_bytes": 1 << 20}, adapters={"local": {}})
    loop = asyncio.new_event_loop()
    client = TestClient(TestServer(create_app(bridge_settings)), loop=loop)
    loop.run_until_complete(client.start_server())
    tally = {"accepted": 0, "duplicates": 0, "rejected": 0}

    async def post(ctype: str | None, body: Any) -> None:
        headers = {} if ctype is None else {"Content-Type": ctype}
        r = await client.post(WEBHOOK, data=body, headers=headers)
        assert r.status < 500, (r.status, await r.text())
        answer = await r.json()  # every answer is JSON
        if r.status == 200:
            tally["duplicates" if answer["duplicate"] else "accepted"] += 1
        else:
            assert answer["ok"] is False and answer["error"] and answer["detail"], answer
            tally["rejected"] += 1

    @settings(
        max_examples=FUZZ_HTTP_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests())
    def hammer(case: tuple[str | None, Any]) -> None:
        loop.run_until_complete(post(*case))

    try:
        hammer()
        stored = loop.run_until_complete(rows(bridge_settings, "SELECT COUNT(*) FROM events"))
        assert stored[0][0] == tally["accepted"], tally  # a rejection stored nothing
        assert loop.run_until_complete(client.get("/readyz")).status == 200
        fresh = loop.run_until_complete(client.post(WEBHOOK, data=sample("call_end")))
        assert fresh.status == 200
        assert tally["rejected"] > FUZZ_HTTP_EXAMPLES / 4, tally
    finally:
        loop.run_until_complete(client.close())
        loop.close()
    print(f"\nFUZZ HTTP {json.dumps(tally)}")
