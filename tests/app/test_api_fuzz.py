"""Schemathesis against the running service's own OpenAPI document (issue 12, part 6): every
operation, fed generated valid and invalid input with a team's token, never answers 5xx, and
answers only the status codes and bodies the document declares (its errors are ErrorBody, not
FastAPI's default 422 shape). Bounded: a fixed number of examples per operation, loopback
only."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import response_schema_conformance, status_code_conformance
from schemathesis.core.failures import FailureGroup

from tests.app.conftest import Service

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 25
CONFORMANCE = [response_schema_conformance, status_code_conformance]


@pytest.fixture(scope="module")
def service(service_factory: Callable[..., Service],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data = tmp_path_factory.mktemp("fuzz")
    yield service_factory(data, f"sqlite:///{data / 'mova_ads.db'}", teams=("fuzz",),
                          worker=False, API_SUBMISSIONS_PER_MINUTE="1000")


def test_every_answer_is_declared_and_none_is_a_server_error(service: Service) -> None:
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5, "the OpenAPI document lists too few operations"
    auth = {"Authorization": f"Bearer {service.tokens['fuzz']}"}
    calls: list[tuple[str, int]] = []
    errors: list[str] = []
    mismatches: list[str] = []  # answers the document does not declare
    for operation in operations:

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(), with_token=st.booleans())
        def call(case: schemathesis.Case, with_token: bool) -> None:
            response = case.call(base_url=service.url, headers=auth if with_token else None,
                                 timeout=30)
            calls.append((case.operation.label, response.status_code))
            if response.status_code >= 500:
                errors.append(f"{case.operation.label} -> {response.status_code}: "
                              f"{response.text[:300]} (body {case.body!r:.300})")
            try:
                case.validate_response(response, checks=CONFORMANCE)
            except FailureGroup as failures:
                mismatches.append(f"{case.operation.label} -> {response.status_code}: "
                                  f"{[f.title for f in failures.exceptions]} "
                                  f"{response.text[:200]} (body {case.body!r:.200})")

        call()
    assert calls, "no request was made"
    statuses = sorted({status for _, status in calls})
    print(f"\nschemathesis: {len(operations)} operations, {len(calls)} requests, "  # noqa: T201
          f"statuses {statuses}, 5xx: {len(errors)}, undeclared: {len(mismatches)}")
    assert not errors, "\n".join(errors[:10])
    assert not mismatches, "\n".join(mismatches[:10])
