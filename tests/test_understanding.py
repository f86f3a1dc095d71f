"""Numbers, the normalized call record, working hours and texts."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from bridge.call import build_call
from bridge.phones import Extension, NumberParser, Phone
from bridge.schedule import due_time
from bridge.settings import ScheduleSettings
from bridge.texts import Texts, check_templates
from tests.conftest import vendor_sample

parser = NumberParser("RU", extension_max_digits=6)


@pytest.mark.parametrize(
    "raw",
    [
        "+79510057057",
        "79510057057",
        "89510057057",
        "8 (951) 005-70-57",
        "+7 951 005 70 57",
        "9510057057",
    ],
)
def test_russian_forms_are_one_number(raw):
    phone = parser.parse(raw)
    assert isinstance(phone, Phone)
    assert phone.e164 == "+79510057057"
    assert phone.variants() == ["+79510057057", "79510057057", "89510057057", "9510057057"]
    assert phone.international == "+7 951 005-70-57"


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        ("505", "505"),
        ("510@onlinepbx.ru", "510"),
        ("510@pbx.onpbx.ru", "510"),
        ("101", "101"),
        ("123456", "123456"),
    ],
)
def test_extensions(raw, number):
    assert parser.parse(raw) == Extension(number)


def test_extension_length_is_configurable():
    assert not isinstance(NumberParser("RU", extension_max_digits=3).parse("1234"), Extension)
    assert NumberParser("RU", extension_max_digits=4).parse("1234") == Extension("1234")


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+4930123456", "+4930123456"),
        ("+1 650 253 0000", "+16502530000"),
        ("380441234567", "+380441234567"),
        ("+375 29 123-45-67", "+375291234567"),
    ],
)
def test_foreign_numbers(raw, e164):
    phone = parser.parse(raw)
    assert isinstance(phone, Phone) and phone.e164 == e164


def test_default_region_is_configurable():
    phone = NumberParser("DE").parse("030 123456")
    assert isinstance(phone, Phone) and phone.e164 == "+4930123456"


@pytest.mark.parametrize("raw", ["", "   ", "anonymous", None])
def test_unreadable_numbers(raw):
    assert parser.parse(raw) is None


def test_matches_compares_last_ten_digits():
    phone = parser.parse("89510057057")
    assert phone.matches("+7 (951) 005-70-57") and phone.matches("79510057057")
    assert not phone.matches("+7 951 005-70-58") and not phone.matches("")


def test_call_end_outbound_sample():
    call = build_call(vendor_sample("call_end"), parser)
    assert call.direction == "outbound"
    assert call.client.e164 == "+79502222919" and call.extension == "145"
    assert call.talk_seconds == 135 and call.total_seconds == 149 and call.answered
    assert call.ended_at == datetime.fromtimestamp(1528884937, UTC)
    assert (call.ended_at - call.started_at).total_seconds() == 149
    assert call.gateway == "74991111282" and call.hangup_cause == "NORMAL_CLEARING"
    assert call.outcome == "answered"


def test_call_missed_sample_is_inbound_with_caller_as_client():
    call = build_call(vendor_sample("call_missed"), parser)
    assert call.direction == "inbound" and call.missed and call.outcome == "missed"
    assert call.client.e164 == "+79221111123" and call.extension is None


def test_answered_comes_from_talk_time_not_hangup_cause():
    payload = vendor_sample("call_end") | {"dialog_duration": "0"}  # NORMAL_CLEARING, no talk
    call = build_call(payload, parser)
    assert not call.answered and call.outcome == "no_answer"
    busy = build_call(payload | {"hangup_cause": "USER_BUSY"}, parser)
    assert busy.outcome == "busy"


def test_inbound_call_client_is_caller_and_internal_calls_have_no_client():
    inbound = vendor_sample("call_end") | {
        "direction": "inbound",
        "caller": "+79221111123",
        "callee": "510@pbx.onpbx.ru",
    }
    call = build_call(inbound, parser)
    assert call.client.e164 == "+79221111123" and call.extension == "510"
    internal = build_call(vendor_sample("call_end") | {"caller": "101", "callee": "102"}, parser)
    assert internal.internal and internal.client is None


def test_recording_url_is_kept():
    call = build_call(vendor_sample("call_end") | {"download_url": "https://x/rec.mp3"}, parser)
    assert call.recording_url == "https://x/rec.mp3"


WORK = ScheduleSettings(
    timezone="Europe/Moscow", work_days=[1, 2, 3, 4, 5], work_start=time(9), work_end=time(18)
)


@pytest.mark.parametrize(
    ("now_msk", "expected_msk"),
    [
        ("2026-11-25 10:00", "2026-11-25 10:30"),  # Wednesday, inside hours: kept
        ("2026-11-25 17:50", "2026-11-26 09:00"),  # would be 18:20: next morning
        ("2026-11-25 03:00", "2026-11-25 09:00"),  # night: same day's opening
        ("2026-11-27 20:00", "2026-11-30 09:00"),  # Friday evening: Monday
        ("2026-11-28 12:00", "2026-11-30 09:00"),  # Saturday: Monday
    ],
)
def test_due_time_moves_into_working_hours(now_msk, expected_msk):
    from zoneinfo import ZoneInfo

    msk = ZoneInfo("Europe/Moscow")
    now = datetime.strptime(now_msk, "%Y-%m-%d %H:%M").replace(tzinfo=msk).astimezone(UTC)
    due = due_time(now, 30, WORK)
    assert due.strftime("%Y-%m-%d %H:%M") == expected_msk
    assert due.tzinfo is not None


def test_due_time_without_working_hours_is_plain_offset():
    now = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)
    plain = ScheduleSettings(working_hours=False)
    assert (due_time(now, 15, plain) - now).total_seconds() == 900


def test_working_hours_by_default_mon_fri_9_18_moscow():
    """No [schedule] at all: a call missed at midnight is due at 09:00, not at 00:15."""
    tuesday_midnight = datetime(2026, 12, 1, 0, 0, tzinfo=ZoneInfo("Europe/Moscow"))
    due = due_time(tuesday_midnight, 15, ScheduleSettings())
    assert due.strftime("%Y-%m-%d %H:%M") == "2026-12-01 09:00"
    saturday_noon = datetime(2026, 12, 5, 12, 0, tzinfo=ZoneInfo("Europe/Moscow"))
    assert due_time(saturday_noon, 15, ScheduleSettings()).strftime("%a %H:%M") == "Mon 09:00"
    workday = datetime(2026, 12, 2, 11, 0, tzinfo=ZoneInfo("Europe/Moscow"))
    assert due_time(workday, 15, ScheduleSettings()).strftime("%H:%M") == "11:15"


def test_texts_per_locale_and_overrides():
    call = build_call(vendor_sample("call_missed"), parser)
    ru = Texts("ru", timezone="Europe/Moscow")
    assert ru.render("task_title", call) == (
        "Перезвонить: пропущенный звонок с +7 922 111-11-23 в 14:15"
    )
    en = Texts("en", {"task_title": "Ring {client} back"}, timezone="UTC")
    assert en.render("task_title", call) == "Ring +7 922 111-11-23 back"
    assert check_templates({"task_title": "{nope}"})[0].startswith("schedule.templates.task_title")
    assert check_templates({"no_such": "x"})
    assert check_templates({"task_title": "{client} at {time}"}) == []
