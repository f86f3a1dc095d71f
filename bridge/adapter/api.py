"""One JSON-API base for every CRM: auth, one parse of each answer, one set of status rules.

A CRM's ``api.py`` subclasses :class:`JsonAPI`, declares its ``AUTH`` (``bridge.adapter.auth``)
and answers one question in :meth:`JsonAPI.refusal`: *does this answer carry the vendor's
refusal?* The common rules do the rest: 2xx passes (unless the vendor refused inside it),
408/425/429/5xx are retried (``Retry-After`` honoured, else :meth:`JsonAPI.retry_after`),
other 4xx are permanent with ``HINTS`` telling the admin what to fix; a refused access token
is refreshed (or adopted from another process) and the request resent once.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin

import httpx

from bridge.adapter.auth import Auth, BearerToken, Credentials, CredentialSettings
from bridge.adapter.contract import Adapter
from bridge.adapter.errors import DeliveryError, Permanent, RetryLater
from bridge.adapter.http import GENERIC_HINTS, body_excerpt, raise_for_status
from bridge.adapter.ratelimit import Limiter

if TYPE_CHECKING:
    from bridge.adapter.contract import AdapterContext, AdapterSettings

_NOT_JSON = object()
S = TypeVar("S", bound="AdapterSettings")
A = TypeVar("A", bound="JsonAPI")


@dataclass(frozen=True, slots=True)
class Answer:
    """One CRM answer, its body parsed once (None: empty; ``parsed`` False: not JSON)."""

    response: httpx.Response
    body: Any
    parsed: bool = True

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def ok(self) -> bool:
        return self.response.is_success

    @property
    def object(self) -> dict[str, Any]:
        """The body when it is a JSON object, else ``{}`` (for reading optional fields)."""
        return self.body if isinstance(self.body, dict) else {}


def parse(response: httpx.Response) -> Answer:
    if response.status_code == 204 or not response.content:
        return Answer(response, None)
    try:
        return Answer(response, response.json())
    except ValueError:
        return Answer(response, None, parsed=False)


class JsonAPI:
    """One CRM account's JSON API. Subclasses set the class attributes and the hooks."""

    VENDOR: ClassVar[str] = "the CRM"
    DEFAULT_BASE_URL: ClassVar[str] = ""
    AUTH: ClassVar[Auth] = Auth(token=BearerToken())
    HEADERS: ClassVar[Mapping[str, str]] = {"Accept": "application/json"}
    #: status → what the admin should fix, appended to a permanent failure's reason.
    HINTS: ClassVar[Mapping[int, str]] = GENERIC_HINTS
    #: Endpoints with a limit of their own on top of the account's (CRM search, typically):
    #: a regular expression searched in the path → the settings key holding that limit in
    #: requests per second (evenly spaced; 0 or a missing key: no extra limit).
    PATH_LIMITS: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self, settings: AdapterSettings, ctx: AdapterContext, *, base_url: str | None = None
    ) -> None:
        self.settings = settings
        self.ctx = ctx
        self.client = ctx.http_client(
            settings, base_url or self.DEFAULT_BASE_URL, headers=dict(self.HEADERS)
        )
        self.auth: Credentials | None = None
        if isinstance(settings, CredentialSettings):
            self.auth = Credentials(self.AUTH, settings, ctx, self.client, self.VENDOR)
        self._path_limits: list[tuple[re.Pattern[str], Limiter]] = [
            (re.compile(pattern), ctx.limiter(float(getattr(settings, key, 0.0) or 0.0)))
            for pattern, key in self.PATH_LIMITS.items()
        ]
        self._held_until = 0.0
        self._held_because = ""

    def hold(self, seconds: float, because: str) -> None:
        """Send nothing to this account for ``seconds``: every request until then ends as
        :class:`RetryLater` without leaving (a CRM that answers an exhausted quota or an
        IP block with more blocking when it is asked again)."""
        until = self.ctx.clock() + max(0.0, seconds)
        if until > self._held_until:
            self._held_until, self._held_because = until, because

    # -- the vendor's hooks -------------------------------------------------------------------

    def refusal(self, answer: Answer, what: str) -> str | DeliveryError | None:
        """Does this answer carry the vendor's refusal? Return its words (the common rules
        then classify it by status), a :class:`DeliveryError` of the vendor's own (raised as
        is), or None. Called for every answer, 2xx included (some CRMs refuse inside a 200)."""
        return None

    def retry_after(self, answer: Answer) -> float | None:
        """The wait for a retryable answer that has no ``Retry-After`` header."""
        return None

    def token_refused(self, answer: Answer) -> bool:
        """Did the CRM refuse the access token (refresh it and resend once)?"""
        return answer.status == 401

    def unwrap(self, answer: Answer) -> Any:
        """What :meth:`call` returns of a successful answer (e.g. its ``data`` member)."""
        return answer.body

    async def url(self, path: str) -> str:
        """Where ``path`` goes: the OAuth token's own API domain when it names one."""
        base = await self.auth.base_url() if self.auth is not None else None
        return f"{base}{path}" if base and path.startswith("/") else path

    # -- requests ---------------------------------------------------------------------------

    async def _send(self, method: str, url: str, token: str | None, kwargs: dict[str, Any]):
        request = dict(kwargs)
        if token is not None and self.auth is not None:
            self.auth.apply(token, request)
        return parse(await self.client.request(method, url, **request))

    async def request(
        self,
        method: str,
        path: str,
        *,
        what: str | None = None,
        allow: Collection[int] = (),
        **kwargs: Any,
    ) -> Answer:
        """Send one request; the answer, or the delivery error it means (statuses in
        ``allow`` are returned for the adapter to read)."""
        what = what or f"{method} {path}"
        left = self._held_until - self.ctx.clock()
        if left > 0:
            raise RetryLater(f"{what}: not sent: {self._held_because}", left)
        for pattern, limiter in self._path_limits:
            if pattern.search(path):
                await limiter.acquire()
        url = await self.url(path)
        token = await self.auth.token() if self.auth is not None else None
        answer = await self._send(method, url, token, kwargs)
        if token is not None and self.auth is not None and self.token_refused(answer):
            renewed = await self.auth.renewed(token)
            if renewed is not None:
                answer = await self._send(method, await self.url(path), renewed, kwargs)
        if answer.status in allow:
            return answer
        self.raise_for(answer, what)
        return answer

    def raise_for(self, answer: Answer, what: str) -> None:
        """The vendor's refusal first, then the common status rules."""
        refusal = self.refusal(answer, what)
        if isinstance(refusal, DeliveryError):
            raise refusal
        if answer.ok:
            if refusal:
                raise Permanent(f"{what}: HTTP {answer.status} {refusal}")
            if not answer.parsed:
                raise RetryLater(
                    f"{what}: HTTP {answer.status} with a body that is not JSON:"
                    f" {body_excerpt(answer.response, 120)}"
                )
            return
        raise_for_status(
            answer.response,
            what,
            detail=refusal or None,
            hints=self.HINTS,
            retry_after=self.retry_after(answer),
        )

    async def call(self, method: str, path: str, what: str = "", **kwargs: Any) -> Any:
        """Send one request; what :meth:`unwrap` makes of the successful answer."""
        return self.unwrap(await self.request(method, path, what=what or None, **kwargs))

    async def aclose(self) -> None:
        await self.client.aclose()


class JsonAdapter(Adapter, Generic[S, A]):
    """An adapter over one :class:`JsonAPI`, declared in its header instead of by hand::

        class MyAdapter(JsonAdapter[MySettings, MyAPI]): ...

    sets ``Settings = MySettings``, builds ``self.api = MyAPI(settings, ctx)`` and closes it
    in ``aclose``; ``self.settings`` and ``self.api`` are typed as the two classes. A subclass
    needing more set-up extends ``__init__`` (calling ``super().__init__`` first).
    """

    API: ClassVar[type[JsonAPI]] = JsonAPI
    settings: S
    api: A

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            if get_origin(base) is JsonAdapter:
                cls.Settings, cls.API = get_args(base)

    def __init__(self, settings: AdapterSettings, ctx: AdapterContext) -> None:
        super().__init__(settings, ctx)
        self.api = cast(A, self.API(settings, ctx))

    async def aclose(self) -> None:
        await self.api.aclose()
