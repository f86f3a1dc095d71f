"""``pbx-bridge send-sample``: post a vendor-shaped onlinePBX event to a bridge.

Without ``--url`` the URL comes from the settings (the token from ``server.webhook_token``
or the bridge's database), posted to ``server.public_url`` or else to the local port.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time

import httpx

from bridge.app import WEBHOOK_PATH
from bridge.cli.base import CommandError, Commands, with_db
from bridge.redact import REDACTOR
from bridge.registry import configured
from bridge.samples import SAMPLES, sample
from bridge.settings import Settings, normalize_domain
from bridge.store import Storage

LOCAL_ADAPTER = "local"
CLIENT_MIN_DIGITS = 7  # shorter numbers in the samples are extensions


def _number(text: str, what: str) -> str:
    digits = text.strip().removeprefix("+")
    if not re.fullmatch(r"\d{1,15}", digits):
        raise CommandError(f"{what} {text!r}: digits only (an optional leading +)", 2)
    return digits


def customise(body: dict[str, str], args: argparse.Namespace) -> dict[str, str]:
    """Put --phone, --extension, --domain and --direction into a sample, where onlinePBX
    puts them: inbound caller = client, callee = extension; outbound the other way round."""
    parties = [body.get("caller", ""), body.get("callee", "")]
    client = next((p for p in parties if len(p) >= CLIENT_MIN_DIGITS), "")
    extension = next((p for p in parties if p and len(p) < CLIENT_MIN_DIGITS), "")
    if args.phone:
        client = _number(args.phone, "--phone")
    if args.extension:
        extension = _number(args.extension, "--extension")
    direction = args.direction or body.get("direction")
    if args.direction:
        body["direction"] = args.direction
    if direction == "outbound":
        body["caller"], body["callee"] = extension, client
    else:
        body["caller"] = client
        if extension or "callee" in body:
            body["callee"] = extension
    if args.domain:
        domain = normalize_domain(args.domain)
        for key in ("domain", "from_domain", "to_domain"):
            if key == "domain" or body.get(key):
                body[key] = domain
    return body


def webhook_token_of(url: str) -> str | None:
    """The token in a webhook URL (``…/webhooks/onlinepbx/<token>``), else None."""
    _, marker, token = url.split("?", 1)[0].rstrip("/").rpartition(WEBHOOK_PATH.format(token=""))
    return token if marker and token else None


def url_from_settings(settings: Settings) -> str:
    base = settings.server.public_url
    if not base:
        host = settings.server.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        base = f"http://{host}:{settings.server.port}"
    token_setting = settings.server.webhook_token
    if token_setting is not None:
        token: str | None = token_setting.get_secret_value()
    else:
        found: list[str | None] = []

        async def read(db: Storage) -> int:
            found.append(await db.meta("webhook_token"))
            return 0

        asyncio.run(with_db(settings, read))  # read-only: a missing database is named
        token = found[0]
    if not token:
        raise CommandError(
            "the bridge's database has no webhook token yet: start `pbx-bridge serve` once,"
            " or give --url"
        )
    return base.rstrip("/") + WEBHOOK_PATH.format(token=token)


def crm_warning(settings: Settings | None) -> str:
    if settings is None:
        return (
            "note: the bridge treats a sample like a real call: a CRM adapter behind it gets a"
            " test call log (a missed call: a task), and may create a test contact"
        )
    crms = [
        a.name
        for a in configured(settings.adapters)
        if (a.settings.type or a.name) != LOCAL_ADAPTER
    ]
    if not crms:
        return ""
    return (
        f"warning: this bridge delivers to {', '.join(crms)}: the sample becomes a real call log"
        " there (a missed call: a real task), and an unknown --phone a new test contact."
        " Use a number you can find and delete."
    )


def cmd_send_sample(settings: Settings | None, args: argparse.Namespace) -> int:
    body = customise(sample(args.event, uuid=args.uuid, now=time.time()), args)
    url = args.url or url_from_settings(settings)  # type: ignore[arg-type]
    # The URL's last part is the webhook token, the one secret guarding the bridge: httpx logs
    # every request's URL, and so would an error message, so it is masked like any secret.
    REDACTOR.add(webhook_token_of(url))
    warning = crm_warning(None if args.url else settings)
    if warning:
        print(warning, file=sys.stderr)
    try:
        if args.as_json:
            response = httpx.post(url, json=body, timeout=10)
        else:
            response = httpx.post(url, data=body, timeout=10)
    except httpx.HTTPError as exc:
        host = httpx.URL(url).host if url.startswith(("http://", "https://")) else url
        print(
            f"could not post to the bridge at {host}: {type(exc).__name__}: {exc}"
            " (is `pbx-bridge serve` running, and is the URL right?)",
            file=sys.stderr,
        )
        return 1
    print(f"HTTP {response.status_code} {response.text}")
    print(f"sent {args.event} uuid={body['uuid']}")
    return 0 if response.is_success else 1


def register(commands: Commands) -> None:
    send = commands.add("send-sample", cmd_send_sample, help="post a vendor-shaped onlinePBX event")
    send.add_argument("event", choices=sorted(SAMPLES))
    send.add_argument(
        "--url", help="the bridge's webhook URL (default: from the settings and the database)"
    )
    send.add_argument("--phone", metavar="PHONE", help="the client's number, e.g. 79221111123")
    send.add_argument("--extension", metavar="EXT", help="the employee's extension, e.g. 101")
    send.add_argument("--domain", metavar="DOMAIN", help="the PBX account, e.g. example.onpbx.ru")
    send.add_argument("--direction", choices=("inbound", "outbound"))
    send.add_argument("--uuid")
    send.add_argument("--json", dest="as_json", action="store_true", help="post JSON, not a form")
