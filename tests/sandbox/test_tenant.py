"""The sandbox's own ISIN check digits (ISO 6166), against published ISINs and the client's
check (``upvest_async.validation``), and the account ids it hands to users' tests."""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upvest_async.sandbox import Sandbox
from upvest_async.sandbox.tenant import Tenant, isin_check_digit, make_isin
from upvest_async.validation import isin_check_digit_ok

#: ISINs as their issuers publish them (Apple, Siemens, iShares Core MSCI World, BP, Microsoft,
#: Nestlé, Toyota).
PUBLISHED = ("US0378331005", "DE0007236101", "IE00B4L5Y983", "GB0007980591", "US5949181045",
             "CH0038863350", "JP3633400001")


@pytest.mark.parametrize("isin", PUBLISHED)
def test_published_isins_get_their_check_digit(isin: str) -> None:
    assert isin_check_digit(isin[:-1]) == isin[-1]


@given(st.from_regex(r"[A-Z]{2}[0-9A-Z]{9}", fullmatch=True))
def test_the_sandbox_and_the_client_agree_on_every_check_digit(body: str) -> None:
    digit = isin_check_digit(body)
    assert isin_check_digit_ok(body + digit)
    assert not any(isin_check_digit_ok(body + other) for other in "0123456789" if other != digit)


@pytest.mark.parametrize("char", ["a", "-", " ", "٣", "É"])
def test_a_character_outside_digits_and_capitals_is_refused(char: str) -> None:
    with pytest.raises(ValueError, match="not an ISIN character"):
        isin_check_digit("US03783310" + char)


def test_generated_isins_are_valid() -> None:
    rng = random.Random(3)
    for _ in range(200):
        isin = make_isin(rng)
        assert len(isin) == 12 and isin_check_digit(isin[:-1]) == isin[-1]
    tenant = Tenant(accounts=2, positions_per_account=30, seed=4)
    isins = [p["instrument"]["isin"] for p in tenant.positions(tenant.account_ids[0])
             if "isin" in p["instrument"]]
    assert isins and all(isin_check_digit_ok(isin) for isin in isins)


def test_account_ids_are_canonical_uuid_text_and_a_copy() -> None:
    sandbox = Sandbox(accounts=3, positions_per_account=1, seed=9)
    ids = sandbox.account_ids
    assert ids == sorted(ids) and len(ids) == 3
    assert all(type(i) is str and str(uuid.UUID(i)) == i for i in ids)
    ids.clear()
    assert len(sandbox.account_ids) == 3
