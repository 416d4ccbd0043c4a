"""Training outcomes never depend on which label classes the private rows hold.

Every method (logreg, naive_bayes, random_forest, dpsgd, pate), once charged, gives a model and noisy
metrics of the same shape on a table whose rows hold one class only (no positive customer), an empty
held-out part, an empty training part, no rows at all, or a constant feature, as it does on an ordinary
two-class table; the classic models are fitted over the label's public classes. A label without a
public class declaration is refused before anything is read or charged.
"""

from __future__ import annotations

from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from training import InvalidJob, TrainingService
from training.classic import CLASSES, fit_classic, positive_proba
from training.features import build_spec
from training.metrics import dp_metrics

from .conftest import CARDS_COLUMNS, Env, card_customers

BODIES: dict[str, dict[str, Any]] = {
    "logreg": {"epsilon": 2, "delta": 0},
    "naive_bayes": {"epsilon": 2, "delta": 0},
    "random_forest": {"epsilon": 2, "delta": 0, "params": {"n_estimators": 5, "max_depth": 3}},
    "dpsgd": {"epsilon": 3, "delta": 1e-6, "params": {"epochs": 1, "batch_size": 2048}},  # q = 1: one step
    # σ ≈ 9 against 50 teachers: on rows of one class, the labels hold that class alone
    "pate": {"epsilon": 10, "delta": 1e-6, "public_table": "applicants",
             "params": {"teachers": 50, "queries": 100, "hidden": [], "epochs": 5, "lr": 0.05}},
}  # fmt: skip
ROWS = [{"student": "No", "balance": 2500.0, "income": 30000.0}, {"student": "Yes", "balance": 100.0, "income": 9000.0}]


def _tables(svc: TrainingService) -> dict[str, pd.DataFrame]:
    """Two classes (the reference), and the tables whose rows would have changed the outcome."""
    two = card_customers(1500, seed=4)
    held = svc.key.held_out(two, "customer_id", fraction=0.2)  # the default test_fraction
    assert 0 < held.sum() < len(two)
    return {
        "two_classes": two,
        "no_positives": two.assign(default="No"),
        "empty_held_out": two.loc[~held].reset_index(drop=True),
        "empty_training_part": two.loc[held].reset_index(drop=True),
        "no_rows": two.iloc[:0],
        "constant_features": two.assign(student="No", income=20000.0),
    }


def _register(env: Env, frames: dict[str, pd.DataFrame]) -> None:
    tables = env.metas["cards"]["tables"]
    for name, frame in frames.items():
        tables[name] = {**tables["card_customers"]}
        env.reader.frames[("cards", name)] = frame


def _shape(done: dict[str, Any], card: dict[str, Any]) -> dict[str, Any]:
    """What must not change with the rows: the keys of the metrics, of the card and of its parts."""
    return {
        "metrics": sorted(done["metrics"]),
        "card": sorted(card),
        "training": sorted(card["training"]),
        "privacy": sorted(card["privacy"]),
        "model": sorted(card["privacy"]["model"]),
        "card_metrics": sorted(card["metrics"]),
    }


@pytest.mark.parametrize("method", list(BODIES))
def test_a_charged_job_succeeds_whatever_classes_and_parts_the_rows_hold(env: Env, method: str) -> None:
    env.ledger.set_allocation("alice", "cards", epsilon=100, delta=5e-5)
    svc = env.service()
    frames = _tables(svc)
    _register(env, frames)
    shapes, entries = {}, 0
    for table in frames:
        body = {"dataset": "cards", "table": table, "label": "default", "positive": "Yes", "method": method,
                **BODIES[method]}  # fmt: skip
        started = svc.start("alice", body)
        entries += 1
        assert len(env.ledger.entries(analyst="alice")) == entries  # charged at start, whatever the rows
        done = svc.wait(started["job_id"], 120)
        assert done["status"] == "succeeded", (table, done.get("error"))
        assert done["cost"] == started["cost"] and done["model_id"]
        card = svc.model_card("alice", done["model_id"])
        shapes[table] = _shape(done, card)
        preds = svc.predict("alice", done["model_id"], ROWS)["predictions"]
        assert len(preds) == 2 and all(0.0 <= p["probability"] <= 1.0 and p["label"] in ("Yes", "No") for p in preds)
        if method in ("logreg", "naive_bayes", "random_forest"):
            est = joblib.load(svc.registry.path(done["model_id"]) / "model.joblib")
            assert list(est.classes_) == list(CLASSES), table  # the public classes, never the rows'
            if method == "naive_bayes":
                assert np.all(est.class_prior_ > 0), table  # no class is given prior 0
        if method == "pate":
            assert {"labelled", "abstained", "queries"} <= set(card["training"])
    reference = shapes.pop("two_classes")
    for table, shape in shapes.items():
        assert shape == reference, table


