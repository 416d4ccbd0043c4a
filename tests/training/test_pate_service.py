"""PATE on a tabular table through the service: the plan fitted to ε from public inputs, charged at
start; teachers by unit; the student trained on the public table's rows and the noisy labels."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from training import InvalidJob, TrainingService
from training.pate import gnmax_epsilon

from .conftest import Env

PATE = {"task": "credit_default", "method": "pate", "public_table": "applicants", "epsilon": 3, "delta": 1e-5}


def test_pate_credit_job_charges_the_plan_and_its_student_separates_defaulters(env: Env, svc: TrainingService) -> None:
    torch.manual_seed(0)
    started = svc.start("alice", {**PATE, "params": {"teachers": 50, "queries": 400, "hidden": [], "epochs": 30, "lr": 0.05}})
    rec = svc.store.get_job(started["job_id"])
    pate = rec["plan"]["pate"]
    [entry] = env.ledger.entries(analyst="alice")  # charged before anything ran
    assert entry["kind"] == "training" and entry["method"] == "pate"
    # 400 queries fit, σ derived from them; the plan's ε is what the accounting says for that σ
    assert pate["queries"] == 400 and pate["n_classes"] == 2
    assert gnmax_epsilon(sigma=pate["sigma"], queries=400, delta=1e-5) == pytest.approx(pate["epsilon"], rel=1e-9)
    charged = Fraction(rec["cost_epsilon"])
    assert charged == Fraction(rec["plan"]["model"]["epsilon_charged"]) + Fraction(rec["plan"]["metrics"]["epsilon"]) <= 3
    done = svc.wait(started["job_id"], 300)
    assert done["status"] == "succeeded", done.get("error")
    assert done["exact_metrics"]["roc_auc"] > 0.8  # balance drives default: the noisy labels carry it
    assert done["metrics"]["roc_auc"] is not None
    card = svc.model_card("alice", done["model_id"])
    assert card["method"] == "pate" and card["aggregator"] == "gnmax" and card["queries"] == 400
    assert card["training"]["labelled"] == 400 and "exact_metrics" not in card
    [pred] = svc.predict("alice", done["model_id"], [{"student": "No", "balance": 2500.0, "income": 30000.0}])["predictions"]
    assert pred["label"] in ("Yes", "No") and 0.0 <= pred["probability"] <= 1.0


def test_pate_queries_are_capped_by_the_public_table_and_bad_jobs_cost_nothing(env: Env, svc: TrainingService) -> None:
    started = svc.start("alice", {**PATE, "params": {"teachers": 200, "queries": 100_000}})
    assert svc.store.get_job(started["job_id"])["plan"]["pate"]["queries"] == 2_000  # the public table's rows
    svc.cancel("alice", started["job_id"])
    before = len(env.ledger.entries(analyst="alice"))
    for body, field in (
        ({**PATE, "public_table": "card_customers"}, "public_table"),  # private, not public
        ({**PATE, "public_table": "nope"}, "public_table"),
        ({**PATE, "params": {"pretrain_epochs": 5}}, "params.pretrain_epochs"),  # pre-training: image tables only
        ({**PATE, "method": "dpsgd"}, "public_table"),  # DP-SGD's public table pre-trains images only
        ({**PATE, "delta": 0}, "delta"),
        ({**PATE, "epsilon": 1e-6}, "epsilon"),  # the noise would drown the votes
        ({**PATE, "epsilon": 0.5, "params": {"sigma": 10.0}}, "epsilon"),  # too few labels for a student
        ({**PATE, "positive": None, "task": None, "dataset": "cards", "table": "card_customers", "label": "default"}, "positive"),
    ):
        body = {k: v for k, v in body.items() if v is not None}
        with pytest.raises(InvalidJob) as info:
            svc.start("alice", body)
        assert info.value.to_dict()["field"] == field, body
    assert len(env.ledger.entries(analyst="alice")) == before
