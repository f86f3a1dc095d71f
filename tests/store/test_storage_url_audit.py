"""The storage URL as an admin types it, through the real CLI (``pbx-bridge`` subprocesses):
``[storage] url`` in the file or ``PBX_BRIDGE_STORAGE__URL``, ``postgres://`` too, query
parameters, a password that never shows (banner, logs, errors, /metrics, /readyz), and every
bad URL or unreachable server a one-line error naming ``storage.url``, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from bridge.cli import main
from bridge.logs import _CauseNotTraceback
from bridge.redact import REDACTOR
from bridge.store.ports import redact_url, url_passwords
from tests.conftest import TOKEN, WEBHOOK
from tests.reliability.process import free_port

PBX_BRIDGE = Path(sys.executable).with_name("pbx-bridge")
PASSWORD = "Hunter2-audit-pw"  # trust auth: the server accepts any password
QUERY_PASSWORD = "Qpw-audit-Sekr3t"


def with_password(url: str, scheme: str = "postgres") -> str:
    """``url`` (the test's schema) as a user would write it with a password: the
    ``postgres://`` scheme, a password in the user info and one in the query, sslmode."""
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user.partition(':')[0]}:{PASSWORD}@{host}"
    query = f"{parts.query}&sslmode=disable&password={QUERY_PASSWORD}"
    return urlunsplit(parts._replace(scheme=scheme, netloc=netloc, query=query))


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [str(PBX_BRIDGE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_redact_url_masks_every_password_and_survives_a_broken_url() -> None:
    url = "postgresql://u:p%40ss@db:5432/x?sslmode=require&password=Sekr3t&search_path=a"
    assert (
        redact_url(url) == "postgresql://u:***@db:5432/x?sslmode=require&password=***&search_path=a"
    )
    assert set(url_passwords(url)) == {"p%40ss", "p@ss", "Sekr3t"}
    assert redact_url("postgresql://u:pw@[::1/db") == "(the URL, unparsable)"
    assert redact_url("postgres://bridge@db/bridge") == "postgres://bridge@db/bridge"


def test_migrate_with_a_password_in_the_env_url_never_shows_it(postgres_url, tmp_path) -> None:
    url = with_password(postgres_url)
    env = {"PBX_BRIDGE_STORAGE__URL": url}
    first = cli("migrate", env=env, cwd=tmp_path)
    again = cli("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert "migrated from schema version 0 to" in first.stdout
    assert "up to date" in again.stdout  # idempotent, and says so
    assert "postgres://" in first.stdout and "password=***" in first.stdout
    for run in (first, again):
        shown = run.stdout + run.stderr
        assert PASSWORD not in shown and QUERY_PASSWORD not in shown
    assert not list(tmp_path.iterdir())  # no SQLite file made beside it


BAD_URLS = [
    ("postgresql://u:{pw}@127.0.0.1:notaport/db", "not a valid URL"),
    ("postgresql://u:{pw}@127.0.0.1:99999/db", "not a valid URL"),
    ("postgresql://u:{pw}@[::1/db", "not a valid URL"),
    ("mysql://u:{pw}@127.0.0.1/db", "must be a postgresql:// URL"),
    # an unencoded / # @ in the password: refused, and no piece of it quoted
    ("postgresql://u:{pw}/x@127.0.0.1:5432/db", "percent-encoded"),
    ("postgresql://u:{pw}#x@127.0.0.1:5432/db", "it has a #"),
    ("postgresql://u:{pw}@x@127.0.0.1:5432/db", "more than one @"),
    ("postgresql://u:{pw}@127.0.0.1/db?search_path=a-b", "not one plain schema name"),
    ("postgresql://u:{pw}@127.0.0.1:5432/db?sslmode=bogus", "sslmode"),
    ("postgresql://u:{pw}@127.0.0.1:{dead}/db", "cannot reach PostgreSQL"),
]


@pytest.mark.parametrize(("url", "said"), BAD_URLS)
def test_a_bad_url_is_one_line_naming_the_key(url, said, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PBX_BRIDGE_STORAGE__URL", url.format(pw=PASSWORD, dead=free_port()))
    assert main(["migrate"]) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert said in err and "storage.url" in err, err
    assert "Traceback" not in err and PASSWORD not in out + err
    assert PASSWORD[:6] not in out + err and "/x" not in err.replace("/ is", "")
    assert len(lines) <= 2, err  # "invalid settings in the environment:" + the key's line


async def test_a_server_that_never_answers_is_named_with_the_wait(capsys, monkeypatch) -> None:
    from bridge.store import postgres

    hole = await asyncio.start_server(lambda r, w: asyncio.sleep(30), "127.0.0.1", 0)
    port = hole.sockets[0].getsockname()[1]
    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT", 0.3)
    monkeypatch.setenv("PBX_BRIDGE_STORAGE__URL", f"postgresql://u:{PASSWORD}@127.0.0.1:{port}/db")
    try:
        assert await asyncio.to_thread(main, ["migrate"]) == 2
    finally:
        hole.close()
    err = capsys.readouterr().err
    assert "storage.url: cannot reach PostgreSQL at" in err and "no answer within 0.3 s" in err


def test_serve_on_an_unparsable_url_exits_without_a_traceback(tmp_path) -> None:
    env = {"PBX_BRIDGE_STORAGE__URL": f"postgresql://u:{PASSWORD}@127.0.0.1:notaport/db"}
    run = cli("serve", env=env, cwd=tmp_path)
    assert run.returncode == 2 and "storage.url" in run.stderr
    assert "Traceback" not in run.stderr and PASSWORD not in run.stderr


async def test_serve_with_a_password_in_the_file_url_shows_it_nowhere(postgres_url, tmp_path):
    port = free_port()
    cfg = tmp_path / "settings.toml"
    cfg.write_text(
        f'[server]\nport = {port}\nhost = "127.0.0.1"\nwebhook_token = "{TOKEN}"\n'
        f'[storage]\nurl = "{with_password(postgres_url)}"\n'
    )
    proc = subprocess.Popen(
        [str(PBX_BRIDGE), "--config", str(cfg), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    pages = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "serve never ready"
                await asyncio.sleep(0.2)
            hook = await http.post(WEBHOOK, data={"event": "call_end", "uuid": "x"})
            pages = [hook.text, (await http.get("/readyz")).text, (await http.get("/metrics")).text]
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert "database (storage.url): postgres://" in output  # the banner names the key
    for shown in [output, *pages]:
        assert PASSWORD not in shown and QUERY_PASSWORD not in shown


def test_an_outage_logs_asyncpgs_retries_as_one_line_each() -> None:
    record = logging.LogRecord("asyncpg.pool", logging.WARNING, __file__, 1, "retrying", (), None)
    try:
        raise ConnectionRefusedError(111, "Connect call failed")
    except OSError:
        record.exc_info = sys.exc_info()
    assert _CauseNotTraceback().filter(record)
    assert record.exc_info is None
    assert (
        record.getMessage() == "retrying: ConnectionRefusedError: [Errno 111] Connect call failed"
    )
    installed = logging.getLogger("asyncpg.pool").filters
    assert any(isinstance(f, _CauseNotTraceback) for f in installed)


async def test_the_url_password_is_masked_in_every_log_line(postgres_url) -> None:
    from bridge.settings import StorageSettings
    from bridge.store import open_storage

    storage = await open_storage(StorageSettings(url=with_password(postgres_url)))
    try:
        assert REDACTOR(f"dsn {PASSWORD} and {QUERY_PASSWORD}") == "dsn *** and ***"
    finally:
        await storage.close()


async def test_a_second_serve_through_a_symlink_to_the_file_is_refused(tmp_path) -> None:
    from bridge.store import StorageBusy
    from bridge.store.sqlite import SQLiteStorage

    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "bridge.db"
    first = await SQLiteStorage.open(real)
    link = tmp_path / "link.db"
    link.symlink_to(real)
    second = await SQLiteStorage.open(link)
    try:
        await first.hold_instance()
        with pytest.raises(StorageBusy, match="already running"):
            await second.hold_instance()
    finally:
        await second.close()
        await first.close()


async def test_a_user_who_owns_only_its_schema_can_run_the_bridge(postgres_url) -> None:
    """A managed PostgreSQL's usual grant: the bridge's user may create tables in its schema,
    not schemas in the database (CREATE SCHEMA IF NOT EXISTS needs that even when it exists)."""
    from bridge.settings import StorageSettings
    from bridge.store import StorageError, open_storage
    from tests.postgres import connect_or_skip

    parts = urlsplit(postgres_url)
    schema = parts.query.rsplit("search_path=", 1)[1]
    role = f"pbx_lp_{schema}"
    admin = await connect_or_skip()
    await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    await admin.execute(f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO "{role}"')
    as_role = urlunsplit(parts._replace(netloc=f"{role}:pw@{parts.netloc.rpartition('@')[2]}"))
    try:
        storage = await open_storage(StorageSettings(url=as_role))
        try:
            assert storage.migrated[1] > 0 and await storage.schema_version() == storage.migrated[1]
        finally:
            await storage.close()
        elsewhere = as_role.replace(f"search_path={schema}", f"search_path={schema}_x")
        with pytest.raises(StorageError, match=r"may not create it.*AUTHORIZATION"):
            await open_storage(StorageSettings(url=elsewhere))
    finally:
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()
