"""``pbx-bridge init``: write a commented settings.toml for one CRM (asked, or from flags).

The file is created with O_EXCL and mode 0600 (it will hold CRM credentials) and never
overwritten. Its storage.path is absolute, so every later command finds the same database
whichever directory it runs from.
"""

from __future__ import annotations

import argparse
import getpass
import inspect
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from bridge.adapter.contract import AdapterSettings
from bridge.cli.base import Commands
from bridge.registry import DEFAULT_ADAPTER, adapter_class, available
from bridge.settings import (
    CONFIG_ENV,
    DEFAULT_TIMEZONE,
    DEFAULT_WORK_DAYS,
    DEFAULT_WORK_END,
    DEFAULT_WORK_START,
    SettingsError,
    load_settings,
    normalize_domain,
)

DEFAULT_FILE = "settings.toml"
DB_NAME = "pbx-bridge.db"
FILE_MODE = 0o600


def toml_value(value: Any) -> str:
    """A TOML literal (JSON's string escapes are TOML's basic-string escapes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{ "
            + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items())
            + " }"
        )
    return json.dumps(str(value), ensure_ascii=False)


def _kinds(field: FieldInfo) -> tuple[Any, ...]:
    """``str | None`` → (str, None); ``dict[str, str]`` stays itself."""
    union = get_origin(field.annotation) in (Union, UnionType)
    return get_args(field.annotation) if union else (field.annotation,)


def _is_text(field: FieldInfo) -> bool:
    return any(k in (str, SecretStr) for k in _kinds(field))


def _is_secret(field: FieldInfo) -> bool:
    return SecretStr in _kinds(field)


def own_fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The keys an adapter adds to (or redefines from) the common adapter keys."""
    declared: set[str] = set()
    for cls in model.__mro__:
        if cls is AdapterSettings or not issubclass(cls, AdapterSettings):
            break
        declared |= set(inspect.get_annotations(cls))
    return {name: f for name, f in model.model_fields.items() if name in declared}


def parse_value(field: FieldInfo | None, text: str) -> Any:
    """``--set KEY=VALUE``: text stays text for string keys, JSON is decoded for the rest."""
    if field is not None and _is_text(field):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def target_file(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "config", None) or os.environ.get(CONFIG_ENV) or DEFAULT_FILE)


def render(
    path: Path,
    crm: str,
    table: dict[str, Any],
    *,
    public_url: str | None,
    domain: str | None,
    api_key: str | None,
) -> str:
    model = adapter_class(crm).Settings
    db = (path.parent.absolute() / DB_NAME).as_posix()
    cfg = path.as_posix()
    days = ", ".join(str(d) for d in DEFAULT_WORK_DAYS)
    lines = [
        f"# pbx-bridge settings, written by `pbx-bridge init` on {datetime.now(UTC):%Y-%m-%d}.",
        "# Every key is explained in settings.toml.example. This file holds credentials: keep",
        "# it mode 0600 and out of version control.",
        f"# Check it: `pbx-bridge check --config {cfg}`",
        f"# Run:      `pbx-bridge serve --config {cfg}`",
        "",
        "[server]",
        "# The https address onlinePBX posts to (through your TLS proxy, docs/DEPLOY.md).",
        f"public_url = {toml_value(public_url)}"
        if public_url
        else '# public_url = "https://pbx-bridge.example.com"',
        "# Your TLS proxy's address: X-Forwarded-For is believed only from it.",
        '# trusted_proxies = ["127.0.0.1/32"]',
        "# The webhook token is generated on first start and kept in the database;",
        "# `pbx-bridge webhook-url` prints the URL to paste into onlinePBX.",
        "",
        "[storage]",
        "# Absolute, so every command finds this database from any directory.",
        f"path = {toml_value(db)}",
        "",
        "[schedule]",
        "# Missed-call tasks are due inside these hours (working_hours = false: any hour).",
        f"timezone = {toml_value(DEFAULT_TIMEZONE)}",
        f"work_days = [{days}]",
        f'work_start = "{DEFAULT_WORK_START:%H:%M}"',
        f'work_end = "{DEFAULT_WORK_END:%H:%M}"',
        "",
        "# The onlinePBX API (panel: Integration → API): recording links that keep playing and",
        "# calls recovered when a webhook was lost (docs/RECORDINGS.md).",
        "[onlinepbx]",
        f"domain = {toml_value(domain)}" if domain else '# domain = "example.onpbx.ru"',
        f"api_key = {toml_value(api_key)}" if api_key else '# api_key = "…"',
        "",
        f"[adapters.{crm}]",
    ]
    for key, value in table.items():
        lines.append(f"{key} = {toml_value(value)}")
    for name, field in own_fields(model).items():
        if name in table or name == "type":
            continue
        note = f"   # {field.description}" if field.description else ""
        if field.is_required():
            lines.append(f"# {name} = …   # REQUIRED{note.replace('   #', ':', 1)}")
        elif _is_secret(field) or field.default is None:
            lines.append(f"# {name} = …{note}")
        else:
            lines.append(f"# {name} = {toml_value(field.default)}{note}")
    if "users" not in table:
        lines.append(
            '# users = { "101" = 1 }   # extension → CRM user id (`pbx-bridge check` lists them)'
        )
    if "default_user" not in table:
        lines.append("# default_user = 1         # responsible user when nobody else is")
    lines += [
        "# Common keys (events, create_contacts, task_due_minutes, filters …):",
        "# see settings.toml.example.",
        "",
    ]
    return "\n".join(lines)


