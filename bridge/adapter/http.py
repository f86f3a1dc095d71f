"""The HTTP client every CRM adapter uses: timeouts, rate limit, metrics, error classes.

Adapters call :meth:`CRMClient.request` and get an ``httpx.Response`` back for any status;
:func:`raise_for_status` turns a failed one into :class:`RetryLater` or :class:`Permanent`
by the common rules (429, 408, 5xx retried; other 4xx permanent). Adapters with their own
error envelopes check those first and fall back to it.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Mapping
from contextlib import suppress
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from bridge.adapter.errors import Permanent, RetryLater
from bridge.adapter.ratelimit import Limiter
from bridge.redact import Redactor

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# No CRM answer the adapters read is anywhere near this: a bigger (or decompressed-bigger) body
# is cut off as it streams in, so a runaway answer or a gzip bomb cannot take the memory.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
# The encodings we decode ourselves, with a bound on each step's output (httpx's decoders
# inflate a whole network chunk at once: 64 KB of gzip can become 64 MB). Only these are
# offered in Accept-Encoding.
_ZLIB_WBITS = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}
ACCEPT_ENCODING = "gzip, deflate"


class AnswerTooLarge(Exception):
    """The answer (after decoding) passed :data:`MAX_ANSWER_BYTES`."""


def _inflater(encoding: str) -> Callable[[bytes, int], bytes] | None:
    """A bounded decoder for ``encoding``: ``(data, room) -> at most room + 1 bytes``."""
    wbits = _ZLIB_WBITS.get(encoding)
    if wbits is None:
        return None
    state = {"d": zlib.decompressobj(wbits), "raw_tried": encoding != "deflate"}

    def inflate(data: bytes, room: int) -> bytes:
        try:
            out = state["d"].decompress(data, room + 1)
        except zlib.error:
            if state["raw_tried"]:
                raise
            # "deflate" is sent by some servers without its zlib header (raw deflate)
            state["d"], state["raw_tried"] = zlib.decompressobj(-zlib.MAX_WBITS), True
            out = state["d"].decompress(data, room + 1)
        if len(out) > room or state["d"].unconsumed_tail:
            raise AnswerTooLarge
        return out

    return inflate


async def read_capped(response: httpx.Response, cap: int = MAX_ANSWER_BYTES) -> bytes:
    """Read a streamed answer into ``response`` (so ``.content``/``.json()`` work), never
    holding more than ``cap`` decoded bytes; AnswerTooLarge beyond that."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    inflate = _inflater(encoding)
    chunks: list[bytes] = []
    size = 0
    try:
        if inflate is None and encoding not in ("", "identity"):
            stream = response.aiter_bytes()  # other encodings: httpx's decoder, still capped
        else:
            stream = response.aiter_raw()
        async for chunk in stream:
            if inflate is not None:
                chunk = inflate(chunk, cap - size)
            size += len(chunk)
            if size > cap:
                raise AnswerTooLarge
            chunks.append(chunk)
    except zlib.error as exc:
        raise httpx.DecodingError(f"invalid {encoding} body: {exc}") from exc
    finally:
        await response.aclose()
    # The decoded body, as httpx's own ``aread`` would leave it.
    response._content = b"".join(chunks)
    return response._content


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_of(response: httpx.Response, fallback: float | None = None) -> float | None:
    """The response's ``Retry-After`` in seconds (``fallback`` without one). An HTTP date is
    measured from the response's own ``Date`` header when it has one, so a CRM whose clock
    differs from ours is still understood (from our clock, a date in its "future" can be in our
    past: a hot loop)."""
    sent_at = None
    with suppress(TypeError, ValueError, IndexError):
        sent_at = parsedate_to_datetime(response.headers.get("date", "")).timestamp()
    found = parse_retry_after(response.headers.get("retry-after"), sent_at)
    return fallback if found is None else found


def body_excerpt(response: httpx.Response, limit: int = 300) -> str:
    try:
        text = response.text
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return "<unreadable body>"
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


GENERIC_HINTS = {
    401: " (token revoked or expired: check the credentials)",
    403: " (access denied: check the permissions or IP restrictions)",
}


