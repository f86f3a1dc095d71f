"""Fixtures of the console tests: a bridge with the console on, and a logged-in client."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bridge.settings import Settings

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def log_in(client: TestClient, password: str = PASSWORD) -> str:
    """Log in; the CSRF token of the new session."""
    r = await client.post("/admin/login", data={"password": password}, allow_redirects=False)
    assert r.status == 303, await r.text()
    page = await client.get("/admin/")
    assert page.status == 200
    return csrf_of(await page.text())


@pytest.fixture
def console_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**kw: Any) -> Settings:
        admin = {"password": PASSWORD, **kw.pop("admin", {})}
        return make_settings(admin=admin, **kw)

    return make
