"""The contract itself: Zoho's OpenAPI files load from shared/ (offline), accept what Zoho
documents and reject what it does not. In CI (``CI`` set) missing spec files fail the run."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.adapters.zoho.contract import (
    SPEC_DIR,
    SPECS_MISSING,
    ContractViolation,
    ZohoContract,
    required_in_ci,
)

API = "https://www.zohoapis.eu"
AUTH = {"Authorization": "Zoho-oauthtoken 1000.0123456789abcdef.fedcba9876543210"}


@pytest.fixture(scope="module")
def specs() -> ZohoContract:
    if not SPEC_DIR.is_dir():
        if required_in_ci():
            pytest.fail(SPECS_MISSING)
        pytest.skip(SPECS_MISSING)
    return ZohoContract()


def test_missing_specs_fail_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert required_in_ci()
    monkeypatch.delenv("CI")
    assert not required_in_ci()


def request(method: str, path: str, body: Any = None, headers: Any = None, **params: str):
    return httpx.Request(
        method,
        f"{API}{path}",
        params=params or None,
        json=body,
        headers=AUTH if headers is None else headers,
    )


CALL = {
    "Subject": "Outbound call to +7 950 222-29-19",
    "Call_Type": "Outbound",
    "Call_Start_Time": "2026-05-28T20:24:11+00:00",
    "Call_Duration": "02:15",
    "Who_Id": {"id": "4150868000001000001"},
}


def test_the_adapters_requests_are_valid(specs):
    assert specs.validate(request("GET", "/crm/v8/Contacts/search", phone="+79502222919")) == (
        "Search Records"
    )
    assert specs.validate(request("POST", "/crm/v8/Calls", {"data": [CALL]})) == "Create Records"
    upsert = {"data": [CALL], "duplicate_check_fields": ["PBX_Call_ID"]}
    assert specs.validate(request("POST", "/crm/v8/Calls/upsert", upsert)) == "Upsert Records"


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        (request("POST", "/crm/v8/Calls", {"records": [CALL]}), "records"),
        (request("POST", "/crm/v8/Calls", {"data": CALL}), "array"),
        (request("POST", "/crm/v8/Calls", {"data": [CALL], "trigger": "workflow"}), "array"),
        (request("GET", "/crm/v8/Contacts/search", phone="1", exact="true"), "exact"),
        (request("GET", "/crm/v8/Contacts/search", phone="1", per_page="ten"), "per_page"),
        (request("PATCH", "/crm/v8/Calls", {"data": [CALL]}), "no such operation"),
        (
            request(
                "GET", "/crm/v8/Contacts/search", headers={"Authorization": "Bearer x"}, phone="1"
            ),
            "Zoho-oauthtoken",
        ),
    ],
)
def test_the_contract_rejects_a_bad_request(specs, bad, needle):
    with pytest.raises(ContractViolation, match=needle):
        specs.validate(bad)


OK = {
    "data": [
        {
            "code": "SUCCESS",
            "details": {
                "Modified_Time": "2026-05-28T22:26:41+02:00",
                "Modified_By": {"name": "Patricia Boyle", "id": "4150868000000225013"},
                "Created_Time": "2026-05-28T22:26:41+02:00",
                "id": "4150868000001000002",
                "Created_By": {"name": "Patricia Boyle", "id": "4150868000000225013"},
            },
            "message": "record added",
            "status": "success",
        }
    ]
}


def test_answers_are_checked_against_the_documented_schema(specs):
    create = request("POST", "/crm/v8/Calls", {"data": [CALL]})
    assert specs.validate_answer(create, httpx.Response(201, json=OK)) == "Create Records"
    refused = {
        "data": [
            {
                "code": "MANDATORY_NOT_FOUND",
                "details": {"api_name": "Subject", "json_path": "$.data[0].Subject"},
                "message": "required field not found",
                "status": "error",
            }
        ]
    }
    assert specs.validate_answer(create, httpx.Response(400, json=refused))
    search = request("GET", "/crm/v8/Leads/search", phone="+79502222919")
    assert specs.validate_answer(search, httpx.Response(204))
    numeric_id = {"data": [{**OK["data"][0], "details": {"id": 4150868000001000002}}]}
    with pytest.raises(ContractViolation):
        specs.validate_answer(create, httpx.Response(201, json=numeric_id))
    with pytest.raises(ContractViolation):
        specs.validate_answer(create, httpx.Response(201, json={"data": [{"id": "1", "ok": True}]}))
    with pytest.raises(ContractViolation, match="204"):
        specs.validate_answer(search, httpx.Response(204, content=b"{}"))
