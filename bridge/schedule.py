"""Working hours: when a follow-up task for a missed call is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bridge.settings import ScheduleSettings


def due_time(now: datetime, minutes: int, schedule: ScheduleSettings) -> datetime:
    """``now + minutes``, moved to the next working moment when a schedule is set.

    A due time inside working hours is kept; one outside moves to the start of the next
    working period (a call missed on Friday night is due Monday morning, not at 3 a.m.).
    """
    tz = ZoneInfo(schedule.timezone)
    due = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(tz) + timedelta(
        minutes=minutes
    )
    if not schedule.working_hours:
        return due
    days = schedule.work_days
    start, end = schedule.work_start, schedule.work_end
    if not days and start is None and end is None:
        return due
    days = days or [1, 2, 3, 4, 5, 6, 7]
    for offset in range(8):
        day = (due + timedelta(days=offset)).date()
        if day.isoweekday() not in days:
            continue
        opens = (
            datetime.combine(day, start, tz)
            if start
            else datetime.combine(day, datetime.min.time(), tz)
        )
        closes = datetime.combine(day, end, tz) if end else opens.replace(hour=23, minute=59)
        if offset == 0:
            if opens <= due <= closes:
                return due
            if due < opens:
                return opens
            continue
        return opens
    return due
