"""Job bodies: validation before anything is read, named tasks, parameters."""

from __future__ import annotations

from fractions import Fraction

import pytest

from training.errors import InvalidJob
from training.jobs import METHODS, parse_job

BASE = {
    "dataset": "cards", "table": "card_customers", "label": "default", "positive": "Yes", "epsilon": 1, "delta": 1e-6,
}  # fmt: skip


def test_a_named_task_fills_dataset_table_label_and_positive():
    job = parse_job({"task": "fraud", "method": "dpsgd", "epsilon": "0.5", "delta": 1e-6})
    assert (job.dataset, job.table, job.label, job.positive) == ("cards", "transactions", "is_fraud", True)
    assert job.epsilon == Fraction(1, 2) and job.delta == Fraction(1, 10**6)
    job = parse_job({"task": "credit_default", "method": "logreg", "epsilon": 1})
    assert (job.table, job.label, job.positive, job.delta) == ("card_customers", "default", "Yes", 0)


def test_defaults_are_filled_in_and_exact():
    job = parse_job(BASE)
    assert job.method == "dpsgd"
    assert set(job.params) == set(METHODS["dpsgd"])
    assert job.params["metrics_share"] == 0.1 and job.params["batch_size"] == 1024 and job.params["hidden"] == []
    assert job.epsilon == 1 and job.delta == Fraction("1e-6")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"epsilon": None}, "epsilon"),
        ({"epsilon": -1}, "epsilon"),
        ({"epsilon": 0}, "epsilon"),
        ({"epsilon": 1000}, "epsilon"),
        ({"epsilon": "lots"}, "epsilon"),
        ({"epsilon": True}, "epsilon"),
        ({"delta": 0}, "delta"),  # DP-SGD needs δ > 0
        ({"delta": 1.5}, "delta"),
        ({"method": "pate"}, "public_table"),  # PATE needs its public table
        ({"method": "pate", "public_table": "p", "delta": 0}, "delta"),
        ({"method": "pate", "public_table": "p", "params": {"aggregator": "max"}}, "params.aggregator"),
        ({"method": "pate", "public_table": "p", "params": {"teachers": 1}}, "params.teachers"),
        ({"method": "boosting"}, "method"),
        ({"dataset": None}, "dataset"),
        ({"label": 7}, "label"),
        ({"features": "balance"}, "features"),
        ({"features": []}, "features"),
        ({"positive": {"a": 1}}, "positive"),
        ({"params": {"epochs": 0}}, "params.epochs"),
        ({"params": {"epochs": "many"}}, "params.epochs"),
        ({"params": {"batch_size": 2.5}}, "params.batch_size"),
        ({"params": {"hidden": [0]}}, "params.hidden"),
        ({"params": {"grad_sample_mode": "ew"}}, "params.grad_sample_mode"),
        ({"params": {"metrics_share": 0.9}}, "params.metrics_share"),
        ({"params": {"n_estimators": 3}}, "params.n_estimators"),  # a random-forest parameter
        ({"params": [1]}, "params"),
        ({"method": "logreg", "delta": 0, "public_table": "x"}, "public_table"),  # pate's and dpsgd's only
        ({"public_table": ""}, "public_table"),
        ({"task": "credit_default", "table": "transactions"}, "table"),
        ({"task": "nope"}, "task"),
    ],
)
def test_invalid_bodies_are_refused_with_the_field(change, field):
    body = {**BASE, **change}
    body = {k: v for k, v in body.items() if v is not None or k not in ("epsilon", "dataset")}
    with pytest.raises(InvalidJob) as info:
        parse_job(body)
    assert info.value.code == "invalid_request" and info.value.status == 400
    assert info.value.to_dict()["field"] == field


def test_pate_takes_a_public_table_and_its_own_parameters():
    job = parse_job({**BASE, "method": "pate", "public_table": "pub", "params": {"teachers": 50, "aggregator": "confident_gnmax"}})
    assert job.public_table == "pub" and job.params["teachers"] == 50 and job.params["aggregator"] == "confident_gnmax"
    assert job.params["queries"] == 500 and "max_grad_norm" not in job.params
    assert type(job).from_json(job.to_json()) == job


def test_classic_methods_take_their_own_parameters_and_need_no_delta():
    job = parse_job({**BASE, "method": "random_forest", "delta": 0, "params": {"n_estimators": 3, "max_depth": 4}})
    assert job.params["n_estimators"] == 3 and job.params["rows_per_unit"] == 1
    with pytest.raises(InvalidJob):
        parse_job({**BASE, "method": "logreg", "params": {"batch_size": 3}})


def test_a_body_must_be_an_object():
    with pytest.raises(InvalidJob):
        parse_job(["not", "an", "object"])
