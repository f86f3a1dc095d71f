"""Settings: a TOML file (optional) overlaid by environment variables.

Every key can come from the environment as ``PBX_BRIDGE_<TABLE>__<KEY>`` (nested with ``__``),
e.g. ``PBX_BRIDGE_SERVER__PORT=9000`` or ``PBX_BRIDGE_ADAPTERS__HTTP__URL=https://…``.
Adapter tables are kept as plain dicts here and validated by each adapter's own model when the
registry builds it, so the core never needs to know which CRMs exist.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from datetime import time
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as EnvParseError

from bridge.store.ports import url_schema

ENV_PREFIX = "PBX_BRIDGE_"
CONFIG_ENV = "PBX_BRIDGE_CONFIG"
MIN_TOKEN_LENGTH = 16
# RFC 3986 unreserved characters: the only ones that reach the server unchanged in a URL path
# whatever the sender's client does with escaping.
URL_SAFE_TOKEN = re.compile(r"[A-Za-z0-9._~-]+")
# The placeholder settings.toml.example shows; copied uncommented it would guard nothing.
PLACEHOLDER_TOKEN = "change-me-to-a-long-random-string"
DEFAULT_WORK_DAYS = [1, 2, 3, 4, 5]
DEFAULT_WORK_START = time(9)
DEFAULT_WORK_END = time(18)
DEFAULT_TIMEZONE = "Europe/Moscow"


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListenAddress(_Table):
    host: str
    port: int = Field(ge=1, le=65535)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class ServerSettings(_Table):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    webhook_token: SecretStr | None = None
    allowed_domains: list[str] = []
    allowed_ips: list[IPv4Network | IPv6Network] = []
    trusted_proxies: list[IPv4Network | IPv6Network] = []
    public_url: str | None = None
    signing_key: SecretStr | None = Field(
        None, description="HMAC key of recording links; generated once and kept in the DB if unset"
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    shutdown_grace_seconds: float = Field(10.0, ge=0)

    metrics_token: SecretStr | None = Field(
        None, description="when set, GET /metrics needs 'Authorization: Bearer <token>'"
    )
    metrics_listen: ListenAddress | None = Field(
        None,
        description='"127.0.0.1:9101": serve /metrics (and /readyz, /healthz) only there',
    )

    @field_validator("webhook_token")
    @classmethod
    def _token_strength(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        token = v.get_secret_value()
        if token.lower().startswith("change-me"):
            raise ValueError(
                "is the example's placeholder: set your own random token, or leave the key out"
                " and the bridge generates one"
            )
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"must be at least {MIN_TOKEN_LENGTH} characters (it is the only thing guarding"
                " the URL)"
            )
        if not URL_SAFE_TOKEN.fullmatch(token):
            raise ValueError(
                "may hold only letters, digits and - . _ ~ (other characters are escaped in"
                " URLs and the webhook would never match)"
            )
        return v

    @field_validator("metrics_listen", mode="before")
    @classmethod
    def _listen(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, str):
            host, sep, port = v.strip().rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError('must be "HOST:PORT", e.g. "127.0.0.1:9101"')
            v = {"host": host.strip("[]") or "0.0.0.0", "port": int(port)}
        if isinstance(v, dict) and v.get("port") == info.data.get("port"):
            raise ValueError("must use another port than server.port")
        return v

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters")
        return v

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        domains = [normalize_domain(d) for d in v]
        if "" in domains:
            raise ValueError("an empty entry would match nothing; remove it")
        return domains

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        if not v.lower().startswith("https://") or len(v) <= len("https://"):
            raise ValueError(
                "must start with https:// (onlinePBX posts only to https URLs with a valid"
                " certificate; put a TLS proxy in front, see docs/DEPLOY.md)"
            )
        return v.rstrip("/")


class StorageSettings(_Table):
    url: SecretStr | None = Field(
        None,
        description="postgresql://user[:password]@host:5432/db to run several replicas on one"
        " PostgreSQL (docs/SCALING.md); unset: the SQLite file at `path`",
    )
    path: Path = Path("pbx-bridge.db")
    lease_seconds: float = Field(
        30.0,
        ge=1,
        description="a claimed job belongs to its replica this long, renewed while it runs;"
        " a job of a replica that died is taken again once its lease expires",
    )
    busy_timeout_ms: int = Field(2000, ge=0)
    retention_days: float = Field(30, gt=0, description="done jobs older than this are pruned")

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        url = v.get_secret_value()
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (unset it to use the SQLite `path`)")
        # What asyncpg would only refuse at the first connection, with a traceback. Never
        # quote the URL's pieces: with a / # ? in an unencoded password they are the password.
        form = (
            "the form is postgresql://user:password@host:5432/db, with any of : / @ # ? % in"
            " the password percent-encoded (/ is %2F, # is %23)"
        )
        if "#" in url:
            raise ValueError(f"not a valid URL (it has a #); {form}")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - a property that raises on "host:notaport" or 99999
        except ValueError:
            raise ValueError(f"not a valid URL (host or port unreadable); {form}") from None
        if parts.netloc.count("@") > 1:  # asyncpg would split at another @ than we do
            raise ValueError(f"not a valid URL (more than one @ before the host); {form}")
        url_schema(url)  # ValueError: search_path names more than one plain schema
        return v


class NumbersSettings(_Table):
    default_region: str = "RU"
    extension_max_digits: int = Field(6, ge=1, le=9)


class ScheduleSettings(_Table):
    """When missed-call tasks are due. Working hours are on by default (Mon–Fri 09–18):
    without them a call missed at midnight would give a task due at 00:15."""

    timezone: str = DEFAULT_TIMEZONE
    working_hours: bool = Field(
        True, description="false: tasks are due task_due_minutes after the call, at any hour"
    )
    work_days: list[int] = Field(
        default_factory=lambda: list(DEFAULT_WORK_DAYS), description="ISO weekdays, 1 = Monday"
    )
    work_start: time | None = DEFAULT_WORK_START
    work_end: time | None = DEFAULT_WORK_END
    locale: Literal["ru", "en"] = "ru"
    templates: dict[str, str] = {}

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @field_validator("work_days")
    @classmethod
    def _weekdays(cls, v: list[int]) -> list[int]:
        if any(d < 1 or d > 7 for d in v):
            raise ValueError("weekdays are 1 (Monday) to 7 (Sunday)")
        return sorted(set(v))

    @field_validator("work_end")
    @classmethod
    def _hours_in_order(cls, v: time | None, info: ValidationInfo) -> time | None:
        start = info.data.get("work_start")
        if v is not None and start is not None and start >= v:
            raise ValueError(f"must be after work_start ({start:%H:%M}); got work_end {v:%H:%M}")
        return v


class DeliverySettings(_Table):
    retry_base_seconds: float = Field(10.0, gt=0)
    retry_max_delay_seconds: float = Field(3600.0, gt=0)
    retry_max_age_hours: float = Field(72.0, gt=0)
    live_max_age_seconds: float = Field(
        60.0, gt=0, description="a call card (ringing/answered) older than this is skipped"
    )


def normalize_domain(value: str) -> str:
    """``https://Example.onpbx.ru/`` → ``example.onpbx.ru``: the form webhooks are stored under."""
    value = value.strip().lower()
    for scheme in ("https://", "http://"):
        value = value.removeprefix(scheme)
    return value.strip("/")


