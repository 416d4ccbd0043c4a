"""The candlestick CNN through the training service: multi-class labels, DP-SGD, PATE with the public
windows, non-private for administrators only; the charge, the card and predictions."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from budget import Ledger
from gateway.demo_data import _image_meta, candlesticks_columns, load_candlesticks
from mechanisms.cost import Cost
from training import Forbidden, InvalidJob, TrainingService
from training.vision.patterns import CLASSES


@pytest.fixture(scope="module")
def frames() -> dict[tuple[str, str], pd.DataFrame]:
    private, public = load_candlesticks()
    return {("candlesticks", "windows"): private, ("candlesticks", "windows_public"): public}


def _meta() -> dict[str, Any]:
    return {
        "name": "candlesticks", "privacy_unit": "window_id", "budget": {"epsilon": 100, "delta": 1e-3},
        "tables": {
            "windows": {"source": "mem", "max_rows_per_unit": 1, "columns": candlesticks_columns(), "image": _image_meta()},
            "windows_public": {"source": "mem", "max_rows_per_unit": 1, "public": True,
                               "columns": candlesticks_columns(public=True), "image": _image_meta()},
        },
    }  # fmt: skip


@pytest.fixture()
def svc(tmp_path: Path, frames: dict[tuple[str, str], pd.DataFrame]) -> Any:
    yield from _service(tmp_path, frames, _meta())


def _service(tmp_path: Path, frames: dict[tuple[str, str], pd.DataFrame], meta: dict[str, Any]) -> Any:
    db_url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = Ledger(db_url)
    ledger.migrate()
    ledger.set_dataset_budget("candlesticks", epsilon=100, delta=1e-3)
    for name, role in (("alice", "analyst"), ("root", "admin")):
        ledger.create_analyst(name, role=role)
        ledger.set_allocation(name, "candlesticks", epsilon=50, delta=5e-4)

    def read(dataset: str, table: str, columns: list[str]) -> pd.DataFrame:
        return frames[(dataset, table)][list(columns)].copy()

    s = TrainingService(data_dir=tmp_path / "data", db_url=db_url, ledger=ledger,
                        datasets=lambda name: meta if name == "candlesticks" else {}, read_table=read)  # fmt: skip
    s.test_ledger = ledger
    try:
        yield s
    finally:
        s.close()
        ledger.close()


BODY = {"task": "candlestick_pattern", "epsilon": 3, "delta": 1e-5}


def test_dpsgd_cnn_on_gaf_images_is_charged_multiclass_and_predicts(svc: Any, frames: Any) -> None:
    torch.manual_seed(0)
    started = svc.start("alice", {**BODY, "params": {"epochs": 8, "batch_size": 128, "lr": 0.005}})
    done = svc.wait(started["job_id"], 300)
    assert done["status"] == "succeeded", done.get("error")
    [entry] = svc.test_ledger.entries(analyst="alice")
    assert entry["epsilon"] == started["cost"]["epsilon"] and Cost.of(started["cost"]["epsilon"], 1e-5).fits_within(Cost.of(3, 1e-5))
    card = svc.model_card("root", done["model_id"], is_admin=True)
    assert card["training"]["architecture"] == "gaf_cnn" and card["training"]["n_classes"] == len(CLASSES) == 8
    assert card["training"]["grad_sample_mode"] == "ghost" and card["label"]["classes"] == list(CLASSES)
    assert card["noise_multiplier"] > 0 and card["privacy"]["max_rows_per_unit"] == 1
    # multi-class metrics: accuracy from noisy counts (DP) and exact (administrators)
    exact = done["exact_metrics"]["accuracy"]
    assert exact > 1.5 / 8, exact  # better than chance (1/8) after a few DP epochs
    assert 0.0 <= done["metrics"]["accuracy"] <= 1.0 and done["metrics"]["mechanism"] == "laplace"
    assert "exact_metrics" not in svc.model_card("alice", done["model_id"])
    row = frames[("candlesticks", "windows_public")].iloc[0]
    pixels = {c: float(row[c]) for c in card["features"]["columns"] and [c["name"] for c in card["features"]["columns"]]}
    [pred] = svc.predict("alice", done["model_id"], [pixels])["predictions"]
    assert pred["label"] in CLASSES and set(pred["probabilities"]) == set(CLASSES)
    assert sum(pred["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert pred["probability"] == pytest.approx(max(pred["probabilities"].values()))


def test_pate_cnn_charges_its_plan_first_and_trains_the_student_on_public_windows(svc: Any) -> None:
    torch.manual_seed(0)
    body = {**BODY, "method": "pate", "public_table": "windows_public",
            "params": {"teachers": 50, "queries": 300, "sigma": 0, "epochs": 5, "teacher_epochs": 3, "batch_size": 64, "lr": 0.003}}  # fmt: skip
    started = svc.start("alice", body)
    rec = svc.store.get_job(started["job_id"])
    pate = rec["plan"]["pate"]
    # the whole cost is in the ledger before the job runs: the plan's ε plus the metrics' share
    [entry] = svc.test_ledger.entries(analyst="alice")
    assert Fraction(rec["cost_epsilon"]) <= 3 and pate["queries"] == 300 and pate["aggregator"] == "gnmax"
    assert Fraction(rec["cost_epsilon"]) == Fraction(rec["plan"]["model"]["epsilon_charged"]) + Fraction(rec["plan"]["metrics"]["epsilon"])
    done = svc.wait(started["job_id"], 600)
    assert done["status"] == "succeeded", done.get("error")
    card = svc.model_card("root", done["model_id"], is_admin=True)
    assert card["method"] == "pate" and card["teachers"] == 50 and card["public_table"] == "windows_public"
    assert card["training"]["labelled"] + card["training"]["abstained"] == card["training"]["queries"] == 300
    assert any("PATE" in c for c in card["caveats"])
    assert 0.0 <= done["exact_metrics"]["accuracy"] <= 1.0


def test_image_jobs_are_checked_before_anything_is_charged(svc: Any) -> None:
    with pytest.raises(InvalidJob) as info:  # an image trains whole
        svc.start("alice", {**BODY, "features": ["gaf_0_0_close"]})
    assert info.value.to_dict()["field"] == "features"
    with pytest.raises(InvalidJob):  # no such public table
        svc.start("alice", {**BODY, "method": "pate", "public_table": "windows"})
    with pytest.raises(InvalidJob):  # diffprivlib models are binary and tabular
        svc.start("alice", {**BODY, "method": "logreg", "delta": 0})
    with pytest.raises(Forbidden):
        svc.start("alice", {**BODY, "method": "nonprivate"})
    assert svc.test_ledger.entries(analyst="alice") == []
    assert svc.test_ledger.remaining_cost("alice", "candlesticks").analyst.epsilon == 50


def test_the_task_pretrains_on_the_labelled_public_windows_before_dp_sgd(svc: Any, frames: Any) -> None:
    """The candlestick task's DP-SGD starts from weights trained on the public windows (free: public data):
    after a single noisy step at a tiny rate a pre-trained model already classifies the private windows
    far above chance, where the same job without pre-training does not."""
    public = frames[("candlesticks", "windows_public")]
    tiny = {"epochs": 0.01, "batch_size": 64, "lr": 1e-4}
    got = {}
    for pre in (30.0, 0.0):
        torch.manual_seed(1)
        started = svc.start("alice", {**BODY, "params": {**tiny, "pretrain_epochs": pre}})
        done = svc.wait(started["job_id"], 300)
        assert done["status"] == "succeeded", done.get("error")
        card = svc.model_card("root", done["model_id"], is_admin=True)
        got[pre] = (done["exact_metrics"]["accuracy"], card)
    (acc, card), (acc0, card0) = got[30.0], got[0.0]
    assert svc.store.get_job(card["job_id"])["spec"]["public_table"] == "windows_public"  # the task names it
    assert len(public) == 883
    assert card["pretrained"] == {"table": "windows_public", "rows": 883, "epochs": 30.0,
                                  "steps": -(-30 * 883 // 64), "lr": 1e-3, "batch_size": 64, "noise": "none: public rows and labels"}  # fmt: skip
    assert any("Pre-trained without noise on the public table 'windows_public'" in c for c in card["caveats"])
    assert card0["training"]["pretrained"] is None and "pretrained" not in card0
    assert acc > 0.5 and acc0 < 0.35, (acc, acc0)
    # one charge per job, within its ε either way: the public rows add nothing to it
    entries = svc.test_ledger.entries(analyst="alice")
    assert len(entries) == 2 and all(Cost.of(e["epsilon"], e["delta"]).fits_within(Cost.of(3, 1e-5)) for e in entries)


def test_pretraining_needs_a_labelled_public_image_table_and_a_refusal_costs_nothing(tmp_path: Path, frames: Any) -> None:
    meta = _meta()
    unlabelled = {k: v for k, v in meta["tables"]["windows_public"]["columns"].items() if k != "label"}
    meta["tables"]["windows_public"] = {**meta["tables"]["windows_public"], "columns": unlabelled}
    gen = _service(tmp_path, frames, meta)
    svc = next(gen)
    try:
        for method in ("dpsgd", "pate"):
            with pytest.raises(InvalidJob) as info:
                svc.start("alice", {**BODY, "method": method})
            assert info.value.to_dict()["field"] == "public_table" and "label column 'label'" in info.value.message
        # PATE without pre-training reads the public images only
        started = svc.start("alice", {**BODY, "method": "pate", "params": {"pretrain_epochs": 0, "teachers": 50, "sigma": 0, "queries": 50,
                                                                           "epochs": 1, "teacher_epochs": 1}})  # fmt: skip
        assert svc.wait(started["job_id"], 300)["status"] == "succeeded"
        assert len(svc.test_ledger.entries(analyst="alice")) == 1
    finally:
        gen.close()


def test_dp_sgd_pretraining_is_for_image_tables() -> None:
    from training.jobs import parse_job

    job = parse_job({"dataset": "cards", "table": "card_customers", "label": "default", "positive": "Yes",
                     "epsilon": 1, "delta": 1e-5, "public_table": "card_applicants"})  # fmt: skip
    assert job.public_table == "card_applicants" and job.params["pretrain_epochs"] == 30.0
    with pytest.raises(InvalidJob) as info:
        parse_job({"task": "credit_default", "method": "logreg", "epsilon": 1, "public_table": "card_applicants"})
    assert info.value.to_dict()["field"] == "public_table"
    # the task's defaults fill what the body leaves out, the body's own win
    job = parse_job({"task": "candlestick_pattern", "epsilon": 5.4, "delta": 1e-5, "params": {"lr": 0.02}})
    assert job.public_table == "windows_public" and job.params["lr"] == 0.02 and job.params["batch_size"] == 256


def test_pretraining_stops_between_steps_when_the_job_is_cancelled(frames: Any) -> None:
    from training import models
    from training.dpsgd import Cancelled
    from training.vision.cnn import GafCNN

    public = frames[("candlesticks", "windows_public")].iloc[:64]
    pixels = [c for c in public.columns if c.startswith("gaf_")]
    x = public[pixels].to_numpy(np.float32)
    y = np.zeros(len(x), dtype=np.int64)
    net = GafCNN(8, design="gn")
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(Cancelled):
        models.pretrain_cnn(net, (x, y), _image_meta(), 5.0, "windows_public", lambda: True)
    done = models.pretrain_cnn(net, (x, y), _image_meta(), 1.0, "windows_public", lambda: False)
    assert done["steps"] == 1 and not all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
