"""Training through HTTP: charged before it runs, own jobs and models only, predictions, bad input."""
from __future__ import annotations

import pytest

from tests.api.conftest import Api
from tests.training.conftest import _IGNORED  # third-party warnings on training threads (see there)

pytestmark = [pytest.mark.filterwarnings(spec) for spec in _IGNORED]

LOGREG = {"dataset": "bank", "table": "cust", "label": "segment", "positive": "private", "method": "logreg", "epsilon": 1.0}


def wait(api: Api, job_id: str) -> dict:
    return api.app.extensions["dpgate"]["training"].wait(job_id, timeout=120)


def ledger(api: Api) -> list[dict]:
    return api.client.get("/v1/admin/ledger", headers=api.admin).json["entries"]


def test_logreg_job_charged_before_it_runs_then_predicts(api: Api) -> None:
    ann = api.analyst("ann", epsilon=3.0)
    r = api.client.post("/v1/training-jobs", json=LOGREG, headers=ann)
    assert r.status_code == 202, r.json
    job_id = r.json["job_id"]
    assert 0 < r.json["cost"]["epsilon"] <= 1.0
    [entry] = ledger(api)  # the charge is in the ledger as soon as the job is accepted
    assert entry["kind"] == "training" and entry["job_id"] == job_id and entry["epsilon"] == r.json["cost"]["epsilon"]
    wait(api, job_id)
    status = api.client.get(f"/v1/training-jobs/{job_id}", headers=ann).json
    assert status["status"] == "succeeded" and status["progress"] == 1.0, status
    model_id = status["model_id"]
    card = api.client.get(f"/v1/models/{model_id}", headers=ann).json
    assert card["method"] == "logreg"
    assert "exact_metrics" not in card or card["exact_metrics"] is None
    p = api.client.post(f"/v1/models/{model_id}/predict", json={"rows": [{"age": 30}, {"age": 90}]}, headers=ann)
    assert p.status_code == 200, p.json
    preds = p.json["predictions"]
    assert len(preds) == 2 and all(0.0 <= x["probability"] <= 1.0 for x in preds)
    bad = api.client.post(f"/v1/models/{model_id}/predict", json={"rows": [{"age": "old"}]}, headers=ann)
    assert bad.status_code == 400 and bad.json["code"] == "invalid_request"
    [b] = api.client.get("/v1/budget", headers=ann).json["budgets"]
    assert b["epsilon_spent"] == r.json["cost"]["epsilon"]


def test_other_analysts_cannot_see_jobs_or_models(api: Api) -> None:
    ann = api.analyst("ann", epsilon=3.0)
    bob = api.analyst("bob", epsilon=3.0)
    job_id = api.client.post("/v1/training-jobs", json=LOGREG, headers=ann).json["job_id"]
    wait(api, job_id)
    model_id = api.client.get(f"/v1/training-jobs/{job_id}", headers=ann).json["model_id"]
    for path in (f"/v1/training-jobs/{job_id}", f"/v1/models/{model_id}"):
        r = api.client.get(path, headers=bob)
        assert r.status_code == 404 and r.json["code"] == "not_found"
    r = api.client.post(f"/v1/models/{model_id}/predict", json={"rows": [{"age": 30}]}, headers=bob)
    assert r.status_code == 404


def test_job_the_budget_cannot_cover_is_refused_and_nothing_runs(api: Api) -> None:
    ann = api.analyst("ann", epsilon=0.5)
    r = api.client.post("/v1/training-jobs", json=LOGREG, headers=ann)
    assert r.status_code == 403 and r.json["code"] == "budget_exhausted"
    assert ledger(api) == []


def test_nonprivate_is_for_administrators_only(api: Api) -> None:
    ann = api.analyst("ann", epsilon=3.0)
    body = {**LOGREG, "method": "nonprivate"}
    body.pop("epsilon")
    r = api.client.post("/v1/training-jobs", json=body, headers=ann)
    assert r.status_code == 403 and r.json["code"] == "forbidden"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**LOGREG, "label": "ghost"}, "label"),
        ({**LOGREG, "method": "dpsgd"}, "delta"),  # DP-SGD needs δ > 0
        ({**LOGREG, "params": {"nope": 1}}, "params"),
        ({**LOGREG, "dataset": "nope"}, None),
    ],
)
def test_bad_jobs_are_problems_and_cost_nothing(api: Api, body: dict, field: str | None) -> None:
    ann = api.analyst("ann", epsilon=3.0)
    r = api.client.post("/v1/training-jobs", json=body, headers=ann)
    assert 400 <= r.status_code < 500 and r.headers["Content-Type"] == "application/problem+json", r.json
    assert ledger(api) == []


def test_dpsgd_job_card_states_its_accounting(api: Api) -> None:
    ann = api.analyst("ann", epsilon=3.0, delta=1e-5)
    body = {**LOGREG, "method": "dpsgd", "delta": 1e-6, "params": {"epochs": 1}}
    r = api.client.post("/v1/training-jobs", json=body, headers=ann)
    assert r.status_code == 202, r.json
    wait(api, r.json["job_id"])
    status = api.client.get(f"/v1/training-jobs/{r.json['job_id']}", headers=ann).json
    assert status["status"] == "succeeded", status
    card = api.client.get(f"/v1/models/{status['model_id']}", headers=ann).json
    text = str(card)
    assert "noise_multiplier" in text and "accountant" in text


def test_audits_are_for_administrators_only(api: Api) -> None:
    ann = api.analyst("ann", epsilon=3.0)
    job_id = api.client.post("/v1/training-jobs", json=LOGREG, headers=ann).json["job_id"]
    wait(api, job_id)
    model_id = api.client.get(f"/v1/training-jobs/{job_id}", headers=ann).json["model_id"]
    r = api.client.post(f"/v1/admin/models/{model_id}/audit", json={"n_reference": 1}, headers=ann)
    assert r.status_code == 403 and r.json["code"] == "forbidden"
    assert api.client.get(f"/v1/admin/models/{model_id}/audit/roc.png", headers=ann).status_code == 403
    r = api.client.post(f"/v1/admin/models/{model_id}/audit", json={"n_reference": 1}, headers=api.admin)
    assert r.status_code == 400 and r.json["code"] == "invalid_request"
    r = api.client.post(f"/v1/admin/models/{model_id}/audit", json={"n_reference": 2}, headers=api.admin)
    assert r.status_code == 200, r.json
    assert 0.0 <= r.json["attacks"]["loss_threshold"]["attack_auc"] <= 1.0
    assert 0 < r.json["model"]["epsilon"] <= 1.0 and not r.json["ceiling"]["any_exceeds"]
    png = api.client.get(r.json["plot_urls"]["roc"], headers=api.admin)
    assert png.status_code == 200 and png.mimetype == "image/png" and png.data[:4] == b"\x89PNG"
    r = api.client.post(f"/v1/admin/models/{model_id}/audit", json={"n_reference": 99}, headers=api.admin)
    assert r.status_code in (400, 422) and r.json["code"]
    r = api.client.post("/v1/admin/models/nosuchmodel/audit", json={}, headers=api.admin)
    assert r.status_code == 404 and r.json["code"] == "not_found"
