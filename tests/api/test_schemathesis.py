"""Schemathesis over our own /openapi.json, as an analyst and as an administrator.

Every operation gets generated requests (valid and invalid) with all of schemathesis' checks: no 5xx,
statuses, content types, bodies and headers as the spec documents them. On top, every error answer must
be problem+json with a stable code. Then the stateful phase: call sequences along the spec's links
(start a job, read its status, its model, predict). The default runs are short and derandomised (a few
examples per operation); `-m slow` runs longer ones.

The app holds the test bank dataset and the demo's (lending, cards; small), an analyst with allocations
on all three, and a trained model.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis import GenerationMode

from gateway.demo_data import demo_datasets
from tests.api.test_rate_limits import close, limited_api, member
from tests.conftest import make_gateway
from tests.training.conftest import _IGNORED  # third-party warnings on training threads (see there)

pytestmark = [pytest.mark.filterwarnings(spec) for spec in _IGNORED]

STABLE_CODES = {
    "invalid_sql", "unsupported_sql", "unknown_table", "unknown_column", "invalid_request", "unauthorized",
    "forbidden", "budget_exhausted", "unknown_dataset", "not_found", "request_in_progress", "rate_limited",
    "method_not_allowed", "request_too_large", "query_timeout", "training_quota", "unavailable",
    "ledger_unavailable", "internal", "internal_error", "target_unsupported", "target_unreachable",
}  # fmt: skip
LOGREG = {"dataset": "bank", "table": "cust", "label": "segment", "positive": "private", "method": "logreg", "epsilon": 0.5}
SHORT = hypothesis.settings(
    max_examples=5, derandomize=True, deadline=None, database=None,
    suppress_health_check=list(HealthCheck), phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
)  # fmt: skip
LONG = hypothesis.settings(SHORT, max_examples=50)
DATASETS = ("bank", "lending", "cards")


def _world(tmp_path: Path) -> dict[str, Any]:
    gateway = make_gateway()
    for raw in demo_datasets(tmp_path, transactions_rows=1_000):
        gateway.register(raw)
    api = limited_api(tmp_path, gateway, rate_limit_per_analyst="100000/minute", rate_limit_per_organisation="100000/minute",
                      max_active_jobs_per_analyst=3)  # fmt: skip
    ann = member(api, "ann", "acme", epsilon="50")
    ledger = api.app.extensions["dpgate"]["ledger"]
    for dataset in DATASETS:
        ledger.set_dataset_budget(dataset, epsilon="100000", delta="0.5")  # many principals spend here
        ledger.set_allocation("admin", dataset, epsilon="50", delta="0.0001")
        if dataset != "bank":
            ledger.set_allocation("ann", dataset, epsilon="20", delta="0.0001")
    r = api.client.post("/v1/training-jobs", json=LOGREG, headers=ann)
    assert r.status_code == 202, r.json
    api.app.extensions["dpgate"]["training"].wait(r.json["job_id"], timeout=120)
    return {"api": api, "analyst": ann, "admin": api.admin}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    world = _world(tmp_path_factory.mktemp("schemathesis"))
    yield world
    close(world["api"])


# Where a schema-valid body may still be refused for what it means (SQL the gateway does not support, a
# label the table lacks, rows a model cannot read, an analyst that exists): 400 is an answer there.
SEMANTIC = [
    ("POST", ["/v1/queries", "/v1/queries/preview", "/v1/training-jobs", "/v1/models/{model_id}/predict",
              "/v1/admin/datasets", "/v1/admin/analysts"]),
]  # fmt: skip
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]
# invalid data: schemathesis' list, and 413 (an over-long list can be refused for its size first)
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]


# The sequences of the stateful phase: a job's start, its status, its model and what follows from them.
# Other operations (lists, an analyst's disable or rotate-key, which would follow inferred links from the
# list of analysts to the world's own principals) are fuzzed one by one only.
CHAIN = ["/v1/training-jobs", "/v1/training-jobs/{job_id}", "/v1/training-jobs/{job_id}/cancel", "/v1/models/{model_id}",
         "/v1/models/{model_id}/predict", "/v1/admin/models/{model_id}/audit"]  # fmt: skip


def _schema(world: dict[str, Any], role: str, *, chain_only: bool = False) -> Any:
    operations = [
        {"include-method": method, "include-path": paths,
         "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400"]}}}
        for method, paths in SEMANTIC
    ]  # fmt: skip
    if chain_only:
        operations.append({"exclude-path": CHAIN, "phases": {"stateful": {"enabled": False}}})
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {"headers": dict(world[role]), "operations": operations,
         "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED},
                    "negative_data_rejection": {"expected-statuses": REJECTED}}}
    )  # fmt: skip
    return schemathesis.openapi.from_wsgi("/openapi.json", world["api"].app, config=config)


def check_problem(response: Any) -> None:
    """Every error is problem+json with a stable code (schemathesis checks the documented schema too)."""
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert response.headers["content-type"] == ["application/problem+json"], response.headers
        body = response.json()
        assert body["code"] in STABLE_CODES and body["status"] == response.status_code, body


def fuzz(schema: Any, headers: dict[str, str], settings: hypothesis.settings) -> None:
    """Each operation, with valid and with invalid data: every check of schemathesis, and ours.

    (The `schemathesis.pytest.from_fixture` route would be the idiom, but its lazy loader does not run
    under pytest 9; this loop is the same test per operation, collecting the failures of all of them.)
    """
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def one(case: Any) -> None:
                check_problem(case.call_and_validate(headers=headers))

            try:
                one()
            except hypothesis.errors.Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to get wrong: no parameters, no body
            except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 - reported together below
                failures.append(f"{operation.label} ({mode}): {type(e).__name__}: {str(e)[:1500]}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("role", ["analyst", "admin"])
def test_every_operation(world: dict[str, Any], role: str) -> None:
    fuzz(_schema(world, role), world[role], SHORT)


@pytest.mark.slow
@pytest.mark.parametrize("role", ["analyst", "admin"])
def test_every_operation_longer(tmp_path: Path, role: str) -> None:
    world = _world(tmp_path)
    try:
        fuzz(_schema(world, role), world[role], LONG)
    finally:
        close(world["api"])


def test_the_spec_documents_errors_as_problems(world: dict[str, Any]) -> None:
    """What the fuzzing relies on, stated once: every error is a documented problem+json; limited
    operations document 429 with Retry-After; bodies are required and may be refused as too large."""
    spec = world["api"].client.get("/openapi.json").json
    assert "HTTPError" not in spec["components"]["schemas"] and "Problem" in spec["components"]["schemas"]
    for path, item in spec["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert any(status.startswith("2") for status in responses), (method, path)
            for status, response in responses.items():
                if status[0] in "45":
                    assert response["content"] == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
            assert "500" in responses
            if op.get("security"):
                assert {"401", "403", "429"} <= set(responses), (method, path)
                assert "Retry-After" in responses["429"]["headers"]
            else:
                assert "429" not in responses, (method, path)  # health, metrics and the spec are not limited
            if "requestBody" in op:
                assert op["requestBody"]["required"] is True and "413" in responses, (method, path)


def stateful(world: dict[str, Any], role: str, settings: hypothesis.settings) -> None:
    """Sequences of calls along the spec's links (start a job → its status → its model → predict, …).

    Hypothesis replays sequences, so each must meet the same gateway: every sequence gets a fresh
    principal of the role (its own budget and job quota), and a started job is waited for before the
    next call (it would otherwise be queued or done depending on the clock). Failures are collected and
    reported with their call.
    """
    api = world["api"]
    ledger, training = api.app.extensions["dpgate"]["ledger"], api.app.extensions["dpgate"]["training"]
    base = _schema(world, role, chain_only=True).as_state_machine()
    failures: list[str] = []
    sequences = itertools.count()

    class Machine(base):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            name = f"{role}-sequence-{next(sequences)}"
            _, key = ledger.create_analyst(name, role=role)
            for dataset in DATASETS:
                ledger.set_allocation(name, dataset, epsilon="20", delta="0.0001")
            self.headers = {"Authorization": f"Bearer {key}"}

        def before_call(self, case: Any) -> None:
            # Random bodies never name a real table and label: every other job start is a real one,
            # so that the links to its status, model and predictions are followed too.
            if case.operation.label == "POST /v1/training-jobs" and len(repr(case.body)) % 2 == 0:
                case.body = dict(LOGREG)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": self.headers}

        def after_call(self, response: Any, case: Any) -> None:
            if case.operation.label == "POST /v1/training-jobs" and response.status_code == 202:
                training.wait(response.json()["job_id"], timeout=120)

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            try:
                check_problem(response)
                super().validate_response(response, case, **kwargs)
            except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 - reported together below
                failures.append(f"{case.operation.label} {case.path_parameters} {str(case.body)[:200]}: {str(e)[:1500]}")

    Machine.run(settings=settings)
    assert not failures, "\n\n".join(failures)
    started = [e for e in ledger.entries(limit=10_000) if e["analyst"].startswith(f"{role}-sequence-")]
    assert started, "no sequence started a job: the links were never followed"


def test_links_connect_jobs_models_and_predictions(world: dict[str, Any]) -> None:
    spec = world["api"].client.get("/openapi.json").json
    links = spec["paths"]["/v1/training-jobs"]["post"]["responses"]["202"]["links"]
    assert links["JobStatus"]["parameters"] == {"job_id": "$response.body#/job_id"}
    for response in spec["paths"]["/v1/training-jobs/{job_id}"]["get"]["responses"].values():
        for link in response.get("links", {}).values():
            pointer = link["operationRef"].removeprefix("#/paths/").split("/")
            assert pointer[0].replace("~1", "/") in spec["paths"], link


@pytest.mark.parametrize("role", ["analyst", "admin"])
def test_stateful(world: dict[str, Any], role: str) -> None:
    stateful(world, role, hypothesis.settings(SHORT, stateful_step_count=4))


@pytest.mark.slow
@pytest.mark.parametrize("role", ["analyst", "admin"])
def test_stateful_longer(tmp_path: Path, role: str) -> None:
    world = _world(tmp_path)
    try:
        stateful(world, role, hypothesis.settings(LONG, max_examples=30, stateful_step_count=8))
    finally:
        close(world["api"])
