"""Settings: a TOML file (optional) overlaid by environment variables.

Every key can come from the environment as ``PBX_BRIDGE_<TABLE>__<KEY>`` (nested with ``__``),
e.g. ``PBX_BRIDGE_SERVER__PORT=9000`` or ``PBX_BRIDGE_ADAPTERS__HTTP__URL=https://…``.
Adapter tables are kept as plain dicts here and validated by each adapter's own model when the
registry builds it, so the core never needs to know which CRMs exist.
"""

from __future__ import annotations

import os
import tomllib
from datetime import time
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "PBX_BRIDGE_"
CONFIG_ENV = "PBX_BRIDGE_CONFIG"


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid")


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

    @field_validator("webhook_token")
    @classmethod
    def _token_strength(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 16:
            raise ValueError(
                "must be at least 16 characters (it is the only thing guarding the URL)"
            )
        return v


class StorageSettings(_Table):
    path: Path = Path("pbx-bridge.db")
    busy_timeout_ms: int = Field(2000, ge=0)
    retention_days: float = Field(30, gt=0, description="done jobs older than this are pruned")


class NumbersSettings(_Table):
    default_region: str = "RU"
    extension_max_digits: int = Field(6, ge=1, le=9)


class ScheduleSettings(_Table):
    timezone: str = "Europe/Moscow"
    work_days: list[int] = Field(default_factory=list, description="ISO weekdays, 1 = Monday")
    work_start: time | None = None
    work_end: time | None = None
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


class DeliverySettings(_Table):
    retry_base_seconds: float = Field(10.0, gt=0)
    retry_max_delay_seconds: float = Field(3600.0, gt=0)
    retry_max_age_hours: float = Field(72.0, gt=0)


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


def format_validation_error(
    exc: ValidationError, source: str, prefix: str = "", model: type[BaseModel] | None = None
) -> str:
    """One line per problem, naming the key; values of secret fields are never echoed."""
    lines = [f"invalid settings in {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        key = f"{prefix}{key}" if key else prefix.rstrip(".")
        got = err.get("input")
        secret = _declared_secret(model, err["loc"]) or any(
            w in key.lower() for w in ("token", "secret", "key", "password")
        )
        hidden = secret or isinstance(got, dict) or err["type"] == "missing"
        shown = "" if hidden else f" (got {got!r})"
        lines.append(f"  {key}: {err['msg']}{shown}")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None) -> Settings:
    """Load ``path`` (or ``$PBX_BRIDGE_CONFIG``) overlaid by ``PBX_BRIDGE_*`` variables."""
    if path is None:
        path = os.environ.get(CONFIG_ENV) or None
    data: dict[str, Any] = {}
    source = "the environment"
    if path is not None:
        path = Path(path)
        source = f"{path} (or the environment)"
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SettingsError(f"settings file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc, source, model=Settings)) from exc
