"""The real PostgreSQL for tests: a fresh schema per test, dropped after.

The server comes from ``PBX_BRIDGE_TEST_POSTGRES`` (default the project machines' local one).
Unreachable: the test is skipped with the reason, except under CI (``CI=1``, set by
``.ci/run``), where a skip would hide that the PostgreSQL backend went untested: there it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

ENV = "PBX_BRIDGE_TEST_POSTGRES"
DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get(ENV, DEFAULT)


def in_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, f"search_path={schema}") if q)
    return urlunsplit(parts._replace(query=query))


async def connect_or_skip() -> asyncpg.Connection:
    url = server_url()
    try:
        return await asyncpg.connect(url, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        reason = f"no PostgreSQL at {url} ({type(exc).__name__}: {exc}); set {ENV}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}. Under CI the PostgreSQL tests must run, not skip.")
        pytest.skip(reason)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A URL whose ``search_path`` is a schema created for this test alone."""
    conn = await connect_or_skip()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield in_schema(server_url(), schema)
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
