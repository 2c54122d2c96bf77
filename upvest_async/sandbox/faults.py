"""Fault injection for the sandbox: an unreliable network and server, deterministic from a seed.

:class:`Faults` says what may go wrong and how often; :class:`FaultInjector` decides, request by
request, what does. The sandbox's fault middleware (:mod:`.middlewares`) applies the decision.

Semantics:

- *Which requests.* Faults apply to every API request that passed the signature, token and
  scope checks (a request refused with 401/403/406 is answered normally and draws nothing), and
  to ``POST /auth/token`` only with ``fault_token_endpoint=True``.
- *Kinds* (one per request at most, the exclusive rates add up to at most 1):

  - ``"500"``, ``"502"``, ``"503"`` (``server_error_rate``, status picked uniformly): a problem
    answer before the handler runs, so nothing happens;
  - ``"429"`` (``rate_limit_rate``): a problem answer before the handler runs, with
    ``Retry-After: <rate_limit_retry_after>`` (delta-seconds) or, with
    ``retry_after_http_date=True`` on about half of them, an HTTP-date at least that many
    seconds ahead (rounded up to the next whole second);
  - ``"reset"`` (``reset_rate``): the connection is aborted (TCP RST) before the handler runs,
    without an answer;
  - ``"lost-drop"`` / ``"lost-504"`` (``lost_response_rate``, only POST/PUT/PATCH/DELETE;
    ``lost_response_mode`` ``"drop"``, ``"504"`` or ``"mixed"``, half and half): the handler
    runs, so the mutation happens and its answer is stored for its ``idempotency-key``; then
    the connection is aborted without an answer, or a 504 problem is sent instead of the
    answer. Only a retry with the same key recovers the original result. A GET that draws
    this range gets no fault;
  - ``"slow"`` (``slow_rate``): the handler runs and its answer is held back
    ``slow_seconds`` seconds.

- *Determinism.* One :class:`random.Random` seeded with ``seed`` makes exactly two draws per
  eligible request (which fault; its detail: status, mode, date form) in the order the
  requests reach the fault middleware. Sequential traffic therefore sees the same faults on
  every run; with concurrent requests the arrival order, and so which request gets which
  fault, may vary from run to run, while the fault counts over a run stay statistically the
  same.
- *Script.* ``script`` lists fault kinds (``FAULT_KINDS``, plus ``"none"`` and
  ``"429-date"``) for the first eligible requests in arrival order, one entry each, before the
  random rates take over; e.g. ``script=("429",)`` rate-limits exactly the first API call. A
  ``"lost-*"`` entry on a GET means no fault. Scripted requests make no draws.
"""

from __future__ import annotations

import random
from typing import Final, Literal

import attrs

__all__ = [
    "FAULT_KINDS",
    "MUTATING_METHODS",
    "SCRIPT_KINDS",
    "FaultDecision",
    "FaultInjector",
    "Faults",
    "LostMode",
]

FAULT_KINDS: Final = ("500", "502", "503", "429", "reset", "lost-drop", "lost-504", "slow")
"""Every kind of fault, as counted in ``SandboxCounters.faults`` and journaled in
``JournalEntry.fault``."""
#: What a :attr:`Faults.script` entry may say.
SCRIPT_KINDS: Final = frozenset(FAULT_KINDS) | {"none", "429-date"}
#: Methods whose responses may be lost (the mutation happens first).
MUTATING_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})

LostMode = Literal["drop", "504", "mixed"]

def _rate(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{attribute.name} must be a number, got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a fraction between 0 and 1, got {value!r}")


def _check_script(_: object, __: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]) -> None:
    unknown = sorted(set(value) - SCRIPT_KINDS)
    if unknown:
        raise ValueError(f"script: unknown fault kinds {unknown}; use {sorted(SCRIPT_KINDS)}")


