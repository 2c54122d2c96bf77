"""The one rule for reading identifiers (uuids), from the API and from users.

**The form.** A uuid is read only from its canonical text (the layout of RFC 9562, section 4,
https://www.rfc-editor.org/rfc/rfc9562#section-4): exactly 36 characters, 32 hexadecimal
digits in groups of 8-4-4-4-12 separated by ``-``, each digit ASCII ``0``-``9``, ``a``-``f``
or ``A``-``F`` (either case, also mixed). The version and variant digits are not checked here;
a field whose API pattern restricts them checks that on top (:mod:`upvest_async.validation`).

**Nothing else is read as a uuid.** Refused are: white space anywhere (a leading space, a
trailing newline), braces, ``urn:uuid:``, 32 digits without dashes, dashes elsewhere, a ``0x``
or ``+`` prefix, underscores, digits of other scripts (Arabic-Indic, full-width). Python's
``uuid.UUID(text)`` takes all of these: it drops braces, ``urn:uuid:`` and every dash and gives
the rest to ``int(text, 16)``, which also takes surrounding white space, ``0x``, ``_`` and any
Unicode digit. So ``" c5161455-4d27-4781-bc74-f05532e49a7"`` (a space and 31 digits) and
``"0x0d5e7c-2f1a-4e55-8bd3-1d2f5b3e9a11"`` decode to *other* uuids. Under this rule, a text
is either refused or read as the uuid whose canonical text is ``text.lower()``.

- **From the API** (:func:`api_uuid`): every uuid field of every response model and webhook
  event, through the package converter; a value that breaks the rule is a
  :class:`~upvest_async.ResponseValidationError` naming the field (``$[3].account_id``), or
  in a webhook body a :class:`~upvest_async.WebhookPayloadError` (``$.payload[0].id``).
- **From a user** (:func:`user_uuid`, :func:`user_uuid_text`): method arguments (``account_id``
  and every other id, an instrument's ``uuid:<UUID>``), ``UpvestClient(client_id=...)``,
  ``--account`` and the lines of ``--accounts-file``. The same rule; a
  :class:`uuid.UUID` object is taken as it is. What is sent or compared is the lower-case
  canonical text. An accounts file's lines have their surrounding white space stripped before
  the id is read (the line's, not part of the id); a ``--account`` value or an argument is
  read as given.

Positions pages, typed or as the export's records, are read through the converter's one
hook for positions (:mod:`upvest_async.converter`), which reads every uuid with
:func:`api_uuid`.
"""

from __future__ import annotations

import re
import uuid

__all__ = ["UUID_PATTERN", "UUID_SOURCE", "api_uuid", "user_uuid", "user_uuid_text"]

#: The canonical layout, either case (a regular expression source; use with ``fullmatch``:
#: ``$`` would also match before a trailing newline, and ``\d`` any Unicode digit).
UUID_SOURCE = (r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
               r"-[0-9a-fA-F]{12}")
#: :data:`UUID_SOURCE` compiled; only ever used with ``fullmatch``.
UUID_PATTERN = re.compile(UUID_SOURCE)

_RULE = "8-4-4-4-12 hex digits"


def _preview(value: object) -> str:
    if isinstance(value, str):
        return f"{value!r:.50}"
    return type(value).__name__


def _match(value: str) -> uuid.UUID | None:
    match = UUID_PATTERN.fullmatch(value)
    # (group(): the matched characters as a plain str, even for a str subclass)
    return None if match is None else uuid.UUID(match.group())


def api_uuid(value: object) -> uuid.UUID:
    """The :class:`uuid.UUID` of ``value``, a uuid string from an API response.

    Accepts only a ``str`` in the canonical 8-4-4-4-12 layout, either case (see the module
    docs). Raises ``ValueError`` naming what was received otherwise (the converter turns it
    into a :class:`~upvest_async.ResponseValidationError` with the field path).
    """
    if isinstance(value, str):
        parsed = _match(value)
        if parsed is not None:
            return parsed
        raise ValueError(f"expected a uuid ({_RULE}), got {_preview(value)}")
    raise ValueError(f"expected a uuid string, got {type(value).__name__}")


def user_uuid(value: object) -> uuid.UUID:
    """The :class:`uuid.UUID` of an id a user gave: a :class:`uuid.UUID`, or a ``str`` in the
    canonical 8-4-4-4-12 layout, either case (see the module docs).

    Raises ``TypeError`` for any other type, ``ValueError`` for any other text.
    """
    if isinstance(value, uuid.UUID):
        return value if type(value) is uuid.UUID else uuid.UUID(int=value.int)
    if not isinstance(value, str):
        raise TypeError(f"expected a uuid, got {type(value).__name__}")
    parsed = _match(value)
    if parsed is None:
        raise ValueError(f"expected a uuid ({_RULE}), got {_preview(value)}")
    return parsed


def user_uuid_text(value: object) -> str:
    """:func:`user_uuid` as its canonical lower-case text (``"c5161455-4d27-...-f05532e49a77"``);
    raises as :func:`user_uuid` does."""
    return str(user_uuid(value))
