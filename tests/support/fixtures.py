"""The recorded data under ``tests/fixtures/``: the response examples of Upvest's API reference
(``api_response_examples.json``, E1 to E17 of docs/guides/api-readings.md) and the requests
signed by Upvest's own v6 webhook signer (``webhooks_v6/``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WEBHOOKS_V6 = FIXTURES / "webhooks_v6"

#: Each example: ``{"endpoint": "E16", "source": ..., "body": ...}``.
EXAMPLES: list[dict[str, Any]] = json.loads(
    (FIXTURES / "api_response_examples.json").read_text()
)["examples"]
