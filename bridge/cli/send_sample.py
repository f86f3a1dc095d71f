"""``pbx-bridge send-sample``: post a vendor-shaped onlinePBX event to a bridge."""

from __future__ import annotations

import argparse
import sys
import time

import httpx

from bridge.cli.base import Commands
from bridge.samples import SAMPLES, sample
from bridge.settings import Settings


def cmd_send_sample(settings: Settings | None, args: argparse.Namespace) -> int:
    body = sample(args.event, uuid=args.uuid, now=time.time())
    try:
        if args.as_json:
            response = httpx.post(args.url, json=body, timeout=10)
        else:
            response = httpx.post(args.url, data=body, timeout=10)
    except httpx.HTTPError as exc:
        print(f"could not post to the bridge: {exc}", file=sys.stderr)
        return 1
    print(f"HTTP {response.status_code} {response.text}")
    print(f"sent {args.event} uuid={body['uuid']}")
    return 0 if response.is_success else 1


def register(commands: Commands) -> None:
    send = commands.add(
        "send-sample",
        cmd_send_sample,
        help="post a vendor-shaped onlinePBX event",
        needs_settings=False,
    )
    send.add_argument("event", choices=sorted(SAMPLES))
    send.add_argument("--url", required=True, help="the bridge's webhook URL")
    send.add_argument("--uuid")
    send.add_argument("--json", dest="as_json", action="store_true", help="post JSON, not a form")