class OnlinePBXSettings(_Table):
    """The onlinePBX HTTP API: stable recording links and recovery of lost webhooks."""

    domain: str = ""
    api_key: SecretStr | None = None
    base_url: str = "https://api2.onlinepbx.ru"
    rate_limit: float = Field(4.0, gt=0, le=5, description="requests per second (API allows ~5)")
    timeout_seconds: float = Field(15.0, gt=0)
    recording_link_days: float = Field(365.0, gt=0, description="lifetime of a bridge link")
    recording_mode: Literal["redirect", "stream"] = "redirect"
    sweep_interval_minutes: float = Field(10.0, ge=0, description="0 turns the sweep off")
    sweep_lookback_hours: float = Field(3.0, gt=0, le=168)
    backfill_window_hours: float = Field(24.0, gt=0, le=168)

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        return normalize_domain(v)

    @property
    def enabled(self) -> bool:
        return bool(self.domain and self.api_key is not None)


class LogSettings(_Table):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"


ADMIN_MIN_PASSWORD = 8


class AdminSettings(_Table):
    """The browser console at ``/admin/``: off (404) unless a password or its hash is set."""

    password: SecretStr | None = None
    password_hash: str | None = Field(None, description="made by `pbx-bridge admin-password`")
    session_hours: float = Field(12.0, gt=0, le=24 * 30)

    @field_validator("password")
    @classmethod
    def _password_strength(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < ADMIN_MIN_PASSWORD:
            raise ValueError(f"must be at least {ADMIN_MIN_PASSWORD} characters")
        return v

    @field_validator("password_hash")
    @classmethod
    def _hash_shape(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("scrypt$"):
            raise ValueError("not a hash made by `pbx-bridge admin-password`")
        return v

    @property
    def enabled(self) -> bool:
        return self.password is not None or bool(self.password_hash)


class TelegramAlerts(_Table):
    bot_token: SecretStr
    chat_id: str
    base_url: str = "https://api.telegram.org"


class EmailAlerts(_Table):
    host: str
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    timeout_seconds: float = Field(15.0, gt=0)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class WebhookAlerts(_Table):
    url: str
    secret: SecretStr = Field(description="signs each alert (Standard Webhooks HMAC)")
    timeout_seconds: float = Field(10.0, gt=0)


class AlertsSettings(_Table):
    """Messages to the admin when delivery is in trouble; no channel configured = off."""

    interval_seconds: float = Field(300.0, ge=1, description="one message per adapter per this")
    pending_age_minutes: float = Field(30.0, gt=0, description="oldest pending job older → alert")
    telegram: TelegramAlerts | None = None
    email: EmailAlerts | None = None
    webhook: WebhookAlerts | None = None

    @property
    def enabled(self) -> bool:
        return any((self.telegram, self.email, self.webhook))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    numbers: NumbersSettings = NumbersSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    delivery: DeliverySettings = DeliverySettings()
    onlinepbx: OnlinePBXSettings = OnlinePBXSettings()
    log: LogSettings = LogSettings()
    admin: AdminSettings = AdminSettings()
    alerts: AlertsSettings = AlertsSettings()
    adapters: dict[str, dict[str, Any]] = {}
    # Where these settings came from, for messages ("settings.toml (or the environment)").
    _source: str = PrivateAttr("the environment")
    _file: Path | None = PrivateAttr(None)

    @property
    def source(self) -> str:
        return self._source

    @property
    def file(self) -> Path | None:
        """The settings file read, if any."""
        return self._file

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file arrives as init kwargs; the environment wins over it.
        return (env_settings, init_settings)


class SettingsError(Exception):
    """Settings that cannot be used; the message names the file and the key."""


def _declared_secret(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> bool:
    """True when the field at ``loc`` is declared ``SecretStr`` (possibly optional)."""
    for part in loc:
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        kinds = get_args(annotation) or (annotation,)
        if SecretStr in kinds:
            return True
        model = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), None)
    return False


def _model_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model of the table at ``loc`` (``("server",)`` → ServerSettings), if it is one."""
    for part in loc:
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        kinds = get_args(annotation) or (annotation,)
        model = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), None)
    return model


def env_variable(key: str) -> str | None:
    """The ``PBX_BRIDGE_*`` variable that sets dotted ``key``, when it is set."""
    wanted = ENV_PREFIX + key.upper().replace(".", "__")
    return next((name for name in os.environ if name.upper() == wanted), None)


# pydantic's words → an admin's words (the key is named in front of each).
_PLAIN = (
    (re.compile(r"Input should be a valid integer.*"), "must be a whole number"),
    (re.compile(r"Input should be a valid number.*"), "must be a number"),
    (re.compile(r"Input should be a valid boolean.*"), "must be true or false"),
    (re.compile(r"Input should be a valid list.*"), 'must be a list, e.g. ["a", "b"]'),
    (re.compile(r"Input should be a valid dictionary.*"), 'must be a table, e.g. { "101" = 5 }'),
    (re.compile(r"Input should be a valid string.*"), 'must be a string in quotes ("…")'),
    (re.compile(r"^Value error, "), ""),
    (re.compile(r"^Input should be "), "must be "),
)


def _plain_message(err: Any, loc: tuple[Any, ...], prefix: str, model: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        where = [p for p in prefix.strip(".").split(".") if p] + [str(p) for p in loc[:-1]]
        table = _model_at(model, tuple(loc[:-1]))
        known = sorted(table.model_fields) if table is not None else []
        key = str(loc[-1])
        what = f"unknown key `{key}` in [{'.'.join(where)}]" if where else f"unknown table [{key}]"
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if close:
            return f"{what}; did you mean `{close[0]}`?"
        return f"{what}; known keys: {', '.join(known)}" if known else what
    if kind == "missing":
        return "required, but not set"
    message = str(err["msg"])
    for pattern, plain in _PLAIN:
        message = pattern.sub(plain, message)
    return message


def format_validation_error(
    exc: ValidationError, source: str, prefix: str = "", model: type[BaseModel] | None = None
) -> str:
    """One line per problem, naming the key (and the variable when the environment set it);
    values of secret fields are never echoed."""
    lines = [f"invalid settings in {source}:"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        key = f"{prefix}{key}" if key else prefix.rstrip(".")
        got = err.get("input")
        secret = _declared_secret(model, loc) or any(
            w in key.lower() for w in ("token", "secret", "key", "password")
        )
        hidden = secret or isinstance(got, dict) or err["type"] in ("missing", "extra_forbidden")
        shown = "" if hidden else f" (got {got!r})"
        variable = env_variable(key)
        origin = f" (from ${variable})" if variable else ""
        lines.append(f"  {key}{origin}: {_plain_message(err, loc, prefix, model)}{shown}")
    return "\n".join(lines)


def read_settings_file(path: Path, origin: str = "") -> dict[str, Any]:
    """The TOML table of ``path``; every way it can be unusable is a SettingsError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise SettingsError(
            f"settings file not found: {path}{origin} (absolute: {path.absolute()}); give the"
            f" right one with --config FILE or {CONFIG_ENV}=FILE"
        ) from exc
    except IsADirectoryError as exc:
        raise SettingsError(f"{path}{origin} is a directory, not a settings file") from exc
    except PermissionError as exc:
        raise SettingsError(
            f"{path}{origin}: permission denied; the bridge's user must be able to read it"
        ) from exc
    except OSError as exc:
        raise SettingsError(f"{path}{origin}: cannot be read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")  # a BOM from a Windows editor is harmless
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SettingsError(
            f"{path}{origin}: not UTF-8 text (line {line}); save the file as UTF-8"
        ) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}{origin}: not valid TOML: {exc}") from exc