def _ask(question: str, default: str = "", secret: bool = False) -> str:
    shown = f" [{default}]" if default else ""
    prompt = f"{question}{shown}: "
    answer = getpass.getpass(prompt) if secret else input(prompt)
    return answer.strip() or default


def interactive(args: argparse.Namespace) -> None:
    """Fill what the flags did not give by asking (only on a terminal)."""
    names = sorted(available())
    while not args.crm:
        crm = _ask(f"CRM adapter ({', '.join(names)})", DEFAULT_ADAPTER)
        if crm in names:
            args.crm = crm
        else:
            print(f"  unknown adapter {crm!r}")
    model = adapter_class(args.crm).Settings
    given = {k for k, _, _ in (s.partition("=") for s in args.set)}
    for name, field in own_fields(model).items():
        if name in given or name == "type":
            continue
        if field.is_required() or _is_secret(field):
            need = "" if field.is_required() else " (Enter to skip)"
            hint = f" — {field.description}" if field.description else ""
            value = _ask(f"[adapters.{args.crm}] {name}{hint}{need}", secret=_is_secret(field))
            if value:
                args.set.append(f"{name}={value}")
    if args.public_url is None:
        args.public_url = _ask("public https URL of the bridge (Enter to skip)") or None
    if args.onlinepbx_domain is None:
        args.onlinepbx_domain = _ask("onlinePBX domain, e.g. example.onpbx.ru (Enter to skip)")
        args.onlinepbx_domain = args.onlinepbx_domain or None
    if args.onlinepbx_domain and args.onlinepbx_api_key is None:
        key = _ask("onlinePBX API key (Enter to skip)", secret=True)
        args.onlinepbx_api_key = key or None


def cmd_init(settings: None, args: argparse.Namespace) -> int:
    path = target_file(args)
    if path.exists():
        print(
            f"{path} already exists; it was not changed. Move it away, or write another file"
            " with --config FILE.",
            file=sys.stderr,
        )
        return 1
    if sys.stdin.isatty() and not args.no_input:
        try:
            interactive(args)
        except (EOFError, KeyboardInterrupt):
            print("\nnothing written", file=sys.stderr)
            return 130
    crm = args.crm or DEFAULT_ADAPTER
    try:
        model = adapter_class(crm).Settings
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    fields = model.model_fields
    table: dict[str, Any] = {}
    for item in args.set:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or key not in fields:
            known = ", ".join(sorted(fields))
            print(f"--set {item!r}: not a key of [adapters.{crm}]; known: {known}", file=sys.stderr)
            return 2
        table[key] = parse_value(fields[key], text)
    text = render(
        path,
        crm,
        table,
        public_url=args.public_url,
        domain=normalize_domain(args.onlinepbx_domain) if args.onlinepbx_domain else None,
        api_key=args.onlinepbx_api_key,
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        print(f"{path} already exists; it was not changed", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot create {path}: {exc.strerror}", file=sys.stderr)
        return 1
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, FILE_MODE)  # whatever the umask did
    print(f"wrote {path} (mode 0600) for the {crm} adapter")
    try:
        load_settings(path)
    except SettingsError as exc:
        print("still to fill in before it runs:", file=sys.stderr)
        print(str(exc), file=sys.stderr)
    else:
        print("the settings are valid")
    print(f"next: pbx-bridge check --config {path}")
    return 0


def register(commands: Commands) -> None:
    p = commands.add(
        "init",
        cmd_init,
        help="write a commented settings.toml (asks for the CRM on a terminal); never overwrites",
        settings="none",
    )
    p.add_argument("--crm", metavar="NAME", help="adapter to configure (default: ask, or local)")
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a key of the adapter's table, e.g. --set base_url=https://example.amocrm.ru",
    )
    p.add_argument("--public-url", metavar="URL", help="server.public_url (https)")
    p.add_argument("--onlinepbx-domain", metavar="DOMAIN", help="[onlinepbx] domain")
    p.add_argument("--onlinepbx-api-key", metavar="KEY", help="[onlinepbx] api_key")
    p.add_argument("--no-input", action="store_true", help="never ask, even on a terminal")
