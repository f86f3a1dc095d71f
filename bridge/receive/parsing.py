"""Webhook bodies → a flat dict, leniently, with a clear error for what cannot be read.

onlinePBX sends ``application/x-www-form-urlencoded``; its docs print JSON and integrators
report both; multipart is accepted too. Every value becomes a string; unknown fields are kept.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
MULTIPART = "multipart/form-data"
DECODED_ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})

KNOWN_FIELDS = frozenset(
    {
        "domain",
        "event",
        "direction",
        "uuid",
        "caller",
        "callee",
        "from_domain",
        "to_domain",
        "gateway",
        "date",
        "call_duration",
        "dialog_duration",
        "hangup_cause",
        "hangup_by",
        "download_url",
        "origin",
    }
)


class RequestRejected(Exception):
    """A request we answer with a 4xx: ``status``, a machine-readable ``error``, a ``detail``."""

    def __init__(self, status: int, error: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": False, "error": self.error, "detail": self.detail}
        if self.field is not None:
            out["field"] = self.field
        return out


def _scalar(key: str, value: Any) -> Any:
    """JSON values as the strings onlinePBX would send; nested values kept for unknown keys."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, str):
        return value
    if key in KNOWN_FIELDS:
        raise RequestRejected(422, "invalid_field", f"{key} must be a string", key)
    return value


def merge_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Pairs → dict. A known field given twice with different values is ambiguous: rejected."""
    out: dict[str, Any] = {}
    for key, raw in pairs:
        value = _scalar(key, raw)
        if key in out and key in KNOWN_FIELDS and out[key] != value:
            raise RequestRejected(
                422, "duplicate_field", f"{key} is given more than once with different values", key
            )
        out[key] = value
    _encodable(out)
    return out


def _encodable(fields: dict[str, Any]) -> None:
    """Every name and value must be storable as UTF-8. A lone surrogate gets here from a JSON
    escape (``"\\ud800"``) or from a multipart name with a byte that is not UTF-8 (decoded
    with ``surrogateescape``); stored, it would fail the whole group commit it shares."""
    try:
        json.dumps(fields, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestRejected(
            400, "bad_encoding", "a field name or value is not valid UTF-8 (lone surrogate)"
        ) from exc


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestRejected(400, "bad_encoding", "body is not valid UTF-8") from exc


def parse_form(body: bytes) -> dict[str, Any]:
    try:
        pairs = parse_qsl(_decode(body), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as exc:
        raise RequestRejected(400, "bad_encoding", "a form value is not valid UTF-8") from exc
    except ValueError as exc:
        raise RequestRejected(400, "bad_form", f"body is not a valid form: {exc}") from exc
    return merge_pairs(pairs)


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs, so duplicated keys can be seen."""


def parse_json(body: bytes) -> dict[str, Any]:
    text = _decode(body)
    try:
        data = json.loads(text, object_pairs_hook=_Pairs)
    except RecursionError as exc:
        raise RequestRejected(400, "bad_json", "JSON is nested too deeply") from exc
    except ValueError as exc:
        raise RequestRejected(400, "bad_json", f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, _Pairs):
        raise RequestRejected(422, "bad_json", "JSON body must be an object")
    return merge_pairs([(k, _unpair(v, 1)) for k, v in data])


MAX_DEPTH = 32  # onlinePBX sends a flat object; nesting is only ever kept for unknown fields


def _unpair(value: Any, depth: int) -> Any:
    """Undo the pairs hook below the top level (nested objects of unknown fields)."""
    if isinstance(value, _Pairs | list) and depth >= MAX_DEPTH:
        # json.loads nests deeper than Python can walk back: refuse before anything recurses.
        raise RequestRejected(400, "bad_json", f"JSON is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, _Pairs):
        return {k: _unpair(v, depth + 1) for k, v in value}
    if isinstance(value, list):
        return [_unpair(v, depth + 1) for v in value]
    return value


def _content_encoding(request: web.Request) -> None:
    """aiohttp decodes gzip/deflate (and br with brotli installed) itself; anything else
    would reach the parsers still encoded."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in DECODED_ENCODINGS:
        raise RequestRejected(
            415,
            "unsupported_encoding",
            f"Content-Encoding {encoding[:40]!r} is not accepted; send the body unencoded,"
            " or gzip or deflate",
        )


async def read_fields(request: web.Request, max_bytes: int) -> dict[str, Any]:
    ctype = request.content_type
    _content_encoding(request)
    try:
        if ctype == MULTIPART:
            post = await request.post()
            pairs = []
            for key, value in post.items():
                if not isinstance(value, str):
                    raise RequestRejected(
                        422, "invalid_field", f"{key}: files are not accepted", key
                    )
                pairs.append((key, value))
            return merge_pairs(pairs)
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise RequestRejected(413, "too_large", f"body is larger than {max_bytes} bytes") from exc
    except UnicodeDecodeError as exc:
        raise RequestRejected(400, "bad_encoding", "a form value is not valid UTF-8") from exc
    except LookupError as exc:  # a multipart part naming a charset Python does not know
        raise RequestRejected(400, "bad_encoding", f"unknown charset in a part: {exc}") from exc
    except RuntimeError as exc:  # aiohttp: a part's unknown (transfer) encoding
        raise RequestRejected(400, "bad_encoding", f"a part cannot be decoded: {exc}") from exc
    except RequestPayloadError as exc:  # Content-Encoding says gzip, the body is not
        raise RequestRejected(
            400, "bad_encoding", "body does not decode as its Content-Encoding says"
        ) from exc
    except ValueError as exc:  # malformed multipart
        raise RequestRejected(400, "bad_body", f"body cannot be read: {exc}") from exc
    except HttpProcessingError as exc:  # a multipart part's headers do not parse
        raise RequestRejected(400, "bad_body", "body cannot be read: a malformed part") from exc
    if ctype == JSON:
        return parse_json(body)
    if ctype == FORM or "Content-Type" not in request.headers:
        return parse_form(body)  # what onlinePBX sends (also assumed when no type is given)
    raise RequestRejected(
        415,
        "unsupported_media_type",
        f"Content-Type {ctype!r} is not accepted; send {FORM}, {JSON} or {MULTIPART}",
    )
