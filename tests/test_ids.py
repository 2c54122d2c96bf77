"""The one rule for identifiers (``upvest_async.ids``): a uuid is read only from its canonical
8-4-4-4-12 text, either case, and never as another uuid.

Hypothesis: for any text (random, and canonical uuids with characters inserted, removed or
replaced, wrapped, upper-cased), every reader either refuses it or returns the uuid whose
canonical text is ``text.lower()``. Then the explicit forms ``uuid.UUID`` reads loosely, and
end to end over loopback servers: a positions page with a bad id is a
``ResponseValidationError`` naming the field through every decode path (typed list, export,
``export_records``), a webhook event with a bad id is refused naming the field, and a bad id
given by the user is refused before anything is sent.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.hostile import ACCOUNT, INSTRUMENT, POSITION, Hostile, page, running_hostile
from support.keys import p521_key, pem
from support.webhooks_signer import KEY_ID, batch, event, position, sign

from upvest_async import (
    ConfigurationError,
    InvalidInputError,
    Position,
    ResponseValidationError,
    UpvestClient,
    WebhookEvent,
    WebhookPayloadError,
    WebhookVerifier,
    webhook_app,
)
from upvest_async.cli.preflight import PreflightError, read_accounts
from upvest_async.ids import UUID_PATTERN, api_uuid, user_uuid, user_uuid_text
from upvest_async.validation import check_allocation_items, check_uuid, instrument_path_id
from upvest_async.webhooks import parse_batch

CANONICAL = "c5161455-4d27-4781-bc74-f05532e49a77"

# Characters that uuid.UUID (int(..., 16)) or a careless pattern may take: white space of every
# kind, signs, prefixes, braces, separators, digits of other scripts (Arabic-Indic, extended
# Arabic-Indic, Devanagari, full-width, mathematical), full-width letters, and plain hex.
NEAR = ("0123456789abcdefABCDEF-{}:urnid x_+|\n\r\t\x0b\x0c\x1c\x85\xa0\u2028\u3000"
        "\u0660\u0669\u06f0\u0966\uff10\uff19\uff41\U0001d7ce\u00b2")
#: Forms ``uuid.UUID`` reads, each as some uuid (several as *another* uuid), all refused.
LOOSE = [
    " c5161455-4d27-4781-bc74-f05532e49a7",         # a space and 31 digits: 0c516145-...
    "0x0d5e7c-2f1a-4e55-8bd3-1d2f5b3e9a11",         # 0x and 30 digits: 000d5e7c-...
    CANONICAL + "\n",                                # a trailing newline
    "c5161455-4d27-4781-bc74-f05532e49a7\n",        # 31 digits and a newline: another uuid
    " " + CANONICAL,                                 # a leading space
    "\t" + CANONICAL[:-1],
    "{" + CANONICAL + "}",                           # braces
    "urn:uuid:" + CANONICAL,                         # the URN
    "uuid:" + CANONICAL,
    CANONICAL.replace("-", ""),                      # 32 digits without dashes
    "c5161455-4d274781-bc74f05532e49a77--",          # dashes elsewhere
    "+5161455-4d27-4781-bc74-f05532e49a77",          # a sign
    "c516_455-4d27-4781-bc74-f05532e49a77",          # an underscore
    CANONICAL.replace("5", "\u0665"),                # Arabic-Indic digits
    CANONICAL.replace("1", "\uff11"),                # full-width digits
    CANONICAL.replace("4", "\u096a"),                # Devanagari digits
]


def _is_other_uuid(text: str) -> bool:
    """Whether ``uuid.UUID`` reads ``text`` as a uuid whose text is not ``text.lower()``."""
    try:
        return str(uuid.UUID(text)) != text.lower()
    except ValueError:
        return False


def test_the_loose_forms_are_read_by_uuid_uuid_some_as_other_uuids() -> None:
    """The premise: the standard library reads all but two of them (a whole canonical uuid
    with a space or newline is one character too long for it)."""
    unread = [CANONICAL + "\n", " " + CANONICAL]
    for text in LOOSE:
        if text not in unread:
            uuid.UUID(text)
    assert str(uuid.UUID(LOOSE[0])) == "0c516145-54d2-7478-1bc7-4f05532e49a7"
    assert str(uuid.UUID(LOOSE[1])) == "000d5e7c-2f1a-4e55-8bd3-1d2f5b3e9a11"
    assert _is_other_uuid(LOOSE[3])


def _mutated(base: uuid.UUID, edits: list[tuple[int, int, str]], upper: bool,
             wrap: tuple[str, str]) -> str:
    text = str(base).upper() if upper else str(base)
    for position_, removed, inserted in edits:
        at = position_ % (len(text) + 1)
        text = text[:at] + inserted + text[at + removed:]
    return wrap[0] + text + wrap[1]


near_uuids = st.builds(
    _mutated, st.uuids(),
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 2), st.text(NEAR, max_size=2)),
             max_size=3),
    st.booleans(),
    st.sampled_from([("", ""), ("", ""), ("{", "}"), ("urn:uuid:", ""), (" ", ""),
                     ("", "\n"), ("0x", "")]),
)
texts = st.one_of(st.text(), st.text(NEAR, max_size=45), near_uuids,
                  st.uuids().map(lambda u: u.hex), st.uuids().map(str),
                  st.uuids().map(lambda u: str(u).upper()))


@settings(max_examples=3000, deadline=None)
@given(texts)
@example(LOOSE[0])
@example(LOOSE[1])
def test_api_ids_are_refused_or_read_as_themselves(text: str) -> None:
    try:
        parsed = api_uuid(text)
    except ValueError:
        assert UUID_PATTERN.fullmatch(text) is None
        return
    assert str(parsed) == text.lower()
    assert len(text) == 36 and text.isascii()


@settings(max_examples=3000, deadline=None)
@given(texts)
def test_user_ids_are_refused_or_read_as_themselves_in_lower_case(text: str) -> None:
    try:
        parsed = user_uuid(text)
    except ValueError:
        with pytest.raises(InvalidInputError):
            check_uuid("account_id", text)
        with pytest.raises(PreflightError):
            read_accounts([text], None)
        return
    assert str(parsed) == user_uuid_text(text) == check_uuid("account_id", text) == text.lower()
    assert read_accounts([text], None) == [text.lower()]


@settings(max_examples=1000, deadline=None)
@given(texts, st.sampled_from(["", "uuid:", "urn:uuid:"]))
def test_instrument_ids_are_refused_or_their_own_uuid_in_lower_case(text: str,
                                                                     prefix: str) -> None:
    given = prefix + text
    try:
        path_id = instrument_path_id(given)
    except InvalidInputError:
        return
    if path_id.startswith(("isin:", "urn:isin:")):
        assert path_id.endswith(given)
        return
    urn = given.startswith(("uuid:", "urn:uuid:"))
    assert path_id == (given if urn else "uuid:" + given).lower()
    assert api_uuid(path_id.rpartition(":")[2])  # (the uuid's own text, in lower case)


@settings(max_examples=1000, deadline=None)
@given(texts)
def test_upvest_allocation_items_are_refused_or_their_own_uuid_in_lower_case(text: str) -> None:
    item = {"instrument_id": text, "instrument_id_type": "UPVEST", "weight": "1"}
    try:
        sent = check_allocation_items("allocation", [item])
    except InvalidInputError:
        return
    assert sent[0]["instrument_id"] == text.lower()


@pytest.mark.parametrize("text", LOOSE)
def test_the_loose_forms_are_refused_everywhere(text: str) -> None:
    with pytest.raises(ValueError, match="8-4-4-4-12"):
        api_uuid(text)
    with pytest.raises(ValueError):
        user_uuid(text)
    with pytest.raises(InvalidInputError, match="account_id"):
        check_uuid("account_id", text)
    if not text.startswith(("uuid:", "urn:uuid:")):  # (instrument URNs of a canonical uuid)
        with pytest.raises(InvalidInputError, match="instrument_id"):
            instrument_path_id(text)
    with pytest.raises(PreflightError, match="is not an account id"):
        read_accounts([text], None)
    with pytest.raises(ConfigurationError, match="client_id"):
        UpvestClient(client_id=text, client_secret="s", key_id="k", private_key=pem(p521_key()))


@pytest.mark.parametrize("text", [
    CANONICAL, CANONICAL.upper(), "C5161455-4d27-4781-BC74-f05532E49a77",
    "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
])
def test_the_canonical_layout_is_accepted_in_either_case(text: str) -> None:
    assert str(api_uuid(text)) == text.lower()
    assert user_uuid_text(text) == check_uuid("account_id", text) == text.lower()
    assert read_accounts([text], None) == [text.lower()]
    client = UpvestClient(client_id=text, client_secret="s", key_id="k",
                          private_key=pem(p521_key()))
    assert client.client_id == text.lower()


def test_other_types() -> None:
    value = uuid.UUID(CANONICAL)
    assert user_uuid(value) is value and user_uuid_text(value) == CANONICAL

    class Sub(uuid.UUID):
        def __str__(self) -> str:
            return "not the uuid"

    assert type(user_uuid(Sub(CANONICAL))) is uuid.UUID
    assert user_uuid_text(Sub(CANONICAL)) == CANONICAL

    class Text(str):
        def lower(self) -> str:
            return "not the uuid"

    assert user_uuid_text(Text(CANONICAL.upper())) == CANONICAL
    for value in (None, 5, CANONICAL.encode(), uuid.UUID(CANONICAL).int, [CANONICAL]):
        with pytest.raises(ValueError, match="expected a uuid string"):
            api_uuid(value)
        with pytest.raises(TypeError):
            user_uuid(value)
        with pytest.raises(InvalidInputError):
            check_uuid("account_id", value)


def test_instrument_path_forms() -> None:
    upper = "CCB86937-8A39-4160-8D33-85BF9E902321"
    assert instrument_path_id(upper) == "uuid:" + upper.lower()
    assert instrument_path_id("uuid:" + upper) == "uuid:" + upper.lower()
    assert instrument_path_id("urn:uuid:" + upper) == "urn:uuid:" + upper.lower()
    assert instrument_path_id(uuid.UUID(upper)) == "uuid:" + upper.lower()
    assert instrument_path_id("isin:US0378331005") == "isin:US0378331005"
    assert instrument_path_id("urn:isin:US0378331005") == "urn:isin:US0378331005"
    assert instrument_path_id("US0378331005") == "isin:US0378331005"
    for text in ("uuid:" + upper.replace("-", ""), "uuid:{" + upper + "}", "uuid: " + upper,
                 "uuid:" + upper + "\n", "urn:uuid:" + upper.replace("-", "")):
        with pytest.raises(InvalidInputError):
            instrument_path_id(text)


def test_an_accounts_file_strips_only_the_lines_white_space(tmp_path: Path) -> None:
    path = tmp_path / "accounts.txt"
    other = "03fa4c8a-fe37-4aa2-a056-c844281706b0"
    path.write_text(f"  {CANONICAL.upper()}\t # a comment\r\n\u00a0{other}\u2028\n",
                    encoding="utf-8")
    assert read_accounts([], path) == [CANONICAL, other]
    path.write_text(f"{{{CANONICAL}}}\n", encoding="utf-8")
    with pytest.raises(PreflightError, match=r"accounts\.txt:1"):
        read_accounts([], path)
    path.write_text(f"{CANONICAL}\n{CANONICAL.upper()}\n", encoding="utf-8")
    with pytest.raises(PreflightError, match="listed twice"):
        read_accounts([], path)


# --- end to end: pages from a loopback server -------------------------------------------------


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    async with running_hostile() as server:
        yield server


async def _list(client: UpvestClient) -> list[Any]:
    return [p async for p in client.positions.list(ACCOUNT)]


async def _export(client: UpvestClient) -> list[Any]:
    return [p async for p in client.positions.export([ACCOUNT])]


async def _export_records(client: UpvestClient) -> list[Any]:
    return [r async for _, rs in client.positions.export_records([ACCOUNT]) for r in rs]


DECODERS: dict[str, Callable[[UpvestClient], Awaitable[list[Any]]]] = {
    "list": _list, "export": _export, "export_records": _export_records,
}
OTHER_INSTRUMENTS = ["6f1f5f0e-3c7a-4c55-9a0e-1b2c3d4e5f60", "7a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d",
                     "8b3c4d5e-6f7a-4b2c-9d3e-4f5a6b7c8d9e"]
BAD_IDS = [LOOSE[0], LOOSE[1], LOOSE[2], LOOSE[13], "{" + CANONICAL + "}"]


def _page_body(items: list[dict[str, Any]], shape: str) -> bytes:
    document = page(items)
    if shape == "links":  # another top-level key (ignored)
        document["links"] = {"next": None}
    return json.dumps(document).encode()


def _with(field: str, value: str, item: dict[str, Any] = POSITION) -> dict[str, Any]:
    if field == "account_id":
        return {**item, "account_id": value}
    return {**item, "instrument": {**item["instrument"], "uuid": value}}


@pytest.mark.parametrize("shape", ["page", "links"])
@pytest.mark.parametrize("decoder", sorted(DECODERS))
async def test_a_bad_id_in_a_page_is_named_through_every_decode_path(
    hostile: Hostile, decoder: str, shape: str
) -> None:
    fields = {"account_id": "account_id", "instrument.uuid": "instrument.uuid"}
    cases = [(field, bad, index) for field in fields for bad in BAD_IDS for index in (0, 2)]
    async with hostile.client() as client:
        for field, bad, index in cases:
            items = [_with("instrument.uuid", instrument) for instrument in OTHER_INSTRUMENTS]
            items[index] = _with(field, bad, items[index])
            body = _page_body(items, shape)

            async def answer(_: web.Request, body: bytes = body) -> web.StreamResponse:
                return web.Response(body=body, content_type="application/json")

            hostile.api = answer
            with pytest.raises(ResponseValidationError) as caught:
                await DECODERS[decoder](client)
            assert caught.value.path == f"$[{index}].{fields[field]}", (field, bad)
            assert "UUID" in str(caught.value)


async def test_a_bad_id_in_a_single_position_is_named(hostile: Hostile) -> None:
    async with hostile.client() as client:
        for field in ("account_id", "instrument.uuid"):
            for bad in BAD_IDS:
                hostile.api = _json_answer(_with(field, bad))
                with pytest.raises(ResponseValidationError) as caught:
                    await client.positions.retrieve(ACCOUNT, INSTRUMENT)
                assert caught.value.path == f"$.{field}"


def _json_answer(document: Any) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def answer(_: web.Request) -> web.StreamResponse:
        return web.json_response(document)

    return answer


@pytest.mark.parametrize("shape", ["page", "links"])
@pytest.mark.parametrize("decoder", sorted(DECODERS))
async def test_upper_case_ids_are_read_as_the_same_uuids(
    hostile: Hostile, decoder: str, shape: str
) -> None:
    upper = {**POSITION, "account_id": ACCOUNT.upper(),
             "instrument": {**POSITION["instrument"], "uuid": INSTRUMENT.upper()}}
    other = _with("instrument.uuid", OTHER_INSTRUMENTS[0])
    body = _page_body([upper, other], shape)

    async def answer(_: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    hostile.api = answer
    async with hostile.client() as client:
        delivered = await DECODERS[decoder](client)
    if decoder == "export_records":  # the API's own values, validated
        assert [r["account_id"] for r in delivered] == [ACCOUNT.upper(), ACCOUNT]
    else:
        assert [p.account_id for p in delivered] == [uuid.UUID(ACCOUNT)] * 2
        assert [p.instrument.uuid for p in delivered] == [uuid.UUID(INSTRUMENT),
                                                          uuid.UUID(OTHER_INSTRUMENTS[0])]
        assert all(type(p) is Position for p in delivered)


async def test_a_bad_id_given_by_the_user_is_refused_before_anything_is_sent(
    hostile: Hostile,
) -> None:
    async with hostile.client() as client:
        for bad in LOOSE:
            with pytest.raises(InvalidInputError, match="account_id"):
                await _list_of(client, bad)
            with pytest.raises(InvalidInputError, match="account_id"):
                [p async for p in client.positions.export([ACCOUNT, bad])]
            if not bad.startswith(("uuid:", "urn:uuid:")):  # (instrument URNs)
                with pytest.raises(InvalidInputError, match="instrument_id"):
                    await client.positions.retrieve(ACCOUNT, bad)
    assert hostile.api_requests == [] and hostile.token_requests == 0


async def _list_of(client: UpvestClient, account: str) -> list[Position]:
    return [p async for p in client.positions.list(account)]


# --- end to end: webhook events -----------------------------------------------------------------

KEY = p521_key()
HOOK_PATH = "/hooks/upvest"
WEBHOOK_CASES = [
    ({"id": bad}, "$.payload[1].id") for bad in BAD_IDS
] + [
    ({"webhook_id": bad}, "$.payload[1].webhook_id") for bad in BAD_IDS
] + [
    ({"object": position(account_id=bad)}, "$.payload[1].object.account_id") for bad in BAD_IDS
] + [
    ({"object": position(instrument={"uuid": bad})}, "$.payload[1].object.instrument.uuid")
    for bad in BAD_IDS
]


@pytest.mark.parametrize(("change", "path"), WEBHOOK_CASES)
def test_a_bad_id_in_a_webhook_event_is_named(change: dict[str, Any], path: str) -> None:
    body = batch(event("POSITION.UPDATED", position()),
                 {**event("POSITION.UPDATED", position()), **change})
    with pytest.raises(WebhookPayloadError) as caught:
        parse_batch(body)
    assert caught.value.path == path


def test_an_upper_case_event_id_is_the_same_event() -> None:
    lower = str(uuid.uuid4())
    events = parse_batch(batch(event("X.Y", {}, event_id=lower.upper())))
    assert str(events[0].id) == lower and events[0].raw["id"] == lower.upper()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_uuids)
def test_an_event_id_is_refused_or_its_own(text: str) -> None:
    try:
        events = parse_batch(batch({**event("X.Y", {}), "id": text}))
    except WebhookPayloadError as exc:
        assert exc.path == "$.payload[0].id" and UUID_PATTERN.fullmatch(text) is None
        return
    assert str(events[0].id) == text.lower()


async def test_the_receiver_refuses_a_signed_batch_with_a_bad_event_id() -> None:
    handled: list[WebhookEvent] = []

    async def on_event(received: WebhookEvent, tx: object) -> None:
        handled.append(received)

    verifier = WebhookVerifier({KEY_ID: KEY.public_key()})
    runner = web.AppRunner(webhook_app(on_event, verifier, path=HOOK_PATH), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}{HOOK_PATH}"
        async with aiohttp.ClientSession() as session:
            for change, _ in WEBHOOK_CASES[::5]:
                body = batch(event("POSITION.UPDATED", position()),
                             {**event("POSITION.UPDATED", position()), **change})
                headers = sign(body, key=KEY, created=int(time.time()), path=HOOK_PATH)
                async with session.post(url, data=body, headers=headers) as response:
                    assert response.status == 400
            good = batch(event("POSITION.UPDATED", position()))
            headers = sign(good, key=KEY, created=int(time.time()), path=HOOK_PATH)
            async with session.post(url, data=good, headers=headers) as response:
                assert response.status == 200
    finally:
        await runner.cleanup()
    assert len(handled) == 1