@attrs.frozen
class Faults:
    """What the sandbox injects (see the module docs for the exact semantics).

    Rates are fractions of eligible requests in ``0..1``; ``server_error_rate``,
    ``rate_limit_rate``, ``reset_rate``, ``lost_response_rate`` and ``slow_rate`` are exclusive
    and must add up to at most 1. ``rate_limit_retry_after``: whole seconds sent in
    ``Retry-After`` (>= 0); ``retry_after_http_date``: send about half of them as an HTTP-date;
    ``lost_response_mode``: ``"drop"``, ``"504"`` or ``"mixed"``; ``slow_seconds``: seconds a
    slow answer is held back (>= 0); ``fault_token_endpoint``: fault ``POST /auth/token`` too;
    ``script``: fault kinds for the first eligible requests; ``seed``: seeds the draws.

    Raises :class:`ValueError` (or :class:`TypeError`) for out-of-range values.
    ``Faults()`` injects nothing.
    """

    seed: int = attrs.field(default=0, validator=attrs.validators.instance_of(int))
    server_error_rate: float = attrs.field(default=0.0, validator=_rate)
    rate_limit_rate: float = attrs.field(default=0.0, validator=_rate)
    rate_limit_retry_after: int = attrs.field(
        default=1, validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)]
    )
    retry_after_http_date: bool = attrs.field(
        default=False, validator=attrs.validators.instance_of(bool)
    )
    reset_rate: float = attrs.field(default=0.0, validator=_rate)
    lost_response_rate: float = attrs.field(default=0.0, validator=_rate)
    lost_response_mode: LostMode = attrs.field(
        default="mixed", validator=attrs.validators.in_(("drop", "504", "mixed"))
    )
    slow_rate: float = attrs.field(default=0.0, validator=_rate)
    slow_seconds: float = attrs.field(
        default=1.0,
        validator=[attrs.validators.instance_of((int, float)), attrs.validators.ge(0)],
    )
    fault_token_endpoint: bool = attrs.field(
        default=False, validator=attrs.validators.instance_of(bool)
    )
    script: tuple[str, ...] = attrs.field(default=(), converter=tuple, validator=_check_script)

    def __attrs_post_init__(self) -> None:
        if self.total_rate > 1.0 + 1e-9:
            raise ValueError(f"the fault rates add up to {self.total_rate:g}, more than 1")

    @property
    def total_rate(self) -> float:
        """The sum of the exclusive rates (at most 1)."""
        return (self.server_error_rate + self.rate_limit_rate + self.reset_rate
                + self.lost_response_rate + self.slow_rate)

    @property
    def active(self) -> bool:
        """Whether anything can be injected at all."""
        return self.total_rate > 0 or bool(self.script)


@attrs.frozen
class FaultDecision:
    """What happens to one request: ``kind`` (one of :data:`FAULT_KINDS`), ``status`` (the
    answer's status for ``500``/``502``/``503``/``429``/``lost-504``, else 0),
    ``retry_after_date`` (a 429 whose ``Retry-After`` is an HTTP-date)."""

    kind: str
    status: int = 0
    retry_after_date: bool = False


class FaultInjector:
    """Draws a :class:`FaultDecision` for each eligible request of one :class:`Faults`."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._script = list(reversed(faults.script))

    def applies_to(self, *, is_token_request: bool) -> bool:
        """Whether a request (that passed authentication) is eligible for faults."""
        return self.faults.active and (not is_token_request or self.faults.fault_token_endpoint)

    def decide(self, method: str) -> FaultDecision | None:
        """The fault for the next eligible request (``method`` upper-case), ``None`` for none."""
        mutating = method.upper() in MUTATING_METHODS
        if self._script:
            return self._scripted(self._script.pop(), mutating)
        faults = self.faults
        point, detail = self._rng.random(), self._rng.random()
        for kind, rate in (
            ("server_error", faults.server_error_rate),
            ("rate_limit", faults.rate_limit_rate),
            ("reset", faults.reset_rate),
            ("lost", faults.lost_response_rate),
            ("slow", faults.slow_rate),
        ):
            if point < rate:
                return self._build(kind, detail, mutating)
            point -= rate
        return None

    def _build(self, kind: str, detail: float, mutating: bool) -> FaultDecision | None:
        faults = self.faults
        if kind == "server_error":
            status = (500, 502, 503)[min(int(detail * 3), 2)]
            return FaultDecision(str(status), status)
        if kind == "rate_limit":
            return FaultDecision("429", 429, faults.retry_after_http_date and detail < 0.5)
        if kind == "reset":
            return FaultDecision("reset")
        if kind == "lost":
            if not mutating:
                return None
            mode = faults.lost_response_mode
            if mode == "mixed":
                mode = "drop" if detail < 0.5 else "504"
            return FaultDecision("lost-drop") if mode == "drop" else FaultDecision("lost-504", 504)
        return FaultDecision("slow")

    @staticmethod
    def _scripted(kind: str, mutating: bool) -> FaultDecision | None:
        if kind == "none" or (kind.startswith("lost-") and not mutating):
            return None
        if kind in {"500", "502", "503"}:
            return FaultDecision(kind, int(kind))
        if kind in {"429", "429-date"}:
            return FaultDecision("429", 429, kind == "429-date")
        if kind == "lost-504":
            return FaultDecision(kind, 504)
        return FaultDecision(kind)