def _check_variable_names() -> None:
    """A misspelled ``PBX_BRIDGE_*`` variable would be ignored silently (a new database, a new
    token): refuse the ones that name no table or look like PBX_BRIDGE_CONFIG."""
    tables = list(Settings.model_fields)
    for name in os.environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_ENV:
            continue
        rest = upper.removeprefix(ENV_PREFIX)
        if "__" in rest:
            table = rest.split("__", 1)[0].lower()
            if table not in tables:
                close = difflib.get_close_matches(table, tables, n=1)
                hint = f"; did you mean {ENV_PREFIX}{close[0].upper()}__…?" if close else ""
                raise SettingsError(
                    f"environment variable {name}: there is no [{table}] table{hint}"
                )
        elif rest.lower() not in tables and (
            rest.startswith("CONF") or difflib.get_close_matches(rest, ["CONFIG"], cutoff=0.7)
        ):
            raise SettingsError(
                f"environment variable {name} is not used; did you mean {CONFIG_ENV}?"
            )


def _complex(annotation: Any) -> bool:
    """A list or table field (pydantic-settings wants JSON for those)."""
    union = get_origin(annotation) in (Union, UnionType)
    kinds = get_args(annotation) if union else (annotation,)
    return any((get_origin(k) or k) in (list, dict, set) for k in kinds)


