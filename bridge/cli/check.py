"""``pbx-bridge check``: a verdict per adapter, then what to fix; the settings with --verbose.

It changes nothing it does not have to: no database is created (a missing one is named, and
the adapters are tried against a throw-away file; OAuth adapters are then skipped because a
refreshed token would be lost), and the adapters make only their read-only check calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

import httpx

from bridge.adapter import CheckResult
from bridge.alerts import send_test
from bridge.cli.base import Commands, missing_database, open_database
from bridge.deliver.service import build_adapter
from bridge.metrics import Metrics
from bridge.onlinepbx import commands as onlinepbx
from bridge.receive.access import domain_allowed
from bridge.redact import REDACTOR, redact_tree
from bridge.registry import ConfiguredAdapter, configured
from bridge.settings import Settings
from bridge.store import Storage

# Keys whose value is spent or rotated by a token refresh: checking such an adapter against a
# throw-away database would lose the new token.
OAUTH_KEYS = ("refresh_token", "authorization_code")


def settings_dump(settings: Settings, adapters: list[ConfiguredAdapter]) -> str:
    dumped = redact_tree(json.loads(settings.model_dump_json()))
    dumped["adapters"] = {
        a.name: redact_tree(json.loads(a.settings.model_dump_json())) for a in adapters
    }
    return json.dumps(dumped, ensure_ascii=False, indent=2, default=str)


def _host_of(item: ConfiguredAdapter, exc: BaseException) -> str | None:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, httpx.RequestError):
            try:
                return cause.request.url.host
            except RuntimeError:  # no request attached
                break
        cause = cause.__cause__ or cause.__context__
    for key in ("base_url", "url"):
        value = getattr(item.settings, key, None)
        if isinstance(value, str) and value:
            return httpx.URL(value).host or None
    return None


def _url_key(item: ConfiguredAdapter, host: str) -> str:
    """The settings key whose URL names ``host`` (``login_url``, ``accounts_url``, ...), so the
    advice points at the key to fix; ``base_url`` when none does."""
    for key in type(item.settings).model_fields:
        value = getattr(item.settings, key, None)
        if isinstance(value, str) and "://" in value:
            try:
                if httpx.URL(value).host == host:
                    return key
            except httpx.InvalidURL:
                continue
    return "base_url"


def _network_cause(exc: BaseException) -> httpx.TransportError | None:
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 10:
        if isinstance(cause, httpx.TransportError):
            return cause
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return None


def network_advice(item: ConfiguredAdapter, exc: BaseException) -> str | None:
    """What to look at when the CRM could not be reached (None: it was reached)."""
    cause = _network_cause(exc)
    if cause is None:
        return None
    host = _host_of(item, exc) or "the CRM"
    key = _url_key(item, host)
    text = str(cause).lower()
    if any(w in text for w in ("name or service", "nodename", "getaddrinfo", "name resolution")):
        look = f"DNS: does `getent hosts {host}` resolve? Is {key} spelled right?"
    elif isinstance(cause, httpx.TimeoutException):
        look = (
            f"firewall or proxy: is outbound HTTPS to {host} allowed from this machine?"
            " (try `curl -sI https://" + host + "`)"
        )
    elif "certificate" in text or "ssl" in text:
        look = f"TLS: {host}'s certificate is not trusted here (a corporate proxy? {key}?)"
    elif "refused" in text:
        look = f"nothing listens at {host}: check {key} (scheme, host and port)"
    else:
        look = f"DNS, the firewall and {key} for {host}"
    return f"cannot reach {host} ({type(cause).__name__}); look at {look}"


def unknown_users(item: ConfiguredAdapter, result: CheckResult) -> list[str]:
    """The ``users`` / ``default_user`` ids the CRM does not know (empty if it lists none)."""
    if not result.users:
        return []
    known = {str(uid) for uid, _ in result.users}
    problems = [
        f"users: extension {ext} → {uid} is not a user of this CRM"
        for ext, uid in sorted(item.settings.users.items())
        if str(uid) not in known
    ]
    default = item.settings.default_user
    if default is not None and str(default) not in known:
        problems.append(f"default_user {default} is not a user of this CRM")
    return problems


async def check_adapter(
    item: ConfiguredAdapter, settings: Settings, db: Storage, verbose: bool
) -> bool:
    adapter = build_adapter(item, settings, db, Metrics())
    label = (
        item.name
        if (item.settings.type or item.name) == item.name
        else (f"{item.name} ({item.settings.type})")
    )
    try:
        await adapter.setup()
        result = await adapter.check()
    except Exception as exc:
        advice = network_advice(item, exc)
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        print(f"[FAIL] {label}: {REDACTOR(advice or str(reason))}")
        if advice and verbose:
            print(f"       {REDACTOR(str(reason))}")
        return False
    finally:
        await adapter.aclose()
    problems = unknown_users(item, result)
    mark = "[FAIL]" if problems else "[ OK ]"
    print(f"{mark} {label}: {REDACTOR(result.account)}")
    for problem in problems:
        print(f"       {problem}")
    for note in result.notes:
        print(f"       {REDACTOR(note)}")
    if result.users and (problems or verbose or not item.settings.users):
        print("       the CRM's users (id: name), for the `users` map:")
        for uid, name in result.users:
            print(f"         {uid}: {name}")
    return not problems


def warnings(settings: Settings) -> list[str]:
    out = []
    server, domain = settings.server, settings.onlinepbx.domain
    if domain and not domain_allowed(domain, server.allowed_domains):
        allowed = ", ".join(server.allowed_domains)
        out.append(
            f"server.allowed_domains ({allowed}) refuses the configured onlinePBX domain"
            f" {domain}: its webhooks would be answered 403. Add {domain!r} to the list."
        )
    return out


async def _test_alerts(settings: Settings) -> int:
    """A test message on every [alerts] channel; the number that failed."""
    results = await send_test(settings)
    for channel, problem in results:
        print(f"[FAIL] alert via {channel}: {problem}" if problem else
              f"[ OK ] alert via {channel}: test message sent")  # fmt: skip
    return sum(1 for _, problem in results if problem)


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    adapters = configured(settings.adapters, settings.source)
    for item in adapters:
        REDACTOR.add(*item.settings.secrets())
    if args.adapter:
        chosen = [a for a in adapters if a.name == args.adapter]
        if not chosen:
            names = ", ".join(a.name for a in adapters) or "none"
            print(f"no active adapter named {args.adapter!r}; configured: {names}")
            return 2
        adapters = chosen
    print(f"settings: valid ({settings.source})")
    if args.verbose:
        print(settings_dump(settings, adapters))
    for warning in warnings(settings):
        print(f"[WARN] {warning}")
    missing = missing_database(settings)

    async def run() -> int:
        failures = 0
        with tempfile.TemporaryDirectory(prefix="pbx-bridge-check-") as scratch:
            if missing:
                print(f"[WARN] {missing}")
                probe = settings.model_copy(deep=True)
                probe.storage.path = Path(scratch) / "check.db"
                db = await open_database(probe, create=True)
            else:
                db = await open_database(settings, create=False)
            try:
                for item in adapters:
                    oauth = [k for k in OAUTH_KEYS if getattr(item.settings, k, None)]
                    spendable = oauth == ["refresh_token"] and not getattr(
                        item.settings, "REFRESH_TOKEN_ROTATES", True
                    )
                    if missing and oauth and not spendable:
                        print(
                            f"[SKIP] {item.name}: its OAuth tokens are kept in the database;"
                            " run check where the bridge's database is (or after the first"
                            " `pbx-bridge serve`)"
                        )
                        continue
                    if not await check_adapter(item, settings, db, args.verbose):
                        failures += 1
                if not args.adapter:
                    failures += await onlinepbx.check(settings, db)
                    failures += await _test_alerts(settings)
            finally:
                await db.close()
        return 1 if failures else 0

    return asyncio.run(run())


def register(commands: Commands) -> None:
    p = commands.add(
        "check", cmd_check, help="validate settings and try every adapter's credentials"
    )
    p.add_argument("--adapter", metavar="NAME", help="only this [adapters.NAME] table")
    p.add_argument(
        "--verbose", "-v", action="store_true", help="also print the settings (secrets masked)"
    )