def test_naive_bayes_without_positives_no_longer_predicts_exactly_zero() -> None:
    """The leak the review found: diffprivlib's GaussianNB, fitted on one class, gave class 1 prior 0."""
    spec = build_spec({"columns": CARDS_COLUMNS}, unit="customer_id", label="default", positive="Yes", features=None)
    frame = card_customers(2000, seed=5)
    x = spec.encode(frame)
    model = fit_classic("naive_bayes", epsilon=1.0, spec=spec, params={}, x=x, y=np.zeros(len(x)))
    assert list(model.classes_) == [0, 1] and model.theta_.shape == (2, spec.width)
    assert positive_proba(model, x).max() > 0


@pytest.mark.parametrize("method", ["logreg", "naive_bayes", "random_forest"])
@pytest.mark.parametrize("rows", ["one_class", "no_rows", "constant"])
def test_classic_models_fit_over_the_public_classes(method: str, rows: str) -> None:
    spec = build_spec({"columns": CARDS_COLUMNS}, unit="customer_id", label="default", positive="Yes", features=None)
    frame = card_customers(500, seed=6)
    x, y = spec.encode(frame), spec.label.positives(frame["default"])[0]
    if rows == "one_class":
        y = np.ones(len(x))  # only positives this time
    elif rows == "no_rows":
        x, y = x[:0], y[:0]
    else:
        x = np.full_like(x, 0.5)
    params = {"logreg": {"C": 1.0, "max_iter": 100}, "naive_bayes": {},
              "random_forest": {"n_estimators": 5, "max_depth": 3}}[method]  # fmt: skip
    model = fit_classic(method, epsilon=1.0, spec=spec, params=params, x=x, y=y)
    assert list(model.classes_) == [0, 1]
    test = spec.encode(card_customers(20, seed=7))
    p = positive_proba(model, test)
    assert p.shape == (20,) and np.all((p >= 0) & (p <= 1))
    assert model.predict_proba(test.astype(np.float64)).shape == (20, 2)
    assert positive_proba(model, test[:0]).shape == (0,)


def test_noisy_metrics_have_one_shape_for_any_held_out_part() -> None:
    """Empty, one-class or two-class held-out rows: the same keys, from one noisy release; a null is a
    function of the noisy counts alone."""
    keys = None
    for scores, y in (
        (np.zeros(0), np.zeros(0)),
        (np.full(50, 0.2), np.zeros(50)),
        (np.linspace(0, 1, 50), (np.arange(50) % 2).astype(np.float64)),
    ):
        out = dp_metrics(scores, y, epsilon=1, k=1)
        keys = keys or set(out)
        assert set(out) == keys and out["bins"] == 34


@pytest.mark.parametrize(
    ("label", "meta", "positive", "field"),
    [
        ("grade", {"type": "category"}, None, "positive"),  # no public category list, no positive value
        ("grade", {"type": "category", "categories": ["A"]}, None, "positive"),  # one class: not a task
        ("score", {"type": "int", "lower": 0, "upper": 10}, None, "positive"),
        ("amount", {"type": "float", "lower": 0, "upper": 10}, 1.0, "label"),
        ("grade", {"type": "category", "categories": ["A", "B"]}, "C", "positive"),  # not a public class
    ],
)
@pytest.mark.parametrize("method", ["logreg", "dpsgd", "pate"])
def test_a_label_without_public_classes_is_refused_before_any_charge(
    env: Env, method: str, label: str, meta: dict[str, Any], positive: Any, field: str
) -> None:
    table = env.metas["cards"]["tables"]["card_customers"]
    env.metas["cards"]["tables"]["graded"] = {**table, "columns": {**table["columns"], label: meta}}
    svc = env.service()
    body = {"dataset": "cards", "table": "graded", "label": label, "method": method, **BODIES[method]}
    if positive is not None:
        body["positive"] = positive
    before = env.ledger.remaining_cost("alice", "cards")
    with pytest.raises(InvalidJob) as info:
        svc.start("alice", body)
    assert info.value.code == "invalid_request" and info.value.to_dict()["field"] == field
    assert env.ledger.entries() == [] and env.ledger.remaining_cost("alice", "cards") == before
    assert env.reader.calls == [] and svc.store.active_job_ids() == []
