"""schemathesis against the app's own OpenAPI document: no generated request gets a 5xx.

Bounded so CI stays fast: a few examples per operation, valid and invalid
data, against the app in-process with the token set.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from fuseline_nb.broker import MemoryBroker  # noqa: E402
from fuseline_nb.broker.http import create_app  # noqa: E402

TOKEN = "schemathesis-token-0123456789"
app = create_app(MemoryBroker(lease_seconds=5), token=TOKEN)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_server_error(case) -> None:
    if case.query and isinstance(case.query.get("wait"), int | float):
        case.query["wait"] = min(case.query["wait"], 0.05)  # keep valid long-polls short
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    case.validate_response(response, checks=[not_a_server_error])
