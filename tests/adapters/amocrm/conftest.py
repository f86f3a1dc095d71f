"""Defaults every amoCRM test shares: amo's answers to the look-ups a test does not care about."""

from __future__ import annotations

import pytest

from adapters.amocrm import fake as amo

COMPANIES = f"{amo.BASE}/api/v4/companies"
ACCOUNT = f"{amo.BASE}/api/v4/account"


@pytest.fixture(autouse=True)
def amo_defaults(no_unmocked_http):
    """No company has the number (amo answers 204) and the account's current user is 555;
    a test that cares mocks the same URL again, which replaces the route."""
    no_unmocked_http.get(COMPANIES, name="companies").mock(return_value=amo.empty_search())
    no_unmocked_http.get(ACCOUNT, name="account").mock(return_value=amo.account())
    return no_unmocked_http
