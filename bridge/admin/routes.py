"""The console's pages. Each handler asks the storage's reports port and renders one template."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web

from bridge.adapter.contract import LOG_CALL
from bridge.adapter.errors import DeliveryError
from bridge.admin import charts
from bridge.admin.auth import password_ok
from bridge.admin.i18n import WORDS
from bridge.admin.render import message, render
from bridge.admin.session import (
    ADAPTERS,
    COOKIE,
    LANG,
    LOGIN_THROTTLE,
    NONCE,
    is_https,
    sender,
    sessions,
)
from bridge.keys import CLOCK, DB, DELIVERY, INTAKE, SETTINGS, TOKEN
from bridge.phones import NumberParser, Phone
from bridge.redact import REDACTOR, redact_tree
from bridge.samples import sample
from bridge.store import reports
from bridge.store.outbox import DEAD, STATUSES, Job, Outbox
from bridge.store.reports import Reports, reports_for

log = structlog.get_logger("bridge.admin")

routes = web.RouteTableDef()

WEBHOOK_PATH = "/webhooks/onlinepbx/{token}"  # the same route bridge.app serves
LIVE_EVERY = 2.0  # seconds between looks at the store for the live stream
LIVE_HEARTBEAT = 15.0


def _names(request: web.Request) -> list[str]:
    return [a.name for a in request.app[ADAPTERS]]


def _zone(request: web.Request) -> ZoneInfo:
    return ZoneInfo(request.config_dict[SETTINGS].schedule.timezone)


def _now(request: web.Request) -> float:
    return request.config_dict[CLOCK]()


def _reports(request: web.Request) -> Reports:
    return reports_for(request.config_dict[DB])


_page = render


# --- login / logout -------------------------------------------------------------------------


@routes.get("/login", name="admin_login")
async def login_page(request: web.Request) -> web.StreamResponse:
    if request[NONCE] is not None:
        raise web.HTTPSeeOther(request.app.router["admin_overview"].url_for())
    return _page(request, "login.html", {"next": request.query.get("next", "")})


def _safe_next(value: str) -> str:
    # Only a path inside the console: never an open redirect to another site.
    if value.startswith("/admin/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/admin/"


@routes.post("/login", name="admin_login_post")
async def login(request: web.Request) -> web.StreamResponse:
    who = sender(request)
    guard = request.config_dict[LOGIN_THROTTLE]
    words = WORDS[request[LANG]]
    form = await request.post()
    wait = guard.retry_after(who)
    if wait is not None:
        context = {"error": words["throttled"].format(seconds=int(wait) + 1), "next": ""}
        response = render(request, "login.html", context, status=429)
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    given = form.get("password")
    admin = request.config_dict[SETTINGS].admin
    ok = isinstance(given, str) and await asyncio.to_thread(password_ok, given, admin)
    if not ok:
        blocked = guard.miss(who)
        log.warning("console: wrong password", ip=who, blocked=blocked)
        context = {"error": words["wrong_password"], "next": str(form.get("next") or "")}
        return render(request, "login.html", context, status=401)
    store = await sessions(request)
    response = web.HTTPSeeOther(_safe_next(str(form.get("next") or "")))
    response.set_cookie(
        COOKIE,
        store.issue(),
        max_age=int(store.lifetime),
        path="/admin/",
        httponly=True,
        samesite="Strict",
        secure=is_https(request),
    )
    log.info("console: logged in", ip=who)
    raise response


@routes.post("/logout", name="admin_logout")
async def logout(request: web.Request) -> web.StreamResponse:
    await (await sessions(request)).revoke(request.cookies.get(COOKIE))
    response = web.HTTPSeeOther(request.app.router["admin_login"].url_for())
    response.del_cookie(COOKIE, path="/admin/")
    raise response


# --- overview -------------------------------------------------------------------------------


def _hour_labels(start: float, zone: ZoneInfo, hours: int = 24) -> list[str]:
    return [datetime.fromtimestamp(start + 3600 * i, zone).strftime("%H:00") for i in range(hours)]


def _webhook_url(request: web.Request) -> str:
    base = request.config_dict[SETTINGS].server.public_url
    origin = (base or str(request.url.origin())).rstrip("/")
    return origin + WEBHOOK_PATH.format(token=request.config_dict[TOKEN])


@routes.get("/", name="admin_overview")
async def overview(request: web.Request) -> web.Response:
    db, now, words = request.config_dict[DB], _now(request), WORDS[request[LANG]]
    intake = request.config_dict.get(INTAKE)
    if intake is not None:
        await intake.flush(db)
    start = (now // 3600 - 23) * 3600  # the current hour and the 23 before it
    labels = _hour_labels(start, _zone(request))
    seen = await _reports(request).overview(_names(request), start)
    summaries, per_hour, latencies = seen.summaries, seen.calls_per_hour, seen.latency_per_hour
    counts = seen.intake
    calls_chart = charts.stacked_bars(
        [[a for a, _ in per_hour], [m for _, m in per_hour]],
        [words["answered"], words["missed"]],
        labels,
        words["calls_per_hour"],
    )
    latency_chart = charts.lines(
        [[median for median, _ in latencies], [top for _, top in latencies]],
        ["p50", "max"],
        labels,
        words["latency"],
    )
    refused = {k: v for k, v in sorted(counts.items()) if k not in ("accepted", "duplicate")}
    intake_parts = [
        (words["accepted"], counts.get("accepted", 0)),
        (words["duplicates"], counts.get("duplicate", 0)),
        *refused.items(),
    ]
    bars = {
        s.name: charts.hbar(
            [
                (words["delivered"], s.counts["done"]),
                (words["pending"], s.counts["pending"] + s.counts["running"]),
                (words["dead"], s.counts["dead"]),
            ],
            s.name,
        )
        for s in summaries
    }
    url = _webhook_url(request)
    return _page(
        request,
        "overview.html",
        {
            "summaries": summaries,
            "bars": bars,
            "calls_chart": calls_chart,
            "latency_chart": latency_chart,
            "intake_chart": charts.hbar(
                intake_parts, words["intake"], 480, (charts.GOOD, "#90a4ae", charts.BAD)
            ),
            "intake": counts,
            "refused": refused,
            "intake_total": sum(counts.values()),
            "now": now,
            "webhook_url": url,
            "webhook_masked": url.replace(request.config_dict[TOKEN], "***"),
        },
    )


# --- calls ----------------------------------------------------------------------------------


def _day(value: str, zone: ZoneInfo, *, end: bool = False) -> float | None:
    """A YYYY-MM-DD from a date field as UNIX time (start of that day; with ``end``, of the
    next day), in the schedule's time zone; HTTPBadRequest naming the field otherwise."""
    if not value:
        return None
    try:
        day = datetime.strptime(value.strip(), "%Y-%m-%d").date()
    except ValueError as exc:
        raise ValueError(f"{'to' if end else 'from'}: not a date (YYYY-MM-DD): {value!r}") from exc
    if end:
        day += timedelta(days=1)
    return datetime.combine(day, time(0), zone).timestamp()