def _env_parse_message(exc: Exception) -> str:
    """pydantic-settings says only which table failed: name the variable that did."""
    match = re.search(r'field "(\w+)"', str(exc))
    table = match.group(1) if match else ""
    head = f"{ENV_PREFIX}{table.upper()}"
    suspects = []
    for name, value in os.environ.items():
        upper = name.upper()
        if upper != head and not upper.startswith(head + "__"):
            continue
        try:
            json.loads(value)
            continue
        except ValueError:
            pass
        parts = upper.removeprefix(head).strip("_").lower().split("__")
        field = _model_at(Settings, (table,))
        annotation = (
            field.model_fields[parts[0]].annotation
            if field and parts[0] in (field.model_fields)
            else None
        )
        if value.lstrip()[:1] in "[{" or upper == head or _complex(annotation):
            suspects.append(name)
    named = ", ".join(suspects) or f"a {head}__* variable"
    return (
        f"environment variable {named}: not valid JSON; lists and tables are written as JSON,"
        f""" e.g. {head}__KEY='["a", "b"]' or '{{"101": 5}}'"""
    )


def _decode_adapter_json() -> dict[tuple[str, ...], Any]:
    """``PBX_BRIDGE_ADAPTERS__<NAME>__<KEY>`` values that are JSON lists or tables, decoded.

    Adapter tables are plain dicts to the core, so pydantic-settings leaves their values as
    strings; core keys get JSON decoding from their declared types, adapter keys get it here.
    """
    prefix = f"{ENV_PREFIX}ADAPTERS__"
    out: dict[tuple[str, ...], Any] = {}
    for name, value in os.environ.items():
        text = value.strip()
        if not name.upper().startswith(prefix):
            continue
        if (text[:1], text[-1:]) not in (("[", "]"), ("{", "}")):
            continue
        parts = tuple(p.lower() for p in name[len(prefix) :].split("__"))
        if len(parts) < 2 or not all(parts):
            continue
        try:
            out[parts] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(
                f"environment variable {name}: not valid JSON ({exc.msg}, column {exc.colno});"
                f""" e.g. {name}='["log_call"]' or '{{"101": 5}}'"""
            ) from exc
    return out


