"""``client.portfolios.rebalancings``: rebalancing executions (E14, E15). The bulk
trigger of many accounts is a job above the client: :func:`upvest_async.jobs.trigger_many`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Unpack

from ..errors import InvalidInputError
from ..models import (
    RebalancingExecution,
    TriggeredRebalancing,
)
from ..transport import RequestOptions
from ..validation import (
    check_uuid,
    check_uuid_list,
)
from ._base import Id, Resource

if TYPE_CHECKING:
    from ..client import UpvestClient

__all__ = ["Executions", "Rebalancings"]


class Executions(Resource):
    """``client.portfolios.rebalancings.executions`` (E14, E15)."""

    async def create(
        self,
        *,
        accounts: Iterable[Id] | None = None,
        allocations: Iterable[Id] | None = None,
        idempotency_key: Id | None = None,
        **options: Unpack[RequestOptions],
    ) -> TriggeredRebalancing:
        """Trigger a rebalancing: ``POST /portfolios/rebalancings/executions`` (E14), scope
        ``portfolios:admin``.

        Give exactly one of ``accounts`` (account uuids) or ``allocations`` (allocation uuids),
        non-empty: the reference prints the two shapes without saying whether both may be sent, and
        its examples send one (Q20), so the SDK treats them as mutually exclusive.
        Returns the execution id (:class:`TriggeredRebalancing`).
        """
        if (accounts is None) == (allocations is None):
            raise InvalidInputError("accounts", "give exactly one of accounts or allocations")
        if accounts is not None:
            body = {"accounts": check_uuid_list("accounts", accounts, non_empty=True)}
        else:
            body = {"allocations": check_uuid_list("allocations", allocations, non_empty=True)}
        return await self._call(
            TriggeredRebalancing, "POST", "/portfolios/rebalancings/executions", json_body=body,
            idempotency_key=idempotency_key, options=options,
        )

    async def retrieve(
        self, execution_id: Id, **options: Unpack[RequestOptions]
    ) -> RebalancingExecution:
        """Retrieve a rebalancing execution:
        ``GET /portfolios/rebalancings/executions/{execution_id}`` (E15)."""
        execution = check_uuid("execution_id", execution_id)
        return await self._call(
            RebalancingExecution, "GET", f"/portfolios/rebalancings/executions/{execution}",
            options=options, template="/portfolios/rebalancings/executions/{execution_id}",
        )


class Rebalancings(Resource):
    """``client.portfolios.rebalancings``: ``.executions`` (to trigger many accounts at
    once, see :func:`upvest_async.jobs.trigger_many`)."""

    def __init__(self, client: UpvestClient) -> None:
        super().__init__(client)
        self.executions = Executions(client)
