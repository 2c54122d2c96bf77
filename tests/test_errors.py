"""The error hierarchy (``upvest_async.errors``): the two families a caller tells apart, input
refused before sending and answers refused after receiving, exported from the package."""

from __future__ import annotations

import pytest

import upvest_async
from upvest_async import (
    APIConnectionError,
    APIStatusError,
    InvalidInputError,
    InvalidResponseError,
    PaginationError,
    ResponseTooLargeError,
    ResponseValidationError,
    UpvestError,
)


def test_input_errors_are_value_errors_and_not_response_errors() -> None:
    error = InvalidInputError("account_id", "must be a UUID")
    assert isinstance(error, UpvestError) and isinstance(error, ValueError)
    assert not isinstance(error, InvalidResponseError)
    assert (error.field, error.rule, str(error)) == ("account_id", "must be a UUID",
                                                     "account_id: must be a UUID")


@pytest.mark.parametrize("error", [
    ResponseValidationError("quantity: not a decimal", path="$[3].quantity", request_id="r-1"),
    ResponseTooLargeError("GET /x: response exceeds 1024 bytes"),
    PaginationError("malformed page", path="/x", offset=10, request_id="r-2"),
])
def test_every_error_about_an_answer_is_an_invalid_response_error(error: UpvestError) -> None:
    assert isinstance(error, InvalidResponseError)
    assert not isinstance(error, InvalidInputError | ValueError | APIStatusError
                          | APIConnectionError)
    assert error.request_id in (None, "r-1", "r-2")


def test_the_package_exports_the_new_names_and_not_the_old_one() -> None:
    for name in ("InvalidInputError", "InvalidResponseError"):
        assert name in upvest_async.__all__ and hasattr(upvest_async, name)
    assert "ValidationError" not in upvest_async.__all__
    assert not hasattr(upvest_async, "ValidationError")
