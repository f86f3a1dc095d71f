"""The pbx-bridge command line: check, outbox, calls, tasks, send-sample, webhook-url."""

from __future__ import annotations

import asyncio
import json

import pytest

from bridge.cli import main
from tests.conftest import TOKEN, WEBHOOK, rows
from tests.test_delivery import _all_done, wait_for

SECRET = "very-secret-signing-value"


async def cli(argv: list[str]) -> int:
    """The CLI runs its own event loop: call it off the test's loop, as a shell would."""
    return await asyncio.to_thread(main, argv)


def config(tmp_path, extra: str = "") -> str:
    path = tmp_path / "settings.toml"
    path.write_text(
        f'[server]\nwebhook_token = "{TOKEN}"\n[storage]\npath = "{tmp_path / "bridge.db"}"\n'
        + extra
    )
    return str(path)


async def test_send_sample_then_calls_tasks_and_outbox(
    tmp_path, make_settings, start_bridge, capsys
):
    settings = make_settings()
    client = await start_bridge(settings)
    url = str(client.make_url(WEBHOOK))
    assert await cli(["send-sample", "call_end", "--url", url]) == 0
    assert await cli(["send-sample", "call_missed", "--url", url, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("HTTP 200") == 2
    # The embedded default's jobs: log_call/create_task, and each end also closes the call in
    # progress (`over`, live actions on by default: skipped here, nothing rang).
    await wait_for(lambda: _all_done(settings, 4))

    cfg = config(tmp_path)
    assert await cli(["--config", cfg, "calls", "--json"]) == 0
    calls = json.loads(capsys.readouterr().out)
    assert calls[0]["client"] == "+79502222919" and calls[0]["talk_seconds"] == 135
    assert await cli(["--config", cfg, "tasks"]) == 0
    assert "+79221111123" in capsys.readouterr().out
    assert await cli(["--config", cfg, "outbox", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"adapter": "local", "pending": 0, "running": 0, "done": 4, "dead": 0}
    ]
    assert await cli(["--config", cfg, "outbox", "list", "--status", "done"]) == 0
    assert capsys.readouterr().out.count("local") == 4


async def test_outbox_retry_dead_and_purge(tmp_path, make_settings, start_bridge, capsys):
    settings = make_settings()
    client = await start_bridge(settings)
    await client.post(
        WEBHOOK,
        data={
            "event": "call_end",
            "uuid": "u-1",
            "caller": "101",
            "callee": "79221111123",
            "direction": "outbound",
        },
    )
    await wait_for(lambda: _all_done(settings, 2))  # log_call + over (live actions on)
    await client.close()
    import sqlite3

    conn = sqlite3.connect(settings.storage.path)
    conn.execute("UPDATE jobs SET status = 'dead', last_error = 'boom'")
    conn.commit()
    conn.close()
    cfg = config(tmp_path)
    assert await cli(["--config", cfg, "outbox", "show", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["last_error"] == "boom"
    assert await cli(["--config", cfg, "outbox", "retry"]) == 2  # needs ids or --all
    assert await cli(["--config", cfg, "outbox", "retry", "--all"]) == 0
    assert "2 dead job(s)" in capsys.readouterr().out
    assert (await rows(settings, "SELECT status FROM jobs")) == [("pending",), ("pending",)]
    conn = sqlite3.connect(settings.storage.path)
    conn.execute("UPDATE jobs SET status = 'done', updated_at = 0")
    conn.commit()
    conn.close()
    assert await cli(["--config", cfg, "outbox", "purge", "--older-than-days", "1"]) == 0
    assert (await rows(settings, "SELECT COUNT(*) FROM jobs")) == [(0,)]
    assert await cli(["--config", cfg, "outbox", "show", "1"]) == 1


def test_check_masks_secrets_and_reports_failures(tmp_path, capsys, no_unmocked_http):
    no_unmocked_http.options("https://crm.example/hook").respond(204)
    cfg = config(
        tmp_path,
        f'[adapters.hook]\ntype = "http"\nurl = "https://crm.example/hook"\n'
        f'secret = "{SECRET}"\n[adapters.local]\n',
    )
    assert main(["--config", cfg, "check"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and TOKEN not in out
    assert "[ OK ] hook (http): crm.example" in out and "[ OK ] local" in out
    no_unmocked_http.options("https://crm.example/hook").respond(503)
    assert main(["--config", cfg, "check"]) == 1
    assert "[FAIL] hook" in capsys.readouterr().out


def test_settings_error_exit_code(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[server]\nport = 'x'\n")
    assert main(["--config", str(path), "check"]) == 2
    assert "server.port" in capsys.readouterr().err


def test_webhook_url_generated_once_and_kept(tmp_path, capsys, monkeypatch):
    path = tmp_path / "s.toml"
    path.write_text(
        f'[storage]\npath = "{tmp_path / "b.db"}"\n[server]\npublic_url = '
        '"https://pbx.example.com"\n'
    )
    import sqlite3

    sqlite3.connect(tmp_path / "b.db").close()  # the database `serve` made (webhook-url makes none)
    assert main(["--config", str(path), "webhook-url"]) == 0
    first = capsys.readouterr().out.strip()
    assert first.startswith("https://pbx.example.com/webhooks/onlinepbx/")
    assert main(["--config", str(path), "webhook-url"]) == 0
    assert capsys.readouterr().out.strip() == first
    assert len(first.rsplit("/", 1)[1]) >= 24


@pytest.mark.parametrize("argv", [["send-sample", "nope", "--url", "x"], ["outbox"]])
def test_usage_errors(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_a_reader_that_leaves_early_gets_no_traceback():
    # `pbx-bridge outbox list | head -1`: stdout is closed under the command's feet.
    import subprocess
    import sys

    code = "import sys; from bridge.cli import main; sys.exit(main())"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "admin-password", "--stdin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.stdout.close()  # before the interpreter has even started: every write hits EPIPE
    _, err = proc.communicate(b"a long enough secret\n", timeout=60)
    assert b"Traceback" not in err, err.decode()
    assert proc.returncode == 141


def test_check_names_the_url_key_that_points_at_an_unreachable_host(tmp_path):
    # Salesforce is reached through login_url (no base_url set): the advice names that key.
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    (tmp_path / "s.toml").write_text(
        f'[adapters.salesforce]\nclient_id = "c"\nclient_secret = "s"\n'
        f'login_url = "http://127.0.0.1:{port}"\n'
    )
    code = "import sys; from bridge.cli import main; sys.exit(main())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_BRIDGE_")}
    out = subprocess.run(
        [sys.executable, "-c", code, "check", "-c", "s.toml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "[FAIL] salesforce" in out.stdout, out.stdout + out.stderr
    fail = next(line for line in out.stdout.splitlines() if line.startswith("[FAIL] salesforce"))
    assert "login_url" in fail and "base_url" not in fail, fail


def test_serve_banner_asks_for_the_live_checkboxes_only_where_a_live_adapter_runs():
    from bridge.cli.serve import tick
    from bridge.settings import Settings

    embedded = tick(Settings())  # the local adapter: live actions on (calls in progress)
    assert "«Завершился звонок»" in embedded and "«Начался звонок»" in embedded
    assert "local" in embedded
    post_call = Settings(adapters={"local": {"events": ["log_call", "create_task"]}})
    assert "«Начался звонок»" not in tick(post_call)
    crm = Settings(
        adapters={"retailcrm": {"base_url": "https://demo.retailcrm.ru", "api_key": "k"}}
    )
    text = tick(crm)
    assert "«Начался звонок»" in text and "«Ответили на звонок»" in text and "retailcrm" in text
    off = Settings(
        adapters={
            "retailcrm": {
                "base_url": "https://demo.retailcrm.ru",
                "api_key": "k",
                "events": ["log_call", "create_task"],
            }
        }
    )
    assert "«Начался звонок»" not in tick(off)