def _apply(tables: dict[str, Any], decoded: dict[tuple[str, ...], Any]) -> None:
    for parts, value in decoded.items():
        table = tables
        for part in parts[:-1]:
            if not isinstance(table.get(part), dict):
                table[part] = {}
            table = table[part]
        table[parts[-1]] = value


def load_settings(path: str | Path | None = None, *, adapters: bool = True) -> Settings:
    """Load ``path`` (or ``$PBX_BRIDGE_CONFIG``) overlaid by ``PBX_BRIDGE_*`` variables.

    With ``adapters`` (the default) every ``[adapters.*]`` table is validated too, so its
    errors name the file like the core's do.
    """
    _check_variable_names()
    origin = ""
    if path is None:
        path = os.environ.get(CONFIG_ENV) or None
        origin = f" (from ${CONFIG_ENV})" if path else ""
    data: dict[str, Any] = {}
    source = "the environment"
    if path is not None:
        path = Path(path)
        source = f"{path} (or the environment)"
        data = read_settings_file(path, origin)
    decoded = _decode_adapter_json()
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc, source, model=Settings)) from exc
    except EnvParseError as exc:
        raise SettingsError(_env_parse_message(exc)) from exc
    _apply(settings.adapters, decoded)
    settings._source = source
    settings._file = path
    if adapters:
        from bridge.registry import configured  # the registry imports this module

        configured(settings.adapters, source)
    return settings
