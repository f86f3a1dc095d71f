"""Stable recording links: signing, re-resolution after onlinePBX's link expires, 403/404."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from bridge.call import build_call
from bridge.keys import LINKS
from bridge.onlinepbx.links import RecordingLinks
from bridge.phones import NumberParser
from bridge.samples import sample
from tests.conftest import WEBHOOK, FakeClock
from tests.fakes.onlinepbx import PUBLIC_URL, call_record
from tests.test_delivery import http_table, receivers, wait_for  # noqa: F401

AUDIO = bytes(range(256)) * 40
NOW = 1_780_000_000.0


def link_path(url: str) -> str:
    assert url.startswith(PUBLIC_URL + "/recordings/")
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


@pytest.fixture
def recorded(pbx):
    pbx.calls.append(call_record("rec-1", int(NOW) - 600))
    pbx.recordings["rec-1"] = AUDIO
    return pbx


# --- signing -------------------------------------------------------------------------------


def test_a_link_verifies_only_for_its_own_uuid_expiry_and_key():
    links = RecordingLinks("k" * 32, PUBLIC_URL, 86_400)
    query = dict(p.split("=") for p in urlsplit(links.url("abc", NOW)).query.split("&"))
    exp, sig = query["exp"], query["sig"]
    assert links.valid("abc", exp, sig, NOW)
    assert not links.valid("abd", exp, sig, NOW)  # another call
    assert not links.valid("abc", str(int(exp) + 1), sig, NOW)  # lengthened
    assert not links.valid("abc", exp, sig[:-1] + ("A" if sig[-1] != "A" else "B"), NOW)
    assert not links.valid("abc", exp, sig, NOW + 86_401)  # expired
    assert not links.valid("abc", "1e9", sig, NOW)
    other = RecordingLinks("x" * 32, PUBLIC_URL, 86_400)
    assert not other.valid("abc", exp, sig, NOW)


def test_a_call_with_a_recording_gets_the_bridge_link_and_one_without_none():
    links = RecordingLinks("k" * 32, PUBLIC_URL, 86_400)
    parser = NumberParser("RU", 6)
    with_rec = build_call(
        {**sample("call_end", now=NOW), "download_url": "https://x/r.mp3"}, parser
    )
    assert links.apply(with_rec, NOW).recording_url.startswith(PUBLIC_URL + "/recordings/")
    without = build_call(sample("call_end", now=NOW), parser)
    assert links.apply(without, NOW).recording_url is None


# --- the route -----------------------------------------------------------------------------


async def open_link(client, url: str, **kw) -> object:
    return await client.get(link_path(url), allow_redirects=False, **kw)


async def test_link_keeps_playing_after_the_pbx_link_expired(
    recorded, pbx_settings, pbx_clock, start_bridge
):
    client = await start_bridge(pbx_settings(), clock=pbx_clock)
    links = client.app[LINKS]
    url = links.url("rec-1", pbx_clock())
    first = await open_link(client, url)
    assert first.status == 302 and first.headers["Cache-Control"] == "no-store"
    raw = first.headers["Location"]
    async with httpx.AsyncClient() as http:
        assert (await http.get(raw)).content == AUDIO
        pbx_clock.advance(31 * 60)  # onlinePBX's link is dead now
        dead = await http.get(raw)
        assert dead.status_code == 404 and dead.text == "KEY_IS_EXPIRED"
        again = await open_link(client, url)  # the bridge link asks for a fresh one
        assert again.status == 302 and again.headers["Location"] != raw
        assert (await http.get(again.headers["Location"])).content == AUDIO


async def test_links_name_a_playable_file_and_older_links_still_open(
    recorded, pbx_settings, pbx_clock, start_bridge
):
    # CRMs that play recordings (HubSpot) take only https links to an .mp3/.wav name.
    client = await start_bridge(pbx_settings(), clock=pbx_clock)
    url = client.app[LINKS].url("rec-1", pbx_clock())
    assert urlsplit(url).path == "/recordings/rec-1.mp3"
    assert (await open_link(client, url)).status == 302
    older = url.replace("/rec-1.mp3?", "/rec-1?")  # a link issued before the suffix
    assert (await open_link(client, older)).status == 302


async def test_tampered_or_expired_links_get_403_and_reveal_nothing(
    recorded, pbx_settings, pbx_clock, start_bridge
):
    client = await start_bridge(pbx_settings(), clock=pbx_clock)
    links = client.app[LINKS]
    good = links.url("rec-1", pbx_clock())
    searches_before = len(recorded.searches())
    tampered = [
        good.replace("rec-1", "rec-2"),
        good.replace("sig=", "sig=x"),
        good.split("&sig=")[0],
        good.replace("exp=", "exp=9"),
    ]
    for url in tampered:
        resp = await open_link(client, url)
        assert resp.status == 403, url
        assert await resp.json() == {"ok": False, "error": "forbidden"}
    pbx_clock.advance(366 * 86_400)  # past the default 365-day lifetime
    resp = await open_link(client, good)
    assert resp.status == 403 and await resp.json() == {"ok": False, "error": "forbidden"}
    assert len(recorded.searches()) == searches_before  # onlinePBX was never asked


async def test_a_vanished_recording_is_404_with_a_clear_message(
    recorded, pbx_settings, pbx_clock, start_bridge
):
    client = await start_bridge(pbx_settings(), clock=pbx_clock)
    url = client.app[LINKS].url("gone-uuid", pbx_clock())
    resp = await open_link(client, url)
    assert resp.status == 404
    body = await resp.json()
    assert body["error"] == "recording_not_found" and "no recording" in body["detail"]


async def test_stream_mode_passes_range_through_and_renews_an_expired_link(
    recorded, pbx_settings, pbx_clock, start_bridge
):
    settings = pbx_settings(onlinepbx={"recording_mode": "stream"})
    client = await start_bridge(settings, clock=pbx_clock)
    url = client.app[LINKS].url("rec-1", pbx_clock())
    whole = await open_link(client, url)
    assert whole.status == 200 and await whole.read() == AUDIO
    assert whole.headers["Content-Type"] == "audio/mpeg"
    part = await open_link(client, url, headers={"Range": "bytes=100-199"})
    assert part.status == 206 and await part.read() == AUDIO[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(AUDIO)}"
    # The cached link is reused for minutes; if onlinePBX killed it early, one renewal.
    recorded._links.clear()
    after = await open_link(client, url, headers={"Range": "bytes=0-9"})
    assert after.status == 206 and await after.read() == AUDIO[:10]


async def test_adapters_receive_the_bridge_link_not_the_raw_one(
    recorded,
    pbx_settings,
    pbx_clock,
    start_bridge,
    receivers,  # noqa: F811
):
    receiver = await receivers()
    settings = pbx_settings(adapters={"hook": http_table(receiver)})
    client = await start_bridge(settings, clock=pbx_clock)
    body = {**sample("call_end", uuid="rec-1", now=pbx_clock()), "domain": recorded.domain}
    body["download_url"] = "https://api2.onlinepbx.ru/calls-records/download/dies-soon/rec.mp3"
    assert (await client.post(WEBHOOK, data=body)).status == 200

    async def delivered():
        return receiver.documents()

    (doc,) = await wait_for(delivered)
    stored = doc["call"]["recording_url"]
    assert "dies-soon" not in stored
    resp = await open_link(client, stored)
    assert resp.status == 302


async def test_without_credentials_the_raw_link_is_kept(
    make_settings,
    start_bridge,
    receivers,  # noqa: F811
):
    receiver = await receivers()
    settings = make_settings(
        adapters={"hook": http_table(receiver)}, server={"public_url": PUBLIC_URL}
    )
    client = await start_bridge(settings, clock=FakeClock())
    raw = "https://api2.onlinepbx.ru/calls-records/download/abc/rec.mp3"
    body = {**sample("call_end", now=FakeClock()()), "download_url": raw}
    assert (await client.post(WEBHOOK, data=body)).status == 200

    async def delivered():
        return receiver.documents()

    (doc,) = await wait_for(delivered)
    assert doc["call"]["recording_url"] == raw
    resp = await client.get("/recordings/abc?exp=1&sig=x")
    assert resp.status == 404