def _number_tail(q: str, parser: NumberParser) -> str | None:
    digits = "".join(ch for ch in q if ch.isdigit())
    if len(digits) < 3 or len(digits) * 2 < len(q.replace(" ", "")):
        return None  # mostly not digits: a uuid, not a number
    parsed = parser.phone(q)
    if isinstance(parsed, Phone):
        return parsed.last10
    return digits[-10:]


@routes.get("/calls", name="admin_calls")
async def calls(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
    zone = _zone(request)
    q = request.query.get("q", "").strip()[:128]
    parser = NumberParser(settings.numbers.default_region, settings.numbers.extension_max_digits)
    try:
        since = _day(request.query.get("from", ""), zone)
        until = _day(request.query.get("to", ""), zone, end=True)
    except ValueError as exc:
        return message(request, 400, "bad_input", detail=str(exc))
    tail = _number_tail(q, parser) if q else None
    found = await _reports(request).search_calls(
        number_tail=tail,
        uuid=q or None,
        since=since,
        until=until,
    )
    return _page(
        request,
        "calls.html",
        {
            "calls": found,
            "q": q,
            "date_from": request.query.get("from", ""),
            "date_to": request.query.get("to", ""),
        },
    )


@routes.get("/calls/{uuid}", name="admin_call")
async def call(request: web.Request) -> web.Response:
    detail = await _reports(request).call_detail(
        request.match_info["uuid"], request.query.get("domain")
    )
    if detail is None:
        return message(request, 404, "not_found")
    delivery = request.config_dict.get(DELIVERY)
    adapters = {a.ctx.name: a for a in delivery.adapters} if delivery is not None else {}
    for crm in detail.crm_ids:
        crm["url"] = _crm_link(adapters.get(crm["adapter"]), crm["name"], crm["value"])
    return _page(request, "call.html", {"call": detail, "masked": REDACTOR})


def _crm_link(adapter: Any, name: str, value: str) -> str | None:
    """The object's page in the CRM, for adapters that know it: an optional
    ``crm_url(name, value) -> str | None`` method (``name``: log_call, create_task, contact…)."""
    link = getattr(adapter, "crm_url", None)
    if link is None:
        return None
    try:
        url = link(name, value)
    except Exception:  # a link is a convenience: never a broken page
        log.warning("console: adapter could not build a CRM link", adapter=adapter.ctx.name)
        return None
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None


# --- outbox ---------------------------------------------------------------------------------


@routes.get("/outbox", name="admin_outbox")
async def outbox(request: web.Request) -> web.Response:
    status = request.query.get("status", DEAD)
    if status not in STATUSES:
        detail = f"status must be one of {', '.join(STATUSES)}"
        return message(request, 400, "bad_input", detail=detail)
    names = _names(request)
    adapter = request.query.get("adapter") or None
    found = await _reports(request).jobs(status, adapter)
    return _page(
        request,
        "outbox.html",
        {
            "jobs": found,
            "status": status,
            "statuses": STATUSES,
            "adapter": adapter,
            "adapters": names,
            "now": _now(request),
            "retried": request.query.get("retried"),
            "masked": REDACTOR,
        },
    )


def _wake(request: web.Request, adapter: str) -> None:
    delivery = request.config_dict.get(DELIVERY)
    if delivery is not None:
        delivery.wake({adapter})


@routes.post("/outbox/{id:\\d+}/retry", name="admin_retry_job")
async def retry_job(request: web.Request) -> web.StreamResponse:
    outbox, now = Outbox(request.config_dict[DB]), _now(request)
    job = await outbox.get(int(request.match_info["id"]))
    if job is None:
        return message(request, 404, "not_found")
    n = await Outbox(outbox.storage, lambda: now).retry_dead([job.id])
    _wake(request, job.adapter)
    log.info("console: dead job retried", job_id=job.id, adapter=job.adapter, retried=n)
    target = request.app.router["admin_outbox"].url_for().with_query(status=DEAD, retried=n)
    raise web.HTTPSeeOther(target)


@routes.post("/outbox/retry", name="admin_retry_adapter")
async def retry_adapter(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    adapter = str(form.get("adapter") or "")
    if adapter not in _names(request):
        return message(request, 400, "bad_input", detail=f"adapter: {adapter!r}")
    now = _now(request)
    ids = await _reports(request).dead_job_ids(adapter)
    n = await Outbox(request.config_dict[DB], lambda: now).retry_dead(ids) if ids else 0
    _wake(request, adapter)
    log.info("console: dead jobs of an adapter retried", adapter=adapter, retried=n)
    target = request.app.router["admin_outbox"].url_for().with_query(status=DEAD, retried=n)
    raise web.HTTPSeeOther(target)


# --- rejected webhooks ----------------------------------------------------------------------


@routes.get("/rejected", name="admin_rejected")
async def rejected(request: web.Request) -> web.Response:
    db = request.config_dict[DB]
    intake = request.config_dict.get(INTAKE)
    if intake is not None:
        await intake.flush(db)
    return _page(request, "rejected.html", {"rows": await reports_for(db).rejected()})


# --- settings and the test call ------------------------------------------------------------


def masked_settings(request: web.Request) -> dict[str, Any]:
    """Settings as JSON with every secret masked (SecretStr → ***, known secrets redacted)."""
    settings = request.config_dict[SETTINGS]
    items = request.app[ADAPTERS]
    for item in items:
        REDACTOR.add(*item.settings.secrets())

    # SecretStr fields dump as "**********"; known secrets inside other strings become ***.
    data = redact_tree(settings.model_dump(mode="json", exclude={"adapters"}, by_alias=True))
    if settings.admin.password_hash:
        data["admin"]["password_hash"] = "***"
    data["adapters"] = {i.name: redact_tree(i.settings.model_dump(mode="json")) for i in items}
    return data


@routes.get("/settings", name="admin_settings")
async def settings_page(request: web.Request) -> web.Response:
    data = masked_settings(request)
    shown = {k: json.dumps(v, ensure_ascii=False, indent=2) for k, v in data.items()}
    return _page(request, "settings.html", {"tables": shown, "adapters": _names(request)})


@routes.post("/test-call", name="admin_test_call")
async def test_call(request: web.Request) -> web.Response:
    form = await request.post()
    settings = request.config_dict[SETTINGS]
    name = str(form.get("adapter") or "")
    phone = str(form.get("phone") or "").strip()
    extension = str(form.get("extension") or "").strip()
    delivery = request.config_dict.get(DELIVERY)
    parser = NumberParser(settings.numbers.default_region, settings.numbers.extension_max_digits)
    problem = None
    if delivery is None or name not in delivery.workers:
        problem = f"adapter: {name!r}"
    elif not isinstance(parser.phone(phone), Phone):
        problem = f"phone: not a phone number: {phone[:40]!r}"
    elif extension and not (extension.isdigit() and len(extension) <= 9):
        problem = f"extension: digits only: {extension[:20]!r}"
    if problem:
        return message(request, 400, "bad_input", detail=problem)
    now = _now(request)
    body = sample("call_end", uuid=f"console-test-{secrets.token_hex(6)}", now=now)
    body.update(direction="outbound", caller=extension or "100", callee=phone)
    if settings.onlinepbx.domain:
        body["domain"] = body["from_domain"] = body["to_domain"] = settings.onlinepbx.domain
    job = Job(0, 0, name, LOG_CALL, "running", 1, now, now, now, None, None,
              body["domain"], body["uuid"], "call_end", body, False)  # fmt: skip
    ok, answer = True, ""
    try:
        answer = (await delivery.workers[name].pipeline.run(job)).result  # Delivered | Skipped
    except DeliveryError as exc:
        ok, answer = False, exc.reason
    except Exception as exc:  # what the CRM did is shown, never a 500
        ok, answer = False, f"{type(exc).__name__}: {exc}"
    log.info("console: test call", adapter=name, ok=ok)
    return _page(
        request,
        "test_call.html",
        {"adapter": name, "ok": ok, "answer": REDACTOR(str(answer)), "uuid": body["uuid"]},
    )


# --- calls in progress ----------------------------------------------------------------------


def _keeper(request: web.Request) -> Any:
    """The configured adapter that keeps the calls in progress itself, if any: one with a
    ``list_live(storage, limit, since)`` (the local adapter) and its live actions on."""
    for item in request.app[ADAPTERS]:
        if getattr(item.cls, "list_live", None) is not None and "ringing" in item.settings.events:
            return item.cls
    return None


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """A kept call in progress in the shape the page and the stream show."""
    ext = row.get("answered_by") or ", ".join(row.get("ringing") or []) or ""
    client = row.get("client") or ""
    caller, callee = (client, ext) if row.get("direction") == "inbound" else (ext, client)
    return {
        "domain": row.get("domain", ""),
        "uuid": row.get("uuid", ""),
        "since": row.get("started_at"),
        "direction": row.get("direction", ""),
        "caller": caller,
        "callee": callee,
        "state": row.get("state", ""),
    }


async def _live_calls(request: web.Request) -> list[dict[str, Any]]:
    """From the adapter that keeps them (one table read, its ringing/answered/over), else
    built from the stored events of the last hours."""
    now, keeper = _now(request), _keeper(request)
    if keeper is not None:
        rows = await keeper.list_live(
            request.config_dict[DB], limit=200, since=now - reports.LIVE_WINDOW
        )
        return [_shown(r) for r in rows]
    return await _reports(request).live_calls(now)


@routes.get("/live", name="admin_live")
async def live(request: web.Request) -> web.Response:
    found = await _live_calls(request)
    return _page(request, "live.html", {"calls": found, "now": _now(request)})


@routes.get("/live/stream", name="admin_live_stream")
async def live_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``event: calls`` with the calls in progress whenever they change."""
    if request[NONCE] is None:
        return web.json_response({"ok": False, "error": "unauthorized"}, status=401)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx would otherwise hold the events back
        }
    )
    await response.prepare(request)
    last, quiet = None, 0.0
    while True:
        found = await _live_calls(request)
        data = json.dumps(found, ensure_ascii=False, sort_keys=True)
        if data != last:
            await response.write(f"event: calls\ndata: {data}\n\n".encode())
            last, quiet = data, 0.0
        elif quiet >= LIVE_HEARTBEAT:
            await response.write(b": keep-alive\n\n")
            quiet = 0.0
        await asyncio.sleep(LIVE_EVERY)
        quiet += LIVE_EVERY
