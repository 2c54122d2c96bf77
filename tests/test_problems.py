"""Non-2xx answers (``upvest_async.problems``): the problem details of a body (RFC 9457) and
the error class chosen by status and problem ``type``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upvest_async import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    IdempotencyKeyInProgressError,
    IdempotencyKeyReusedError,
    InternalServerError,
    NotAcceptableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)
from upvest_async.problems import parse_problem, status_error


def _error(status: int, body: Any = b"", **headers: str) -> APIStatusError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return status_error(status=status, method="GET", path="/x", body=raw, headers=headers)


@pytest.mark.parametrize(("status", "cls"), [
    (400, BadRequestError), (401, AuthenticationError), (403, PermissionDeniedError),
    (404, NotFoundError), (406, NotAcceptableError), (409, ConflictError),
    (422, UnprocessableEntityError), (429, RateLimitError), (500, InternalServerError),
    (503, InternalServerError), (599, InternalServerError), (302, APIStatusError),
    (405, APIStatusError), (418, APIStatusError),
])
def test_the_class_follows_the_status(status: int, cls: type[APIStatusError]) -> None:
    error = _error(status)
    assert type(error) is cls and error.status == status and error.type is None


@pytest.mark.parametrize("problem_type", [
    "idempotency_key_reused", "https://docs.upvest.co/problems/idempotency_key_reused",
    "https://docs.upvest.co/problems/idempotency_key_reused/",
])
def test_an_idempotency_problem_type_selects_its_class_by_its_last_segment(
    problem_type: str
) -> None:
    assert type(_error(422, {"type": problem_type})) is IdempotencyKeyReusedError
    in_progress = problem_type.replace("reused", "in_progress")
    assert type(_error(409, {"type": in_progress})) is IdempotencyKeyInProgressError
    # A problem type only refines the class of its own status.
    assert type(_error(400, {"type": problem_type})) is BadRequestError


def test_the_problem_details_are_parsed_once_into_the_error() -> None:
    error = _error(404, {"type": "not_found", "title": "Not Found", "detail": "no such account",
                         "instance": "/accounts/1", "request_id": "r-1", "status": 404},
                   **{"upvest-request-id": "header-id"})
    assert (error.type, error.title, error.detail, error.instance, error.request_id) == (
        "not_found", "Not Found", "no such account", "/accounts/1", "r-1")
    assert str(error) == "404 on GET /x: no such account (request id r-1)"
    assert _error(404, b"", **{"upvest-request-id": "header-id"}).request_id == "header-id"


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[1, 2]", b'"text"', b"null", b"\xff\xfe", b'{"a": NaN}', b"[" * 5000,
])
def test_a_body_that_is_no_problem_object_gives_no_details(body: bytes) -> None:
    assert parse_problem(body) == {}
    error = _error(500, body)
    assert type(error) is InternalServerError and error.detail is None
    assert str(error) == "500 on GET /x: no problem details"


@given(st.binary(max_size=200))
def test_any_bytes_give_a_dict_and_never_raise(body: bytes) -> None:
    assert isinstance(parse_problem(body), dict)
    assert isinstance(_error(400, body), BadRequestError)
