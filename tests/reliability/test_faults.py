"""Every CRM adapter against every fault: delivered, or dead with a reason naming the cause;
retries spaced out (no hot loop); the other adapter unaffected. See faults.py for the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability import fakes
from tests.reliability.faults import SCENARIOS, Outcome, cause_named, down_for, run
from tests.reliability.sizes import BIG
from tests.reliability.targets import CRM, CRMTarget

PERMANENT = (fakes.UNAUTHORIZED, fakes.FORBIDDEN)
SLOW = (fakes.READ_TIMEOUT, fakes.CONNECT_TIMEOUT)  # each attempt waits out a real timeout
MIN_GAP = 5.0  # backoff base 10 s with equal jitter: never sooner than 5 s


# CI runs the whole table for `http` (the toolkit's own paths) and, for the CRM adapters, the
# faults whose handling is theirs: the vendor's error envelopes, Retry-After, a body that is not
# JSON, a dropped connection. The whole table for every adapter runs with PBX_BRIDGE_BIG=1.
CI_FULL = "http"
CI_SUBSET = {
    (fakes.HTTP_500, 2),
    (fakes.RATE_LIMIT_DATE, 2),
    (fakes.RATE_LIMIT_SECONDS, None),
    (fakes.RESET, 2),
    (fakes.NOT_JSON, None),
    (fakes.UNAUTHORIZED, 2),
    (fakes.FORBIDDEN, 2),
}


def _marks(target: CRMTarget, fault: str, times: int | None) -> list[pytest.MarkDecorator]:
    if BIG:
        return []
    if times is None and fault in SLOW:
        return [pytest.mark.skip("persistent timeouts run with PBX_BRIDGE_BIG=1")]
    if target.name != CI_FULL and (fault, times) not in CI_SUBSET:
        return [pytest.mark.skip("the whole table for every adapter runs with PBX_BRIDGE_BIG=1")]
    return []


def _cases() -> list[object]:
    cases = []
    for target in CRM:
        for fault, times, max_age in SCENARIOS:
            marks = _marks(target, fault, times)
            clears = "never" if times is None else f"after{times}"
            case_id = f"{target.name}-{fault}-{clears}"
            cases.append(pytest.param(target, fault, times, max_age, id=case_id, marks=marks))
    return cases


def _no_hot_loop(o: Outcome) -> None:
    if o.attempts > 1:
        assert o.min_gap is not None and o.min_gap >= MIN_GAP, o
    assert o.attempts <= 16, f"{o.attempts} attempts in {o.hours} h: {o}"


@pytest.mark.parametrize(("target", "fault", "times", "max_age"), _cases())
async def test_fault_ends_delivered_or_dead_with_its_cause(
    tmp_path: Path, target: CRMTarget, fault: str, times: int | None, max_age: float
) -> None:
    o = await run(tmp_path, target, fault, times, max_age)
    assert o.bystander == ("done", 1), "another adapter was held up by this one's CRM"
    _no_hot_loop(o)
    permanent = fault in PERMANENT and not (fault == fakes.FORBIDDEN and target.retries_forbidden)
    if o.status == "done":
        assert not permanent
    else:
        assert o.status == "dead", o
        assert cause_named(o), f"reason does not name {o.cause!r}: {o.reasons}"
    if permanent:
        assert (o.status, o.attempts) == ("dead", 1), "retrying cannot fix credentials"
    elif times is not None and fault != fakes.NOT_JSON:
        assert (o.status, o.attempts) == ("done", times + 1), o
        assert cause_named(o), o.reasons  # while it lasted, the reason said why
    elif times is None and fault != fakes.NOT_JSON:
        assert o.status == "dead" and o.reasons[-1].startswith("gave up after"), o
    if fault in (fakes.RATE_LIMIT_SECONDS, fakes.RATE_LIMIT_DATE):
        assert o.min_gap is not None and o.min_gap >= fakes.RETRY_AFTER_SECONDS


@pytest.mark.parametrize("target", CRM, ids=[t.name for t in CRM])
async def test_crm_down_for_an_hour_is_delivered_when_it_returns(
    tmp_path: Path, target: CRMTarget
) -> None:
    o = await down_for(tmp_path, target, 1.0)
    assert o.status == "done" and o.hours >= 1.0, o
    assert o.bystander == ("done", 1)
    _no_hot_loop(o)
    assert o.attempts <= 12, "an hour's outage costs about ten tries, not hundreds"
