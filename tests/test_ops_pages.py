"""/metrics kept off the public side: server.metrics_token, server.metrics_listen (DEPLOY.md)."""

from __future__ import annotations

import socket

import httpx
import pytest
from aiohttp import web

from bridge.app import create_app
from bridge.cli.serve import bind
from bridge.settings import SettingsError, load_settings
from tests.conftest import WEBHOOK

METRICS_TOKEN = "prometheus-scrape-token-0123"


async def test_metrics_token_is_required_when_set(make_settings, start_bridge):
    client = await start_bridge(make_settings(server={"metrics_token": METRICS_TOKEN}))
    bare = await client.get("/metrics")
    assert bare.status == 401 and bare.headers["WWW-Authenticate"].startswith("Bearer")
    assert "pbx_bridge" not in await bare.text()
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    good = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert good.status == 200 and "pbx_bridge_events_total" in await good.text()
    assert (await client.get("/healthz")).status == 200  # health stays open for probes


async def test_metrics_open_without_a_token(make_settings, start_bridge):
    client = await start_bridge(make_settings())
    assert (await client.get("/metrics")).status == 200


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_metrics_listen_serves_operator_pages_only_there(make_settings):
    public, operator = _port(), _port()
    settings = make_settings(
        server={"host": "127.0.0.1", "port": public, "metrics_listen": f"127.0.0.1:{operator}"}
    )
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    try:
        for sock in (bind("127.0.0.1", public), bind("127.0.0.1", operator)):
            await web.SockSite(runner, sock).start()
        async with httpx.AsyncClient() as http:
            pub = f"http://127.0.0.1:{public}"
            ops = f"http://127.0.0.1:{operator}"
            assert (await http.get(f"{pub}/metrics")).status_code == 404
            assert (await http.get(f"{ops}/metrics")).status_code == 200
            assert (await http.get(f"{ops}/readyz")).status_code == 200
            assert (await http.post(f"{ops}{WEBHOOK}", data={"uuid": "x"})).status_code == 404
            answer = await http.post(f"{pub}{WEBHOOK}", data={"uuid": "x", "event": "call_end"})
            assert answer.status_code != 404
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("value", "message"),
    [("9101", 'must be "HOST:PORT"'), ("127.0.0.1:8080", "another port than server.port")],
)
def test_metrics_listen_is_validated(tmp_path, value, message):
    path = tmp_path / "s.toml"
    path.write_text(f'[server]\nmetrics_listen = "{value}"\n')
    with pytest.raises(SettingsError, match=message):
        load_settings(path)
