"""``pbx-bridge check`` proves Zoho credentials before the bridge's first start.

Zoho's refresh token is long-lived (a refresh answers no new one), so ``check`` may spend it
from a scratch database; the adapters whose refresh token rotates are skipped there instead
(spending it would leave ``serve`` holding a retired token).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from adapters.zoho import fake as zf

CLI = "import sys; from bridge.cli import main; sys.exit(main())"


async def test_check_without_a_database_tries_zoho_and_lists_its_users(tmp_path):
    org = await zf.FakeZoho(clock=time.time).start()
    base_url = org.base_url
    try:
        table = zf.reliability_table(base_url)
        table.pop("base_url")  # the API address comes from the token answer's api_domain
        lines = ["[adapters.zoho]"] + [
            f"{k} = {json.dumps(v)}" for k, v in table.items() if k != "type"
        ]
        (tmp_path / "settings.toml").write_text("\n".join(lines) + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_BRIDGE_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLI, "check", "-c", "settings.toml", "--adapter", "zoho",
            cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
    finally:
        await org.close()
    assert proc.returncode == 0, out
    assert "[SKIP] zoho" not in out
    assert "[ OK ] zoho" in out and zf.ADMIN_ID in out, out
    assert f"API at {base_url}" in out
    assert not (tmp_path / "pbx-bridge.db").exists()  # check creates no database
