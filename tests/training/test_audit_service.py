"""Membership-inference audits of registered models through the service (`training.auditing`)."""

from __future__ import annotations

import json
import math

import pytest

from training import InvalidJob, NotFound, TrainingService

from .conftest import Env


def _train(svc: TrainingService, body: dict) -> str:
    job = svc.start("root", body, is_admin=True)
    done = svc.wait(job["job_id"], 120)
    assert done["status"] == "succeeded", done.get("error")
    return done["model_id"]


def test_audit_of_a_dp_model_reports_attacks_under_the_dp_ceiling(env: Env, svc: TrainingService) -> None:
    model_id = _train(svc, {"task": "credit_default", "method": "dpsgd", "epsilon": 1, "delta": 1e-5,
                            "params": {"epochs": 2}})  # fmt: skip
    result = svc.audit(model_id, n_reference=2, seed=1)
    eps = svc.model_card("root", model_id, is_admin=True)["privacy"]["epsilon"]  # what was charged, <= 1
    assert result["model_id"] == model_id and result["model"]["epsilon"] == eps <= 1.0
    assert set(result["attacks"]) == {"loss_threshold", "lira_offline"}
    counts = result["counts"]
    # members are the model's training rows (~80%), non-members half of the held-out rows
    assert counts["members"] > 3 * counts["nonmembers"] > 0 and counts["population"] > 0
    for attack in result["attacks"].values():
        assert 0.0 <= attack["attack_auc"] <= 1.0 and set(attack["tpr_at_fpr"]) == {"0.001", "0.01"}
        rr = attack["recognition_rate"]
        assert 0.0 <= rr["members"]["mean"] <= 1.0 and 0.0 <= rr["nonmembers"]["mean"] <= 1.0
    # ε <= 1 on a linear model of 10,000 rows: no attack may credibly beat the DP ceiling
    ceiling = result["ceiling"]
    assert ceiling["any_exceeds"] is False
    for per_level in ceiling["attacks"].values():
        assert not any(v["exceeds_ceiling"] for v in per_level.values())
        assert per_level["0.01"]["ceiling"] == pytest.approx(min(1.0, math.exp(eps) * 0.01 + 1e-5), rel=1e-6)
    stored = json.loads((svc.registry.path(model_id) / "audit" / "audit.json").read_text())
    assert stored["attacks"]["lira_offline"]["attack_auc"] == result["attacks"]["lira_offline"]["attack_auc"]
    for name in ("roc", "violin"):
        assert svc.audit_plot(model_id, name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_audit_of_a_non_private_model_has_no_ceiling_and_bad_requests_are_refused(env: Env, svc: TrainingService) -> None:
    model_id = _train(svc, {"task": "credit_default", "method": "nonprivate", "params": {"epochs": 1}})
    result = svc.audit(model_id, n_reference=0)
    assert result["ceiling"] is None and set(result["attacks"]) == {"loss_threshold"}
    with pytest.raises(InvalidJob):
        svc.audit(model_id, n_reference=99)
    with pytest.raises(NotFound):
        svc.audit("0" * 32)
    with pytest.raises(NotFound):
        svc.audit_plot(model_id, "../../etc/passwd")
