"""The facade end to end: charging before training, jobs, ownership, cards, predictions, restarts."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
import torch
from opacus.accountants import create_accountant

from budget import BudgetExhausted, NoAllocation
from mechanisms.cost import Cost
from training import Forbidden, InvalidJob, NotFound, TrainingService, UnknownDataset

from .conftest import Env, cards_meta

CREDIT = {"task": "credit_default", "method": "dpsgd", "epsilon": 4, "delta": 1e-5}


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_dpsgd_job_charges_the_accountant_epsilon_and_learns(env: Env, svc: TrainingService):
    torch.manual_seed(0)  # the run is reproducible; its noise still comes from torch's generator
    body = {**CREDIT, "params": {"epochs": 3, "batch_size": 64, "lr": 0.05}}
    started = svc.start("alice", body)
    assert started["status"] == "queued"
    done = svc.wait(started["job_id"], 60)
    assert done["status"] == "succeeded", done.get("error")

    # the charge: one ledger entry, written at start, equal to the plan's parts
    [entry] = env.ledger.entries(analyst="alice")
    assert entry["kind"] == "training" and entry["job_id"] == started["job_id"] and entry["method"] == "dpsgd"
    plan = svc.store.get_job(started["job_id"])["plan"]
    model = plan["model"]
    acc = create_accountant("prv")
    acc.history = [(model["noise_multiplier"], model["sample_rate"], model["steps"])]
    accountant_eps = acc.get_epsilon(delta=1e-5)
    assert accountant_eps == pytest.approx(model["epsilon"], rel=1e-9)
    assert model["epsilon"] <= model["target_epsilon"] and model["accountant"] == "prv"
    charged_model = Fraction(model["epsilon_charged"])
    assert accountant_eps <= charged_model <= Fraction(model["target_epsilon_exact"])
    assert charged_model - Fraction(accountant_eps) < Fraction(1, 10**12)
    metrics_eps, size_eps = Fraction(plan["metrics"]["epsilon"]), Fraction(plan["size"]["epsilon"])
    assert metrics_eps == Fraction(4) / 10 and size_eps == Fraction(4) / 100
    total = Cost(size_eps + charged_model + metrics_eps, Fraction("1e-5"))
    assert total.fits_within(Cost.of(4, 1e-5))
    assert entry["epsilon"] == total.to_json()["epsilon"] == started["cost"]["epsilon"]
    assert entry["delta"] == pytest.approx(1e-5) and done["cost"] == started["cost"]

    # one epoch of DP-SGD on card_customers-like data separates defaulters well
    assert done["exact_metrics"]["roc_auc"] > 0.8
    assert done["metrics"]["roc_auc"] is not None and done["progress"] == 1.0

    # the card an analyst sees: the accounting, the features, the DP metrics — no exact metrics
    card = svc.model_card("alice", done["model_id"])
    assert "exact_metrics" not in card
    for key in ("accountant", "noise_multiplier", "max_grad_norm", "sample_rate", "epochs", "steps", "features"):
        assert key in card
    assert card["method"] == "dpsgd" and card["metrics_epsilon_share"] == 0.1
    assert card["training"]["grad_sample_mode"] == "ghost" and card["training"]["samples"] == "units (one row each)"
    assert card["privacy"]["level"] == "user" and card["privacy"]["charged"] == started["cost"]
    assert card["metrics"] == done["metrics"] and any("secure_mode" in c for c in card["caveats"])
    assert card["features"]["encoded"] == ["student=No", "student=Yes", "balance", "income"]
    assert svc.model_card("root", done["model_id"], is_admin=True)["exact_metrics"] == done["exact_metrics"]
    assert "exact_metrics" not in svc.status("alice", started["job_id"])

    preds = svc.predict("alice", done["model_id"], [{"balance": 2600.0, "income": 3e4, "student": "No"},
                                                     {"balance": 10.0, "income": 3e4, "student": "No"}])  # fmt: skip
    rich, poor = preds["predictions"]
    assert rich["probability"] > poor["probability"] and rich["label"] in ("Yes", "No")


def test_user_level_job_on_a_table_with_many_rows_per_unit(env: Env, svc: TrainingService):
    body = {"task": "fraud", "epsilon": 3, "delta": 1e-5, "params": {"epochs": 1, "batch_size": 64}}
    started = svc.start("alice", body)
    done = svc.wait(started["job_id"], 60)
    assert done["status"] == "succeeded", done.get("error")
    card = svc.model_card("alice", done["model_id"])
    assert card["privacy"]["level"] == "user" and card["privacy"]["max_rows_per_unit"] == 20
    assert card["training"]["samples"] == "units" and card["training"]["grad_sample_mode"] == "hooks"
    # a held-out unit moves at most 5 positive and 5 negative rows of the histograms (k = 20)
    assert card["privacy"]["metrics"]["sensitivity"] == 10 and card["metrics"]["rows_per_unit"] == 5
    # the count behind q is of units (noisy), and q = batch / count
    noisy_units = card["privacy"]["size"]["noisy_units"]
    assert card["sample_rate"] == pytest.approx(64 / noisy_units)
    assert abs(noisy_units - 640) < 300  # ~800 customers, ~80% of them for training
    out = svc.predict("alice", done["model_id"], [{"ts": "2025-03-01", "amount": 4000.0, "channel": "online"}])
    assert 0.0 <= out["predictions"][0]["probability"] <= 1.0
    assert out["predictions"][0]["label"] in (True, False)


def test_a_job_the_budget_cannot_cover_is_refused_before_anything_runs(env: Env, svc: TrainingService):
    env.ledger.set_allocation("alice", "cards", epsilon=0.5, delta=1e-5)
    with pytest.raises(BudgetExhausted) as info:
        svc.start("alice", {**CREDIT, "epsilon": 1})
    assert info.value.code == "budget_exhausted" and info.value.level == "analyst"
    assert env.reader.calls == []  # no private data was read
    assert env.ledger.entries() == []  # nothing charged
    assert svc.store.active_job_ids() == [] and svc._futures == {}  # no job, none running
    assert list((env.tmp_path / "data" / "models").iterdir()) == []  # no model
    # the dataset's total binds too
    env.ledger.set_allocation("alice", "cards", epsilon=50, delta=1e-5)
    env.ledger.set_dataset_budget("cards", epsilon=0.2, delta=1e-4)
    with pytest.raises(BudgetExhausted) as info:
        svc.start("alice", {**CREDIT, "method": "logreg", "epsilon": 1})
    assert info.value.level == "dataset" and env.reader.calls == []


def test_refusals_carry_stable_codes(env: Env, svc: TrainingService):
    with pytest.raises(UnknownDataset) as info:
        svc.start("alice", {**CREDIT, "task": None, "dataset": "nope", "table": "t", "label": "y"})
    assert info.value.to_dict()["code"] == "unknown_dataset" and info.value.status == 404
    with pytest.raises(InvalidJob) as bad:
        svc.start("alice", {**CREDIT, "task": None, "dataset": "cards", "table": "nope", "label": "y"})
    assert bad.value.code == "invalid_request" and bad.value.fields["field"] == "table"
    with pytest.raises(InvalidJob):
        svc.start("alice", {**CREDIT, "features": ["balance", "customer_id"]})
    env.ledger.create_analyst("carol")
    with pytest.raises(NoAllocation):
        svc.start("carol", CREDIT)
    assert env.reader.calls == [] and env.ledger.entries() == []


def test_nonprivate_training_is_for_administrators_only(env: Env, svc: TrainingService):
    body = {"task": "credit_default", "method": "nonprivate", "params": {"epochs": 1}}
    with pytest.raises(Forbidden) as info:
        svc.start("alice", body)
    assert info.value.code == "forbidden" and info.value.status == 403
    assert env.reader.calls == []
    started = svc.start("root", body, is_admin=True)
    assert started["cost"] is None
    done = svc.wait(started["job_id"], 60)
    assert done["status"] == "succeeded", done.get("error")
    assert env.ledger.entries() == []  # not a DP release: no charge, and only administrators see it
    card = svc.model_card("root", done["model_id"], is_admin=True)
    assert card["privacy"] is None and "NOT differentially private" in card["caveats"][0]


def test_an_analyst_cannot_see_another_analysts_job_or_model(env: Env, svc: TrainingService):
    started = svc.start("alice", {**CREDIT, "method": "logreg", "epsilon": 1})
    done = svc.wait(started["job_id"], 30)
    assert done["status"] == "succeeded", done.get("error")
    job_id, model_id = started["job_id"], done["model_id"]
    row = [{"balance": 1.0, "income": 1.0, "student": "No"}]
    for call in (
        lambda: svc.status("bob", job_id),
        lambda: svc.cancel("bob", job_id),
        lambda: svc.model_card("bob", model_id),
        lambda: svc.predict("bob", model_id, row),
        lambda: svc.status("alice", "0" * 32),
        lambda: svc.model_card("alice", "../../etc"),
    ):
        with pytest.raises(NotFound) as info:
            call()
        assert info.value.code == "not_found" and info.value.status == 404
    assert svc.status("root", job_id, is_admin=True)["analyst"] == "alice"
    assert svc.predict("root", model_id, row, is_admin=True)["predictions"]
    # the card of a diffprivlib model names its pure-ε accounting and the RNG caveat
    card = svc.model_card("alice", model_id)
    assert card["privacy"]["charged"] == {"epsilon": 1.0, "delta": 0.0}
    assert any("floating-point" in c for c in card["caveats"])


def test_predict_refuses_bad_rows_with_a_typed_error(env: Env, svc: TrainingService):
    done = svc.wait(svc.start("alice", {**CREDIT, "method": "naive_bayes", "epsilon": 1})["job_id"], 30)
    model_id = done["model_id"]
    cases = [
        ([{"balance": 1.0, "income": 2.0, "student": "No", "default": "Yes"}], "rows[0].default"),
        ([{"balance": 1.0, "income": 2.0, "student": "No"}, {"income": 2.0, "student": "No"}], "rows[1].balance"),
        ([{"balance": "1000-secret", "income": 2.0, "student": "No"}], "rows[0].balance"),
    ]
    for rows, field in cases:
        with pytest.raises(InvalidJob) as info:
            svc.predict("alice", model_id, rows)
        assert info.value.to_dict()["code"] == "invalid_request" and info.value.fields["field"] == field
        assert "secret" not in info.value.message


def test_cancel_a_running_and_a_queued_job_keeps_their_charges(env: Env):
    svc = env.service()
    env.reader.hold()
    first = svc.start("alice", {**CREDIT, "method": "logreg", "epsilon": 1})
    second = svc.start("alice", {**CREDIT, "method": "logreg", "epsilon": 1})
    assert env.reader.entered.wait(10)
    wait_for(lambda: svc.status("alice", first["job_id"])["status"] == "running")
    assert svc.status("alice", second["job_id"])["status"] == "queued"  # one worker

    assert svc.cancel("alice", second["job_id"])["status"] == "cancelled"
    assert svc.cancel("alice", first["job_id"])["status"] == "running"  # it stops at its next check
    env.reader.release()
    assert svc.wait(first["job_id"], 30)["status"] == "cancelled"
    assert svc.wait(second["job_id"], 30)["status"] == "cancelled"
    assert svc.status("alice", first["job_id"])["model_id"] is None
    assert len(env.reader.calls) == 1  # the queued job never read anything
    assert {e["job_id"] for e in env.ledger.entries()} == {first["job_id"], second["job_id"]}
    # cancelling a finished job changes nothing
    assert svc.cancel("alice", first["job_id"])["status"] == "cancelled"


def test_a_restart_marks_running_jobs_failed_and_their_charge_stays(env: Env):
    old = env.service()
    env.reader.hold()
    started = old.start("alice", {**CREDIT, "method": "logreg", "epsilon": 2})
    assert env.reader.entered.wait(10)
    wait_for(lambda: old.status("alice", started["job_id"])["status"] == "running")
    spent_before = env.ledger.remaining_cost("alice", "cards")

    new = env.service()  # another process starting on the same database
    status = new.status("alice", started["job_id"])
    assert status["status"] == "failed" and status["error"] == "interrupted by a restart"
    assert status["cost"] == started["cost"]
    assert env.ledger.remaining_cost("alice", "cards") == spent_before
    assert [e["job_id"] for e in env.ledger.entries()] == [started["job_id"]]

    env.reader.release()  # the old process's job ends, but cannot overwrite the record
    old.wait(started["job_id"], 30)
    assert new.status("alice", started["job_id"])["status"] == "failed"


def test_noisy_metrics_track_the_exact_ones_at_large_epsilon(env: Env, svc: TrainingService):
    body = {**CREDIT, "method": "logreg", "epsilon": 40, "params": {"metrics_share": 0.5}}
    big = svc.wait(svc.start("alice", body)["job_id"], 30)
    exact, noisy = big["exact_metrics"], big["metrics"]
    assert noisy["roc_auc"] == pytest.approx(exact["binned"]["roc_auc"], abs=0.02)
    assert noisy["accuracy"] == pytest.approx(exact["accuracy"], abs=0.01)
    assert noisy["scale"] == pytest.approx(1 / 20)

    tiny = svc.wait(svc.start("alice", {**CREDIT, "method": "logreg", "epsilon": 0.01})["job_id"], 30)
    exact, noisy = tiny["exact_metrics"], tiny["metrics"]
    assert noisy["scale"] == pytest.approx(1000)
    assert noisy["roc_auc"] is None or abs(noisy["roc_auc"] - exact["roc_auc"]) > 0.01 or abs(
        noisy["held_out_rows"] - exact["held_out_rows"]
    ) > 100


def test_jobs_and_models_survive_a_restart(env: Env, tmp_path: Path):
    svc = env.service()
    done = svc.wait(svc.start("alice", {**CREDIT, "method": "random_forest", "epsilon": 1})["job_id"], 30)
    assert done["status"] == "succeeded", done.get("error")
    svc.close()
    again = env.service()
    assert again.status("alice", done["job_id"])["model_id"] == done["model_id"]
    out = again.predict("alice", done["model_id"], [{"balance": 2500.0, "income": 1e4, "student": "Yes"}])
    assert len(out["predictions"]) == 1
    assert (tmp_path / "data" / "models" / done["model_id"] / "card.json").exists()


def test_a_row_level_dataset_trains_with_rows_as_samples(env: Env, svc: TrainingService, cards_frame):
    meta = cards_meta_without_unit()
    env.metas["loose"] = meta
    env.ledger.set_dataset_budget("loose", epsilon=10, delta=1e-5)
    env.ledger.set_allocation("alice", "loose", epsilon=10, delta=1e-5)
    env.reader.frames[("loose", "customers")] = cards_frame.drop(columns=["customer_id"])
    body = {"dataset": "loose", "table": "customers", "label": "default", "positive": "Yes",
            "epsilon": 2, "delta": 1e-6, "params": {"epochs": 0.5}}  # fmt: skip
    done = svc.wait(svc.start("alice", body)["job_id"], 60)
    assert done["status"] == "succeeded", done.get("error")
    card = svc.model_card("alice", done["model_id"])
    assert card["privacy"]["level"] == "row" and card["privacy"]["privacy_unit"] is None
    assert card["training"]["samples"] == "rows"
    # the split (and the count behind q) used whole rows: all columns were read
    assert all(cols == ("default", "student", "balance", "income") for _, _, cols in env.reader.calls)


def cards_meta_without_unit():
    meta = cards_meta()
    columns = {k: v for k, v in meta["tables"]["card_customers"]["columns"].items() if k != "customer_id"}
    return {"name": "loose", "privacy_unit": None, "budget": {"epsilon": 10, "delta": 1e-5},
            "tables": {"customers": {"source": "mem", "max_rows_per_unit": 1, "columns": columns}}}  # fmt: skip


def test_rows_beyond_k_per_unit_are_dropped_even_if_the_reader_did_not_bound(svc: TrainingService, tx_frame):
    from training.runner import bounded as _bounded

    one = tx_frame[tx_frame.customer_id == 1]
    heavy = pd.concat([tx_frame] + [one.assign(amount=one.amount + i) for i in range(1, 11)])
    assert heavy.customer_id.value_counts().max() > 20
    out = _bounded(heavy.reset_index(drop=True), "customer_id", 20, svc.key)
    assert out.customer_id.value_counts().max() == 20
    # the other units keep every row they had: the choice is per unit
    assert (out.customer_id != 1).sum() == (tx_frame.customer_id != 1).sum()
    assert _bounded(tx_frame, "customer_id", 20, svc.key) is tx_frame  # already bounded: untouched
