"""Property-based: schemathesis generates requests from the API's own OpenAPI (valid and
invalid), sent with an admin's key and with a customer's; no answer may be a 5xx or break the
documented response schema. Seeded (the same cases every run), on SQLite, bounded to about
two minutes on the CI machine."""

from __future__ import annotations

import itertools

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import Api

EXAMPLES_PER_OPERATION = 15  # per generation mode


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_generated_requests_never_get_a_server_error(
    api: Api,
    fleet: tuple[str, str],  # master data for the generated ids to meet
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    keys = [api.admin, api.key("customer", "acme")]
    checks = [not_a_server_error, response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 25

    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            for headers in keys:
                case.call_and_validate(headers=headers, checks=checks)

        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            # No parameter or body that could be made invalid (GET /health, say).
            assert mode is GenerationMode.NEGATIVE, operation.label
    # Both keys were let in, to every kind of answer: the run reached the routes' own code.
    answered = {status for (_, status) in api.app.state.requests}
    assert {200, 201, 404, 409, 422} <= answered
