"""The adapter contract: what every CRM module in ``adapters/`` implements.

An adapter is a class with a typed ``Settings`` model (a subclass of :class:`AdapterSettings`),
the required async methods ``log_call``, ``create_task`` and ``check``, and any optional ones
it supports (``find_contact``, ``create_contact``…): capabilities are read from the methods a
class defines (:func:`capabilities`), never declared twice. The core decides *what* to do (find
or create the contact, who is responsible, when a task is due, the new contact's name) and
records what was created; the adapter only knows *how* its CRM does it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from bridge.adapter.errors import Permanent
from bridge.adapter.http import CRMClient
from bridge.adapter.outcomes import Skipped
from bridge.adapter.ratelimit import Limiter, make_limiter
from bridge.call import Call
from bridge.phones import Phone
from bridge.redact import Redactor
from bridge.store.state import AdapterState, CallState, LocalRecords

if TYPE_CHECKING:
    from bridge.texts import Texts

LOG_CALL = "log_call"
CREATE_TASK = "create_task"
# Live actions, while the call is still going on: optional, like every capability (an
# adapter that defines ``async def ringing(self, live: LiveCall) -> str`` supports it).
RINGING = "ringing"  # the call rings for a user (inbound: each extension; outbound: the caller)
ANSWERED = "answered"  # a user took the call
OVER = "over"  # the call ended or was missed: close whatever the live actions opened
LIVE_ACTIONS = (RINGING, ANSWERED, OVER)
CARD_ACTIONS = (RINGING, ANSWERED)  # they show something: pointless once the call is over
ACTIONS = (LOG_CALL, CREATE_TASK, *LIVE_ACTIONS)
FIND_CONTACT = "find_contact"
CREATE_CONTACT = "create_contact"
CHECK = "check"
#: Every method the core may call, i.e. every capability an adapter can have by defining it.
#: Optional ones are simply absent from adapters that lack them (extend this tuple, and give
#: the method a Protocol below, to add one).
CAPABILITIES = (LOG_CALL, CREATE_TASK, CHECK, FIND_CONTACT, CREATE_CONTACT, *LIVE_ACTIONS)


def _as_id(value: Any) -> Any:
    # CRM user ids may be written as TOML numbers or strings; they are compared as strings.
    if isinstance(value, bool):
        return value
    return str(value) if isinstance(value, int | float) else value


def compact(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without its None values (CRMs refuse an explicit null where a key may be absent)."""
    return {k: v for k, v in body.items() if v is not None}