def raise_for_status(
    response: httpx.Response,
    what: str = "",
    *,
    detail: str | None = None,
    hints: Mapping[int, str] | None = None,
    retry_after: float | None = None,
) -> None:
    """Raise the delivery error a non-2xx answer means; return for 2xx.

    Adapters whose CRM has its own error envelope pass its message as ``detail`` (instead of
    the start of the body), their own ``hints`` (status → what the admin should fix), and a
    ``retry_after`` to use when the answer has no ``Retry-After`` header.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    label = f"{what}: " if what else ""
    reason = f"{label}HTTP {status} {body_excerpt(response) if detail is None else detail}"
    reason = reason.rstrip()
    if status in RETRYABLE_STATUS or status >= 500:
        raise RetryLater(reason, retry_after_of(response, fallback=retry_after))
    raise Permanent(reason + (GENERIC_HINTS if hints is None else hints).get(status, ""))


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The answer's JSON object, or None when the body is anything else (an HTML error page)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def json_body(response: httpx.Response, what: str = "") -> Any:
    """The JSON of a 2xx answer; a CRM that answers 2xx with garbage is retried later."""
    try:
        return response.json()
    except ValueError as exc:
        label = f"{what}: " if what else ""
        raise RetryLater(
            f"{label}HTTP {response.status_code} with a body that is not JSON: "
            f"{body_excerpt(response, 120)}"
        ) from exc


class CRMClient:
    def __init__(
        self,
        *,
        base_url: str,
        limiter: Limiter,
        timeout: float = 15.0,
        headers: Mapping[str, str] | None = None,
        redactor: Redactor | None = None,
        on_response: Callable[[str], None] = lambda status: None,
        auth: httpx.Auth | None = None,
    ) -> None:
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})},
            auth=auth,
            follow_redirects=False,
        )
        self._limiter = limiter
        self._redactor = Redactor() if redactor is None else redactor  # empty is falsy
        self._on_response = on_response

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request under the rate limit; network trouble becomes RetryLater.

        ``timeout`` bounds the whole request (connect, send, every read of the answer), not
        each read: a CRM trickling a byte a second cannot keep a job running. The answer is
        streamed and cut at :data:`MAX_ANSWER_BYTES`.
        """
        await self._limiter.acquire()
        try:
            return await self._send(method, url, **kwargs)
        finally:
            # Whatever happened (answer, error, timeout, cancellation), the request left by
            # now if ever: one never reported written is counted from here.
            self._limiter.answered()

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        extensions = {**kwargs.pop("extensions", {}), "trace": self._trace}
        request = self._client.build_request(method, url, extensions=extensions, **kwargs)
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.send(request, stream=True)
                await read_capped(response)
        except (httpx.TimeoutException, TimeoutError) as exc:
            self._on_response("timeout")
            why = (
                type(exc).__name__
                if isinstance(exc, httpx.TimeoutException)
                else f"no complete answer within {self._timeout:g} s"
            )
            raise RetryLater(f"{method} {self._path(url)}: timed out ({why})") from exc
        except AnswerTooLarge as exc:
            self._on_response("too_large")
            raise RetryLater(
                f"{method} {self._path(url)}: answer larger than {MAX_ANSWER_BYTES} bytes"
            ) from exc
        except (httpx.TransportError, httpx.DecodingError) as exc:
            self._on_response("network_error")
            raise RetryLater(
                f"{method} {self._path(url)}: network error ({type(exc).__name__}:"
                f" {self._redactor(str(exc))})"
            ) from exc
        self._on_response(str(response.status_code))
        return response

    async def _trace(self, name: str, info: dict[str, Any]) -> None:
        # httpcore's trace: the request's last byte has been written to the socket (after
        # any connection set-up and however long the loop held it back), so the CRM cannot
        # count it earlier than now: the window limiter counts it from here.
        if name.endswith("send_request_body.complete"):
            self._limiter.sent()

    @property
    def base_url(self) -> str:
        return str(self._client.base_url).rstrip("/")

    def _path(self, url: str) -> str:
        return self._redactor(str(httpx.URL(url).path) or url)

    async def aclose(self) -> None:
        await self._client.aclose()
