"""The words written into CRMs, per locale, with templates an admin can override."""

from __future__ import annotations

import string
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bridge.call import Call
from bridge.safetext import clean

DEFAULTS: dict[str, dict[str, str]] = {
    "ru": {
        "call_title_inbound": "Входящий звонок {client}",
        "call_title_outbound": "Исходящий звонок {client}",
        "outcome_answered": "Разговор состоялся",
        "outcome_missed": "Пропущенный звонок",
        "outcome_no_answer": "Нет ответа",
        "outcome_busy": "Занято",
        "outcome_failed": "Не удалось дозвониться",
        "call_note": "Линия {line}, разговор {talk} с из {total} с, завершение: {hangup_cause}",
        "task_title": "Перезвонить: пропущенный звонок с {client} в {time}",
        "task_description": "Пропущенный звонок с {client} {date} в {time} на линию {line}.",
        "contact_name": "Клиент {client}",
    },
    "en": {
        "call_title_inbound": "Inbound call from {client}",
        "call_title_outbound": "Outbound call to {client}",
        "outcome_answered": "Talked",
        "outcome_missed": "Missed call",
        "outcome_no_answer": "No answer",
        "outcome_busy": "Busy",
        "outcome_failed": "Call failed",
        "call_note": "Line {line}, talked {talk} s of {total} s, hangup: {hangup_cause}",
        "task_title": "Call back: missed call from {client} at {time}",
        "task_description": "Missed call from {client} on {date} at {time} to line {line}.",
        "contact_name": "Client {client}",
    },
}

PLACEHOLDERS = frozenset(
    {"client", "extension", "line", "talk", "total", "hangup_cause", "date", "time", "uuid"}
)


def check_templates(overrides: dict[str, str]) -> list[str]:
    """Problems with admin templates: unknown names or placeholders (empty list if fine)."""
    problems = []
    for key, template in overrides.items():
        if key not in DEFAULTS["en"]:
            problems.append(f"schedule.templates.{key}: unknown template name")
            continue
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        except ValueError as exc:
            problems.append(f"schedule.templates.{key}: {exc}")
            continue
        unknown = names - PLACEHOLDERS
        if unknown:
            problems.append(
                f"schedule.templates.{key}: unknown placeholder(s) {sorted(unknown)};"
                f" known: {sorted(PLACEHOLDERS)}"
            )
    return problems


class Texts:
    def __init__(
        self,
        locale: str = "ru",
        overrides: dict[str, str] | None = None,
        timezone: str = "Europe/Moscow",
    ) -> None:
        self.locale = locale
        self.templates = {**DEFAULTS[locale], **(overrides or {})}
        self.tz = ZoneInfo(timezone)

    def values(self, call: Call) -> dict[str, Any]:
        local: datetime = call.ended_at.astimezone(self.tz)
        return {
            "client": call.client.international if call.client else call.client_raw,
            "extension": call.extension or "",
            "line": call.gateway or "—",
            "talk": call.talk_seconds,
            "total": call.total_seconds,
            "hangup_cause": call.hangup_cause or "—",
            "date": local.strftime("%d.%m.%Y" if self.locale == "ru" else "%Y-%m-%d"),
            "time": local.strftime("%H:%M"),
            "uuid": call.uuid,
        }

    def render(self, key: str, call: Call) -> str:
        # the values come from the webhook: no controls or bidi overrides into the CRM
        return clean(self.templates[key].format_map(self.values(call)))

    def call_title(self, call: Call) -> str:
        return self.render(f"call_title_{call.direction}", call)

    def outcome(self, call: Call) -> str:
        return self.render(f"outcome_{call.outcome}", call)