class AdapterSettings(BaseModel):
    """Keys every ``[adapters.<name>]`` table accepts. Adapters add their own."""

    model_config = ConfigDict(extra="forbid")

    #: The CRM's name in messages ("amoCRM user ids are numbers…").
    CRM: ClassVar[str] = "this CRM"
    #: ``number``: user ids (``users`` values, ``default_user``) must be integers, checked
    #: when the settings load, so ``check`` fails fast instead of every job dying later.
    USER_IDS: ClassVar[Literal["text", "number"]] = "text"

    type: str | None = Field(None, description="registry name, when the table name differs")
    enabled: bool = True
    # Live actions are on by default; the ones an adapter lacks cause no job (see supports()).
    events: list[Literal["log_call", "create_task", "ringing", "answered", "over"]] = list(ACTIONS)
    users: dict[str, str] = {}
    default_user: str | None = None
    create_contacts: Literal["inbound", "always", "never"] = "inbound"
    task_due_minutes: int = Field(15, ge=0)
    rate_limit: float = Field(5.0, ge=0, description="requests per second; 0 = unlimited")
    rate_burst: float = Field(1.0, ge=1)
    rate_window: float = Field(
        0.0,
        ge=0,
        description="seconds; when set, never more than rate_limit × rate_window requests in any"
        " window of this length (a burst-window CRM: 10/s over 10 s = 100 per 10 s), still paced"
        " evenly within it (rate_burst at once) so a live card waits at most one slot",
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

    @model_validator(mode="after")
    def _typed_user_ids(self) -> AdapterSettings:
        if self.USER_IDS != "number":
            return self
        bad = [f"users.{ext} = {uid!r}" for ext, uid in self.users.items() if not _numeric(uid)]
        if self.default_user is not None and not _numeric(self.default_user):
            bad.append(f"default_user = {self.default_user!r}")
        if bad:
            raise ValueError(
                f"{self.CRM} user ids are numbers (`pbx-bridge check` lists them); not a"
                f" number: {', '.join(bad)}"
            )
        return self

    def secrets(self) -> list[str]:
        """Every SecretStr value in these settings, for redaction."""
        return [
            v.get_secret_value()
            for v in (getattr(self, n) for n in type(self).model_fields)
            if isinstance(v, SecretStr)
        ]


def _numeric(value: str) -> bool:
    return str(value).strip().lstrip("-").isdigit()


def user_number(user_id: str | None) -> int | None:
    """A user id of a CRM whose ids are numbers (validated at load, see ``USER_IDS``)."""
    if user_id is None or str(user_id).strip() == "":
        return None
    try:
        return int(str(user_id).strip())
    except ValueError:
        raise Permanent(
            f"user id {user_id!r} is not a number: fix the `users` map or default_user"
            " (`pbx-bridge check` lists the ids)"
        ) from None


@dataclass(frozen=True, slots=True)
class Contact:
    """A CRM record the call belongs to (contact, lead, person…)."""

    id: str
    name: str | None = None
    owner_id: str | None = None
    kind: str = "contact"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NewContact:
    """A contact the core decided to create: for ``phone``, named by the core's template."""

    phone: Phone
    name: str  # the rendered ``contact_name`` template
    owner_id: str | None
    call: Call
    state: CallState


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


@dataclass(frozen=True, slots=True)
class LiveCall:
    """A live moment of a call (``ringing``, ``answered`` or ``over``) for one adapter.

    ``call`` is built from the event that caused it (``call.event``): ``call_start`` /
    ``call_user_start`` for ``ringing``, ``call_answered``, ``call_end`` / ``call_missed`` for
    ``over``. ``extension`` is the extension that rings, answered or called; ``user_id`` its
    CRM user (``users`` map, else ``default_user``). ``contact`` is what the pipeline already
    knows about the number (remembered for this call, or in the contact cache; adapters with
    ``live_lookup`` get a fresh lookup). Keep what the CRM returns (a call id, who was shown
    the card) in ``state``: the next live action and ``log_call`` of the same call read it.
    """

    call: Call
    extension: str | None
    user_id: str | None
    contact: Contact | None
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

    #: Every limiter made for this adapter (its client's and its endpoints' own), so that the
    #: worker can mark them spent when it takes the adapter over (``ratelimit.spend_all``).
    limiters: list[Limiter] = field(default_factory=list)

    def limiter(self, rate: float, burst: float = 1.0, window: float = 0.0) -> Limiter:
        """``make_limiter``, remembered in ``limiters``."""
        made = make_limiter(rate, burst, window)
        self.limiters.append(made)
        return made

    def http_client(self, settings: AdapterSettings, base_url: str, **kwargs: Any) -> CRMClient:
        """A rate-limited, redacting httpx client for ``settings.base_url or base_url``."""
        return CRMClient(
            base_url=settings.base_url or base_url,
            limiter=self.limiter(settings.rate_limit, settings.rate_burst, settings.rate_window),
            timeout=settings.timeout_seconds,
            redactor=self.redactor,
            on_response=self.on_response,
            **kwargs,
        )


class Adapter(ABC):
    """Base class of every adapter. Subclasses set ``Settings`` and implement the methods.

    Optional capabilities are methods a subclass *may* define (the base does not, so their
    presence is the declaration):

    - ``async find_contact(phone: Phone) -> Contact | None``: the CRM record for ``phone``
      (confirm hits with ``phone.matches``);
    - ``async create_contact(new: NewContact) -> Contact``: create one (only called when
      ``create_contacts`` allows it).

    ``log_call`` and ``create_task`` return the created object's id, or :class:`Skipped`
    when there is honestly nothing to write (booked as done, with the reason).
    """

    Settings: ClassVar[type[AdapterSettings]] = AdapterSettings
    #: Live actions look the number up first (one CRM request before the card). False for
    #: CRMs whose card request finds the record by the number itself.
    live_lookup: ClassVar[bool] = True

    def __init__(self, settings: AdapterSettings, ctx: AdapterContext) -> None:
        self.settings = settings
        self.ctx = ctx

    async def setup(self) -> None:
        """Called once before the first job (create tables, load stored tokens). No network."""

    @abstractmethod
    async def log_call(self, log: CallLog) -> str | Skipped:
        """Write the call to the CRM; return the id of what was created."""

    @abstractmethod
    async def create_task(self, task: FollowUp) -> str | Skipped:
        """Create the follow-up for a missed call; return its id."""

    @abstractmethod
    async def check(self) -> CheckResult:
        """Prove the credentials with a harmless call; list the CRM's users."""

    async def aclose(self) -> None:
        """Release clients; called once on shutdown."""


@runtime_checkable
class FindsContacts(Protocol):
    async def find_contact(self, phone: Phone) -> Contact | None: ...


@runtime_checkable
class CreatesContacts(Protocol):
    async def create_contact(self, new: NewContact) -> Contact: ...


def capabilities(adapter: Adapter | type[Adapter]) -> frozenset[str]:
    """What an adapter can do: the methods of :data:`CAPABILITIES` its class defines."""
    cls = adapter if isinstance(adapter, type) else type(adapter)
    return frozenset(
        name
        for name in CAPABILITIES
        if callable(getattr(cls, name, None))
        and not getattr(getattr(cls, name), "__isabstractmethod__", False)
    )


def supports(adapter: Adapter | type[Adapter], action: str) -> bool:
    """Whether an adapter has ``action`` (capability by presence of the method)."""
    return action in capabilities(adapter)
