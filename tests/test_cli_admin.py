"""#11: the admin's first hour — no silent loss, no traceback, check and send-sample that help."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bridge.cli import main
from tests.conftest import TOKEN, WEBHOOK, rows
from tests.test_cli import cli, config

READ_ONLY = [
    ["outbox", "stats"],
    ["outbox", "list"],
    ["outbox", "show", "1"],
    ["calls"],
    ["tasks"],
    ["webhook-url"],
]


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch):
    monkeypatch.delenv("PBX_BRIDGE_CONFIG", raising=False)


def with_server(cfg: str, lines: str) -> str:
    """Add keys to the [server] table of a test settings file."""
    path = Path(cfg)
    path.write_text(path.read_text().replace("[server]\n", "[server]\n" + lines, 1))
    return cfg


def settings_without_token(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "s.toml"
    path.write_text(f'[storage]\npath = "{tmp_path / "bridge.db"}"\n' + extra)
    return str(path)


# --- no silent loss --------------------------------------------------------------------------


@pytest.mark.parametrize("argv", READ_ONLY, ids=" ".join)
def test_read_only_commands_never_create_a_database(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)  # "run from another directory": no settings, default path
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"no database at {tmp_path / 'pbx-bridge.db'}" in err
    assert "--config" in err and "PBX_BRIDGE_CONFIG" in err and "nothing was created" in err
    assert list(tmp_path.iterdir()) == []


def test_check_without_a_database_creates_none(tmp_path, capsys):
    cfg = settings_without_token(tmp_path)
    assert main(["check", "-c", cfg]) == 0
    out = capsys.readouterr().out
    assert "[WARN] no database at" in out and "[ OK ] local" in out
    assert not (tmp_path / "bridge.db").exists()


def test_misspelled_config_variable_is_an_error_not_a_new_database(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PBX_BRIDGE_CONFG", str(tmp_path / "settings.toml"))
    assert main(["outbox", "stats"]) == 2
    assert "did you mean PBX_BRIDGE_CONFIG" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_webhook_url_with_a_configured_token_needs_no_database(tmp_path, capsys):
    cfg = with_server(config(tmp_path), 'public_url = "https://pbx.example.com"\n')
    assert main(["webhook-url", "-c", cfg]) == 0
    assert capsys.readouterr().out.strip() == f"https://pbx.example.com/webhooks/onlinepbx/{TOKEN}"
    assert not (tmp_path / "bridge.db").exists()


def test_purge_refuses_less_than_a_day_and_says_what_it_removes(tmp_path, capsys):
    cfg = config(tmp_path)
    sqlite3.connect(tmp_path / "bridge.db").close()
    with pytest.raises(SystemExit) as exc:
        main(["-c", cfg, "outbox", "purge", "--older-than-days", "0.5"])
    assert exc.value.code == 2
    assert "at least 1 day" in capsys.readouterr().err
    assert main(["-c", cfg, "outbox", "purge", "--older-than-days", "3"]) == 0
    out = capsys.readouterr()
    assert "removing done jobs finished before" in out.err and "dead jobs are kept" in out.err
    assert "purged 0 done job(s)" in out.out


@pytest.mark.parametrize(
    "argv",
    [
        ["outbox", "show", "99999999999999999999"],
        ["outbox", "retry", "1", "18446744073709551616"],
        ["outbox", "list", "--limit", "10000000000000000000000"],
        ["backfill", "--since", "notadate"],
        ["backfill", "--since", "2026-03-01", "--until", "yesterday"],
        ["outbox", "show", "0"],
    ],
    ids=" ".join,
)
def test_bad_arguments_are_usage_errors_not_tracebacks(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("must be" in err or "is not a date" in err)


# --- the database path, unusable ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["directory", "not a database", "read-only"])
def test_unusable_database_names_storage_path_and_file(tmp_path, monkeypatch, capsys, kind):
    db = tmp_path / "bridge.db"
    if kind == "directory":
        db.mkdir()
        expected = "is a directory"
    elif kind == "not a database":
        db.write_bytes(b"this is a text file, not SQLite\n" * 200)
        expected = "is not an SQLite database"
    else:
        sqlite3.connect(db).close()

        async def readonly(*a, **kw):
            raise sqlite3.OperationalError("attempt to write a readonly database")

        monkeypatch.setattr("bridge.store.db.Database.open", readonly)
        expected = "cannot be written by this user"
    cfg = config(tmp_path)
    for argv in (["outbox", "stats"], ["serve", "--port", str(_free_port())]):
        assert main(["-c", cfg, *argv]) == 2
        err = capsys.readouterr().err
        assert f"storage.path: {db}" in err and expected in err and "Traceback" not in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_in_use_is_said_first(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = with_server(config(tmp_path), f'host = "127.0.0.1"\nport = {port}\n')
        assert main(["serve", "-c", cfg]) == 2
    captured = capsys.readouterr()
    assert f"port {port} on 127.0.0.1 is already in use" in captured.err
    assert "listening" not in captured.err
    assert not (tmp_path / "bridge.db").exists()  # said before any other start-up work


def test_banner_states_the_database_path(tmp_path):
    port = _free_port()
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[server]\nhost = "127.0.0.1"\nport = {port}\n[log]\nformat = "json"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "-c", str(cfg)],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "webhook URL" in line or not line:
                break
        text = "".join(lines)
        assert f"database (storage.path): {tmp_path / 'pbx-bridge.db'}" in text
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)


# --- check ------------------------------------------------------------------------------------

AMO = "https://example.amocrm.ru"


def amo_config(tmp_path, users: str = "", extra: str = "") -> str:
    return config(
        tmp_path,
        f'[adapters.amocrm]\nbase_url = "{AMO}"\naccess_token = "amo-secret-token-0123"\n'
        + users
        + extra,
    )


def _amo_answers(mock):
    mock.get(f"{AMO}/api/v4/account").respond(
        200, json={"id": 1, "name": "Acme", "subdomain": "example"}
    )
    mock.get(f"{AMO}/api/v4/users").respond(
        200,
        json={
            "_embedded": {
                "users": [{"id": 5550001, "name": "Anna"}, {"id": 5550002, "name": "Ivan"}]
            }
        },
    )


def test_check_is_compact_and_dumps_settings_only_when_verbose(tmp_path, capsys, no_unmocked_http):
    _amo_answers(no_unmocked_http)
    cfg = amo_config(tmp_path, 'users = { "101" = 5550001 }\n')
    sqlite3.connect(tmp_path / "bridge.db").close()
    assert main(["-c", cfg, "check"]) == 0
    out = capsys.readouterr().out
    assert "[ OK ] amocrm: Acme" in out
    assert '"server"' not in out and "amo-secret-token" not in out
    assert main(["-c", cfg, "check", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert '"server"' in out and '"base_url"' in out and "amo-secret-token" not in out
    assert TOKEN not in out


def test_check_names_users_the_crm_does_not_know(tmp_path, capsys, no_unmocked_http):
    _amo_answers(no_unmocked_http)
    cfg = amo_config(tmp_path, 'users = { "101" = 5550001, "102" = 999 }\ndefault_user = 777\n')
    assert main(["-c", cfg, "check"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] amocrm: Acme" in out
    assert "extension 102 → 999 is not a user of this CRM" in out
    assert "default_user 777 is not a user" in out
    assert "5550002: Ivan" in out  # the CRM's users, to fix the map with
    assert "101 → 5550001" not in out


def test_check_one_adapter(tmp_path, capsys, no_unmocked_http):
    _amo_answers(no_unmocked_http)
    cfg = amo_config(tmp_path, extra="[adapters.local]\n")
    assert main(["-c", cfg, "check", "--adapter", "local"]) == 0
    out = capsys.readouterr().out
    assert "[ OK ] local" in out and "amocrm" not in out
    assert not no_unmocked_http.calls  # amoCRM was not asked
    assert main(["-c", cfg, "check", "--adapter", "nosuch"]) == 2
    assert "configured: amocrm, local" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        (httpx.ConnectError("[Errno -2] Name or service not known"), "DNS"),
        (httpx.ConnectTimeout("timed out"), "firewall"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "check base_url"),
    ],
)
def test_check_network_errors_name_the_host_and_what_to_look_at(
    tmp_path, capsys, no_unmocked_http, error, advice
):
    no_unmocked_http.get(f"{AMO}/api/v4/account").mock(side_effect=error)
    cfg = amo_config(tmp_path)
    assert main(["-c", cfg, "check"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] amocrm: cannot reach example.amocrm.ru" in out and advice in out


@pytest.mark.parametrize(
    ("status", "ok"), [(204, True), (405, True), (401, False), (403, False), (404, False)]
)
def test_http_adapter_check_fails_on_401_403_404(tmp_path, capsys, no_unmocked_http, status, ok):
    no_unmocked_http.options("https://crm.example/hook").respond(status)
    cfg = config(
        tmp_path,
        '[adapters.hook]\ntype = "http"\nurl = "https://crm.example/hook"\n'
        'secret = "s3cret-value"\n',
    )
    assert main(["-c", cfg, "check"]) == (0 if ok else 1)
    out = capsys.readouterr().out
    assert ("[ OK ] hook (http)" in out) == ok
    assert f"HTTP {status}" in out


def test_check_warns_when_allowed_domains_refuse_the_onlinepbx_domain(tmp_path, capsys):
    cfg = config(tmp_path, '[onlinepbx]\ndomain = "acme.onpbx.ru"\n')
    with_server(cfg, 'allowed_domains = ["https://other.onpbx.ru/"]\n')
    text = Path(cfg).read_text()
    assert main(["-c", cfg, "check"]) == 0
    out = capsys.readouterr().out
    assert "[WARN] server.allowed_domains (other.onpbx.ru) refuses" in out
    assert "acme.onpbx.ru" in out
    Path(cfg).write_text(text.replace("https://other.onpbx.ru/", "Acme.onpbx.ru"))
    assert main(["-c", cfg, "check"]) == 0
    assert "allowed_domains" not in capsys.readouterr().out


# --- send-sample ------------------------------------------------------------------------------


async def test_send_sample_with_call_details_and_url_from_settings(
    tmp_path, make_settings, start_bridge, capsys
):
    from tests.test_delivery import _all_done, wait_for

    settings = make_settings()
    client = await start_bridge(settings)
    cfg = with_server(config(tmp_path), f'host = "127.0.0.1"\nport = {client.port}\n')
    argv = [
        "-c",
        cfg,
        "send-sample",
        "call_missed",
        "--phone",
        "+79035550101",
        "--extension",
        "104",
        "--domain",
        "https://Acme.onpbx.ru/",
    ]
    assert await cli(argv) == 0
    argv = [
        "-c",
        cfg,
        "send-sample",
        "call_end",
        "--phone",
        "79035550102",
        "--extension",
        "105",
        "--direction",
        "inbound",
    ]
    assert await cli(argv) == 0
    assert capsys.readouterr().out.count("HTTP 200") == 2
    await wait_for(lambda: _all_done(settings, 4))  # each: post-call job + over (live on)
    got = await rows(settings, "SELECT domain, payload FROM events ORDER BY id")
    missed, ended = (json.loads(p) for _, p in got)
    assert got[0][0] == "acme.onpbx.ru"
    assert (missed["caller"], missed["callee"]) == ("79035550101", "104")
    assert (ended["caller"], ended["callee"], ended["direction"]) == (
        "79035550102",
        "105",
        "inbound",
    )
    assert WEBHOOK  # the URL the settings give is the bridge's webhook


def test_send_sample_warns_about_a_real_crm(tmp_path, capsys, no_unmocked_http):
    cfg = with_server(amo_config(tmp_path), 'public_url = "https://b.example"\n')
    no_unmocked_http.post(f"https://b.example/webhooks/onlinepbx/{TOKEN}").respond(
        200, json={"ok": True}
    )
    assert main(["-c", cfg, "send-sample", "call_missed"]) == 0
    err = capsys.readouterr().err
    assert "this bridge delivers to amocrm" in err and "real task" in err


def test_send_sample_bad_phone_is_a_clear_error(tmp_path, capsys):
    cfg = config(tmp_path)
    assert main(["-c", cfg, "send-sample", "call_end", "--url", "http://x/", "--phone", "abc"]) == 2
    assert "--phone 'abc': digits only" in capsys.readouterr().err


# --- backfill ---------------------------------------------------------------------------------


async def test_backfill_says_how_many_tasks_and_logs_only_creates_none(
    tmp_path, pbx, make_settings, capsys
):
    from tests.fakes.onlinepbx import call_record
    from tests.test_reconcile import backfill_config

    start = 1_772_312_400 + 3600  # 2026-03-01 01:00 MSK
    pbx.calls += [
        call_record("missed-1", start, kind="missed", talk=0),
        call_record("missed-2", start + 600, kind="missed", talk=0),
        call_record("ended-1", start + 1200),
    ]
    path = backfill_config(tmp_path, pbx, "backfill_window_hours = 168\n")
    base = ["-c", path, "backfill", "--since", "2026-03-01", "--until", "2026-03-02", "--force"]
    assert await cli([*base, "--dry-run", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "tasks that would be created: 2 (2 missed call(s) × 1 adapter(s)" in out
    assert await cli([*base, "--dry-run", "--quiet", "--logs-only"]) == 0
    assert "tasks that would be created: 0" in capsys.readouterr().out
    assert await cli([*base, "--logs-only", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "tasks to be created: 0" in out.out and "queued: 3" in out.out
    assert "become tasks" not in out.err
    jobs = await rows(make_settings(), "SELECT action FROM jobs")
    # no task, and no live job: a backfilled call never rang through the bridge, so local's
    # `over` (live actions on by default) would only be skipped ("no card was shown")
    assert jobs == [("log_call",)]


async def test_backfill_without_logs_only_warns_before_creating_tasks(
    tmp_path, pbx, make_settings, capsys
):
    from tests.fakes.onlinepbx import call_record
    from tests.test_reconcile import backfill_config

    pbx.calls += [call_record("missed-9", 1_772_312_400 + 3600, kind="missed", talk=0)]
    path = backfill_config(tmp_path, pbx, "backfill_window_hours = 168\n")
    argv = ["-c", path, "backfill", "--since", "2026-03-01", "--until", "2026-03-02", "--quiet"]
    assert await cli([*argv, "--force"]) == 0
    out = capsys.readouterr()
    assert "missed calls in this range become tasks in local" in out.err
    assert "--logs-only skips them" in out.err and "tasks to be created: 1" in out.out
    jobs = await rows(make_settings(), "SELECT action FROM jobs")
    assert jobs == [("create_task",)]  # no `over`: the call never rang through the bridge


def test_send_sample_never_logs_the_webhook_token(tmp_path):
    # httpx logs each request's URL at INFO, and the URL's last part is the webhook token: the
    # one secret guarding the bridge. A fresh process, so no other test's secrets are known.
    import http.server
    import threading

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *_args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        cfg = with_server(config(tmp_path), f'host = "127.0.0.1"\nport = {port}\n')
        given = f"http://127.0.0.1:{port}/webhooks/onlinepbx/Given-Token-0123456789abcdef"
        for argv in (["send-sample", "call_end"], ["send-sample", "call_end", "--url", given]):
            done = subprocess.run(
                [sys.executable, "-m", "bridge", "-c", cfg, *argv],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            assert "HTTP Request: POST" in done.stderr  # the log line is there, masked
            for secret in (TOKEN, "Given-Token-0123456789abcdef"):
                assert secret not in done.stdout + done.stderr
    finally:
        server.shutdown()
