"""schemathesis over the web studio's OpenAPI document: generated requests to every operation,
no server error and no response that breaks the schema it publishes. Jobs are queued, never run."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from rotoscope.web.app import create_app
from rotoscope.web.security import Access
from rotoscope.web.uploads import UploadLimits


@pytest.fixture(scope="module")
def app(history_studio: Path):  # type: ignore[no-untyped-def]
    return create_app(
        history_studio,
        Access(token=None, hosts=frozenset({"testserver"}), max_body=1 << 20),  # the ASGI client's host
        run_jobs=False,
        limits=UploadLimits(1 << 20, 1 << 20),
    )


@pytest.fixture(scope="module")
def api_schema(app):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_server_errors_and_responses_match_the_schema(api_schema) -> None:  # type: ignore[no-untyped-def]
    """Every operation, a dozen generated requests each (schemathesis's pytest plugin predates
    pytest 9, so its strategies are driven here with hypothesis directly)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(
                checks=[not_a_server_error, response_schema_conformance, content_type_conformance]
            )

        check()
