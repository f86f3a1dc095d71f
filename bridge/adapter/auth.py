"""Declarative auth: an adapter says *how* its CRM authenticates; the toolkit does the rest.

    AUTH = Auth(
        token=ApiKeyHeader("x-api-token"),               # settings.<TOKEN_KEY>, sent as a header
        oauth=OAuth2(
            token_url="https://oauth.pipedrive.com/oauth/token",
            client_auth="basic",                          # or "body" (client_id/_secret in it)
            extra_fields=("api_domain",),                 # kept with the pair
            api_domain_field="api_domain",                # requests go to the token's domain
        ),
    )

The settings side is :class:`CredentialSettings`, the one shape every CRM's settings extend:
a static token under the adapter's documented key (``access_token``, ``api_token``,
``webhook_url``…), *or* an OAuth 2.0 app (``client_id``, ``client_secret``, ``refresh_token``
or a first ``authorization_code`` with ``redirect_uri``). Refreshed pairs live in the database
(``bridge.adapter.oauth.OAuthTokens``), adopted across processes.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import SecretStr, model_validator

from bridge.adapter.contract import AdapterSettings
from bridge.adapter.errors import Permanent, RetryLater
from bridge.adapter.http import CRMClient, json_body, json_object, raise_for_status
from bridge.adapter.oauth import OAuthTokens, TokenPair

if TYPE_CHECKING:
    from bridge.adapter.contract import AdapterContext

STATIC, OAUTH = "token", "oauth"
OAUTH_KEYS = ("client_id", "client_secret", "refresh_token", "authorization_code", "redirect_uri")
# Fields of an OAuth error answer (RFC 6749 §5.2, plus what vendors add) quoted to the admin.
_OAUTH_DETAIL_KEYS = ("error", "error_description", "status", "message", "title", "detail", "hint")


# --- the settings shape ----------------------------------------------------------------------


class CredentialSettings(AdapterSettings):
    """A static token *or* an OAuth 2.0 app: the one credentials shape of every CRM adapter.

    Subclasses declare the static credential's field (its documented key) and name it in
    ``TOKEN_KEY``; ``OAUTH_REQUIRED`` lists the keys an OAuth app needs besides its first grant
    (``refresh_token``, or ``authorization_code`` with ``redirect_uri``).
    """

    TOKEN_KEY: ClassVar[str] = "access_token"
    TOKEN_LABEL: ClassVar[str] = "a long-lived token"
    OAUTH_REQUIRED: ClassVar[tuple[str, ...]] = ("client_id", "client_secret")
    #: ``client_credentials``: the app's id and secret are the whole grant (no refresh token).
    OAUTH_GRANT: ClassVar[str] = "refresh_token"
    #: Does a refresh answer a new refresh token and retire the old one (amoCRM, HubSpot...)?
    #: Then only the bridge's database may spend it: `check` without that database skips the
    #: adapter. A CRM whose refresh token is long-lived (Zoho) is tried from a scratch database.
    REFRESH_TOKEN_ROTATES: ClassVar[bool] = True

    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    # A first grant instead of refresh_token: exchanged once, then the pair is in the database.
    authorization_code: SecretStr | None = None
    redirect_uri: str | None = None

    @model_validator(mode="after")
    def _one_kind_of_credentials(self) -> CredentialSettings:
        key = self.TOKEN_KEY
        given = [k for k in OAUTH_KEYS if getattr(self, k) is not None]
        if getattr(self, key, None) is not None:
            if given:
                raise ValueError(
                    f"give either {key} or the OAuth keys ({', '.join(given)}), not both"
                )
            return self
        if self.OAUTH_GRANT == "client_credentials":
            extra = [k for k in ("refresh_token", "authorization_code") if getattr(self, k)]
            if extra:
                raise ValueError(
                    f"{', '.join(extra)}: not used, the client credentials flow needs only"
                    f" {' and '.join(self.OAUTH_REQUIRED)}"
                )
            missing = [k for k in self.OAUTH_REQUIRED if not getattr(self, k)]
            if missing:
                raise ValueError(f"set {', '.join(missing)}")
            return self
        if self.refresh_token is not None and self.authorization_code is not None:
            raise ValueError("set refresh_token or authorization_code, not both")
        needed = list(self.OAUTH_REQUIRED)
        if self.authorization_code is not None and "redirect_uri" not in needed:
            needed.append("redirect_uri")  # the code exchange must name it (RFC 6749 §4.1.3)
        missing = [k for k in needed if not getattr(self, k)]
        if self.refresh_token is None and self.authorization_code is None:
            missing.append("refresh_token")
        if missing:
            raise ValueError(
                f"set {key} ({self.TOKEN_LABEL}), or an OAuth app with"
                f" {', '.join(self.OAUTH_REQUIRED)} and refresh_token or authorization_code"
                f" (missing: {', '.join(missing)})"
            )
        return self

    @property
    def auth_kind(self) -> str:
        """``token`` or ``oauth``: which kind of credentials these settings hold."""
        return STATIC if getattr(self, self.TOKEN_KEY, None) is not None else OAUTH

    def static_token(self) -> str | None:
        value = getattr(self, self.TOKEN_KEY, None)
        return value.get_secret_value() if isinstance(value, SecretStr) else value


# --- the declarations ------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKeyHeader:
    """The token in a header of every request, e.g. ``x-api-token: <token>``."""

    header: str
    prefix: str = ""

    def apply(self, token: str, request: dict[str, Any]) -> None:
        request["headers"] = {**(request.get("headers") or {}), self.header: self.prefix + token}


@dataclass(frozen=True)
class BearerToken(ApiKeyHeader):
    """``Authorization: Bearer <token>`` (RFC 6750)."""

    header: str = "Authorization"
    prefix: str = "Bearer "


@dataclass(frozen=True)
class BodyField:
    """The token as a field of the JSON body (Bitrix24's ``auth``)."""

    name: str = "auth"

    def apply(self, token: str, request: dict[str, Any]) -> None:
        request["json"] = {**(request.get("json") or {}), self.name: token}


class NoToken:
    """The static credential is not sent per request (it is in the base URL, e.g. a webhook)."""

    def apply(self, token: str, request: dict[str, Any]) -> None:
        return None


TokenScheme = ApiKeyHeader | BodyField | NoToken


@dataclass(frozen=True)
class OAuth2:
    """An OAuth 2.0 token endpoint (RFC 6749 §6 refresh, §4.1.3 code exchange)."""

    token_url: str  # absolute, or a path on the API's base URL
    #: ``refresh_token`` (RFC 6749 §6, with a first code exchange) or ``client_credentials``
    #: (§4.4: the app's own id and secret buy each token; nothing single-use to keep).
    grant: Literal["refresh_token", "client_credentials"] = "refresh_token"
    token_url_key: str | None = None  # a settings key that overrides token_url
    client_auth: Literal["body", "basic"] = "body"  # RFC 6749 §2.3.1
    encoding: Literal["form", "json", "query"] = "form"
    method: Literal["POST", "GET"] = "POST"
    send_as: TokenScheme = field(default_factory=BearerToken)
    extra_fields: tuple[str, ...] = ()  # token-answer fields kept with the pair
    api_domain_field: str | None = None  # requests go to this field's URL unless base_url is set
    default_expires_in: float | None = None  # seconds, when the answer names none
    redirect_uri_always: bool = False  # send redirect_uri on refreshes too (amoCRM wants it)
    fixes: Mapping[str, str] = field(default_factory=dict)  # OAuth error code → the admin's fix
    #: OAuth error codes that mean "not now" (a vendor's refresh throttle) → seconds to wait.
    waits: Mapping[str, float] = field(default_factory=dict)
    reauthorize: str = "re-authorize the app and set a new refresh_token"


@dataclass(frozen=True)
class Auth:
    """How one CRM authenticates: a static token scheme, an OAuth 2.0 app, or both."""

    token: TokenScheme | None = None
    oauth: OAuth2 | None = None


# --- at run time -----------------------------------------------------------------------------


def oauth_detail(body: Any) -> str:
    """The vendor's words in an OAuth error answer, one line."""
    if not isinstance(body, dict):
        return ""
    parts = [str(body[k]) for k in _OAUTH_DETAIL_KEYS if isinstance(body.get(k), str) and body[k]]
    return "; ".join(dict.fromkeys(parts))


class Credentials:
    """The declared auth bound to one adapter's settings, context and HTTP client."""

    def __init__(
        self,
        spec: Auth,
        settings: CredentialSettings,
        ctx: AdapterContext,
        client: CRMClient,
        vendor: str,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.vendor = vendor
        self._client = client
        self._clock = ctx.clock
        self._static = settings.static_token()
        self.tokens: OAuthTokens | None = None
        self._code: str | None = None
        if settings.auth_kind == OAUTH:
            if spec.oauth is None:
                raise ValueError(f"{vendor}: OAuth is not supported by this adapter")
            if settings.authorization_code is not None:
                self._code = settings.authorization_code.get_secret_value()
            seed = settings.refresh_token or settings.authorization_code
            if spec.oauth.grant == "client_credentials":
                # Stands in for the refresh token: no secret, but it names the app and the
                # token endpoint, so a pair stored for another org is never adopted.
                url = getattr(settings, spec.oauth.token_url_key or "", None)
                token_url = spec.oauth.token_url
                url = url or (token_url if "://" in token_url else client.base_url + token_url)
                seed = f"client-credentials:{settings.client_id}@{url}"
            self.tokens = OAuthTokens.from_context(ctx, self._refresh, seed)

    @property
    def oauth(self) -> bool:
        return self.tokens is not None

    def describe(self) -> str:
        """For ``check``: which credentials are in use (never their value)."""
        if self.tokens is not None:
            return "OAuth 2.0 (token pair kept in the bridge database)"
        return self.settings.TOKEN_KEY

    async def token(self) -> str:
        if self.tokens is not None:
            return await self.tokens.access_token()
        return self._static or ""

    def apply(self, token: str, request: dict[str, Any]) -> None:
        """Put ``token`` into the keyword arguments of one request."""
        scheme = self.spec.oauth.send_as if self.tokens is not None and self.spec.oauth else None
        scheme = scheme or self.spec.token or BearerToken()
        scheme.apply(token, request)

    async def renewed(self, rejected: str) -> str | None:
        """After the CRM refused ``rejected``: a new token to resend with once, or None."""
        if self.tokens is None:
            return None
        return await self.tokens.refresh_after_401(rejected)

    async def extra(self, name: str) -> Any:
        """A field the token answer carried (e.g. ``api_domain``); None with a static token."""
        if self.tokens is None:
            return None
        return (await self.tokens.current()).extra.get(name)

    async def base_url(self) -> str | None:
        """The token's own API domain, when the declaration names one and base_url is unset."""
        o = self.spec.oauth
        if self.tokens is None or o is None or not o.api_domain_field or self.settings.base_url:
            return None
        domain = await self.extra(o.api_domain_field)
        return str(domain).rstrip("/") if domain else None

    # -- the token endpoint -------------------------------------------------------------------

    async def _refresh(self, grant_token: str) -> TokenPair:
        o = self.spec.oauth
        assert o is not None
        s = self.settings
        code = self._code is not None and grant_token == self._code
        grant = "authorization_code" if code else "refresh_token"
        params: dict[str, Any] = {"grant_type": grant, ("code" if code else grant): grant_token}
        if o.grant == "client_credentials":
            grant = "client credentials"
            params = {"grant_type": "client_credentials"}
        if s.redirect_uri and (code or o.redirect_uri_always):
            params["redirect_uri"] = s.redirect_uri
        secret = s.client_secret.get_secret_value() if s.client_secret else ""
        kwargs: dict[str, Any] = {}
        if o.client_auth == "basic":
            basic = base64.b64encode(f"{s.client_id or ''}:{secret}".encode()).decode("ascii")
            kwargs["headers"] = {"Authorization": "Basic " + basic}
        else:
            params = {"client_id": s.client_id or "", "client_secret": secret, **params}
        kwargs[{"form": "data", "json": "json", "query": "params"}[o.encoding]] = params
        url = (getattr(s, o.token_url_key, None) if o.token_url_key else None) or o.token_url
        what = f"{o.method} {url if url.startswith('/') else 'OAuth token endpoint'}"
        response = await self._client.request(o.method, url, **kwargs)
        body = json_object(response)
        status = response.status_code
        transient = status >= 500 or status in (408, 425, 429)
        error = body.get("error") if body else None
        if isinstance(error, str) and error in o.waits:
            why = o.fixes.get(error)
            raise RetryLater(
                f"{what}: HTTP {status}: {self.vendor} refused the {grant} for now"
                f" ({oauth_detail(body)}){': ' + why if why else ''}",
                o.waits[error],
            )
        if not transient and (status in (400, 401) or (error and not isinstance(error, bool))):
            detail = oauth_detail(body)
            fix = o.fixes.get(str(error), o.reauthorize) if error else o.reauthorize
            raise Permanent(
                f"{what}: HTTP {status}: {self.vendor} refused the {grant}"
                f"{' (' + detail + ')' if detail else ''}: {fix}"
            )
        raise_for_status(response, what)
        if body is None:
            json_body(response, what)  # an HTML page or garbage: retried, named "not JSON"
        if body is None or not body.get("access_token"):
            raise RetryLater(f"{what}: HTTP {status} without an access_token")
        expires_in = body.get("expires_in")
        if not isinstance(expires_in, int | float | str) or not str(expires_in).strip():
            expires_in = o.default_expires_in
        try:
            expires_at = self._clock() + float(expires_in) if expires_in is not None else None
        except ValueError:
            expires_at = None
        return TokenPair(
            access_token=str(body["access_token"]),
            refresh_token=str(body.get("refresh_token") or grant_token),
            expires_at=expires_at,
            extra={k: body[k] for k in o.extra_fields if body.get(k)},
        )
