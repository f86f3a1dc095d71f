"""The ingest baseline: a bare aiohttp app that parses the same form body and answers 200
without storing anything. ``python -m bench.bare PORT``."""

from __future__ import annotations

import sys
from urllib.parse import parse_qsl

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    fields = dict(parse_qsl((await request.read()).decode("utf-8"), keep_blank_values=True))
    return web.json_response({"ok": True, "duplicate": False, "jobs": 1 if fields else 0})


def main() -> None:
    app = web.Application()
    app.router.add_post("/webhooks/onlinepbx/{token}", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
