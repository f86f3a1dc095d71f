"""The adapter contract: what every CRM module in ``adapters/`` implements.

An adapter is a class with a typed ``Settings`` model (a subclass of :class:`AdapterSettings`)
and four async methods. The core decides *what* to do (find or create the contact, who is
responsible, when a task is due) and records what was created; the adapter only knows *how*
its CRM does it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bridge.adapter.http import CRMClient
from bridge.adapter.ratelimit import make_limiter
from bridge.call import Call
from bridge.phones import Phone
from bridge.redact import Redactor
from bridge.store.state import AdapterState, CallState, LocalRecords

if TYPE_CHECKING:
    from bridge.texts import Texts

LOG_CALL = "log_call"
CREATE_TASK = "create_task"
ACTIONS = (LOG_CALL, CREATE_TASK)


def _as_id(value: Any) -> Any:
    # CRM user ids may be written as TOML numbers or strings; they are compared as strings.
    if isinstance(value, bool):
        return value
    return str(value) if isinstance(value, int | float) else value


class AdapterSettings(BaseModel):
    """Keys every ``[adapters.<name>]`` table accepts. Adapters add their own."""

    model_config = ConfigDict(extra="forbid")

    type: str | None = Field(None, description="registry name, when the table name differs")
    enabled: bool = True
    events: list[Literal["log_call", "create_task"]] = [LOG_CALL, CREATE_TASK]
    users: dict[str, str] = {}
    default_user: str | None = None
    create_contacts: Literal["inbound", "always", "never"] = "inbound"
    task_due_minutes: int = Field(15, ge=0)
    rate_limit: float = Field(5.0, ge=0, description="requests per second; 0 = unlimited")
    rate_burst: float = Field(1.0, ge=1)
    rate_window: float = Field(
        0.0,
        ge=0,
        description="seconds; when set, rate_limit × rate_window requests may go in any window"
        " of this length (a burst-window CRM: 10/s over 10 s = 100 per 10 s), instead of being"
        " evenly spaced",
    )
    contact_cache_seconds: float = Field(
        60.0, ge=0, description="how long a contact lookup is reused; 0 = ask the CRM every time"
    )
    base_url: str | None = None
    timeout_seconds: float = Field(15.0, gt=0)
    concurrency: int = Field(2, ge=1, le=64)
    # Filters: empty means "all".
    gateways: list[str] = []
    extensions: list[str] = []
    directions: list[Literal["inbound", "outbound"]] = []
    min_talk_seconds: int = Field(0, ge=0)

    @field_validator("users", mode="before")
    @classmethod
    def _user_ids(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): _as_id(val) for k, val in v.items()}
        return v

    @field_validator("default_user", mode="before")
    @classmethod
    def _default_user(cls, v: Any) -> Any:
        return _as_id(v)

    @field_validator("extensions", "gateways", mode="before")
    @classmethod
    def _strings(cls, v: Any) -> Any:
        return [str(x) for x in v] if isinstance(v, list) else v

    def secrets(self) -> list[str]:
        """Every SecretStr value in these settings, for redaction."""
        return [
            v.get_secret_value()
            for v in (getattr(self, n) for n in type(self).model_fields)
            if isinstance(v, SecretStr)
        ]


@dataclass(frozen=True, slots=True)
class Contact:
    """A CRM record the call belongs to (contact, lead, person…)."""

    id: str
    name: str | None = None
    owner_id: str | None = None
    kind: str = "contact"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallLog:
    call: Call
    contact: Contact | None
    user_id: str | None
    title: str
    result: str  # "talked", "no answer"… in the configured locale
    state: CallState  # remember intermediate CRM ids of multi-step writes here


@dataclass(frozen=True, slots=True)
class FollowUp:
    call: Call
    contact: Contact | None
    user_id: str | None
    due_at: datetime  # aware, in the schedule's time zone
    title: str
    description: str
    state: CallState


@dataclass(slots=True)
class CheckResult:
    account: str
    users: list[tuple[str, str]] = field(default_factory=list)  # (id, name)
    notes: list[str] = field(default_factory=list)


@dataclass
class AdapterContext:
    """What the core hands an adapter: its name, durable state, the shared toolkit. No
    adapter sees the database: ``state`` and ``records`` are its ports into the storage."""

    name: str
    state: AdapterState
    texts: Texts
    redactor: Redactor
    records: LocalRecords  # the bridge's own call/task tables (the `local` adapter)
    on_response: Callable[[str], None] = lambda status: None
    clock: Callable[[], float] = time.time
    log: Any = field(default_factory=lambda: structlog.get_logger())

    def http_client(self, settings: AdapterSettings, base_url: str, **kwargs: Any) -> CRMClient:
        """A rate-limited, redacting httpx client for ``settings.base_url or base_url``."""
        return CRMClient(
            base_url=settings.base_url or base_url,
            limiter=make_limiter(settings.rate_limit, settings.rate_burst, settings.rate_window),
            timeout=settings.timeout_seconds,
            redactor=self.redactor,
            on_response=self.on_response,
            **kwargs,
        )


class Adapter(ABC):
    """Base class of every adapter. Subclasses set ``Settings`` and implement the methods."""

    Settings: ClassVar[type[AdapterSettings]] = AdapterSettings
    #: False for adapters with no contact concept (e.g. a generic webhook receiver).
    supports_contacts: ClassVar[bool] = True

    def __init__(self, settings: AdapterSettings, ctx: AdapterContext) -> None:
        self.settings = settings
        self.ctx = ctx

    async def setup(self) -> None:
        """Called once before the first job (create tables, load stored tokens). No network."""

    async def find_contact(self, phone: Phone) -> Contact | None:
        """The CRM record for ``phone``, or None. Confirm hits with ``phone.matches``."""
        return None

    async def create_contact(self, phone: Phone, owner_id: str | None, call: Call) -> Contact:
        raise NotImplementedError

    @abstractmethod
    async def log_call(self, log: CallLog) -> str:
        """Write the call to the CRM; return the id of what was created."""

    @abstractmethod
    async def create_task(self, task: FollowUp) -> str:
        """Create the follow-up for a missed call; return its id."""

    @abstractmethod
    async def check(self) -> CheckResult:
        """Prove the credentials with a harmless call; list the CRM's users."""

    async def aclose(self) -> None:
        """Release clients; called once on shutdown."""
