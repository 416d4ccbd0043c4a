"""Feature encoding uses the declared metadata only: bounds, category lists, nullability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.errors import InvalidJob
from training.features import build_spec

COLUMNS = {
    "uid": {"type": "id"},
    "amount": {"type": "float", "lower": 0, "upper": 1000},
    "qty": {"type": "int", "lower": 0, "upper": 10, "nullable": True},
    "term": {"type": "category", "categories": [36, 60]},
    "seg": {"type": "category", "categories": ["retail", "private"], "nullable": True},
    "ts": {"type": "date", "lower": "2025-01-01", "upper": "2025-01-11"},
    "vip": {"type": "bool"},
    "label": {"type": "bool"},
    "free_text": {"type": "category"},  # no public list
    "raw": {"type": "float"},  # no bounds
}


def spec(features=None):
    return build_spec({"columns": COLUMNS}, unit="uid", label="label", positive=None, features=features)


def test_numbers_and_dates_scale_by_declared_bounds_and_clamp():
    s = spec(["amount", "ts"])
    frame = pd.DataFrame(
        {
            # data outside the bounds on both sides; its own min/max/mean are nowhere near them
            "amount": [-250.0, 0.0, 250.0, 1000.0, 9999.0],
            "ts": pd.to_datetime(["2024-06-01", "2025-01-01", "2025-01-06", "2025-01-11", "2026-01-01"]),
        }
    )
    x = s.encode(frame)
    np.testing.assert_allclose(x[:, 0], [0.0, 0.0, 0.25, 1.0, 1.0])
    np.testing.assert_allclose(x[:, 1], [0.0, 0.0, 0.5, 1.0, 1.0])
    # a value's encoding does not depend on the other rows
    alone = s.encode(frame.iloc[[2]])
    np.testing.assert_allclose(alone[0], x[2])


def test_timestamps_add_time_of_day_and_weekday_on_circles():
    cols = {"u": {"type": "id"}, "y": {"type": "bool"},
            "at": {"type": "date", "lower": "2025-01-01T00:00:00", "upper": "2026-01-01T00:00:00", "nullable": True}}
    s = build_spec({"columns": cols}, unit="u", label="y", positive=None, features=None)
    assert s.output_names() == ["at", "at:hour_sin", "at:hour_cos", "at:weekday_sin", "at:weekday_cos", "at:null"]
    # 06:00 on a Wednesday (2025-01-01): hour angle pi/2, weekday angle 2pi*2/7; then a NULL
    x = s.encode(pd.DataFrame({"at": pd.to_datetime(["2025-01-01 06:00", None])}))
    w = 2 * np.pi * 2 / 7
    np.testing.assert_allclose(x[0], [6 / 8760, 1.0, 0.5, (np.sin(w) + 1) / 2, (np.cos(w) + 1) / 2, 0], atol=1e-6)
    np.testing.assert_array_equal(x[1], [0, 0, 0, 0, 0, 1])
    assert np.linalg.norm(x, axis=1).max() <= s.max_norm


def test_categories_one_hot_by_public_list_and_unseen_values_are_all_zero():
    s = spec(["term", "seg"])
    assert s.output_names() == ["term=36", "term=60", "seg=retail", "seg=private", "seg:null"]
    frame = pd.DataFrame(
        {
            # the engine hands categories over as VARCHAR: "36" matches the declared 36
            "term": ["36", "60", "48", None],
            "seg": ["retail", "wholesale", None, "private"],
        }
    )
    x = s.encode(frame)
    np.testing.assert_array_equal(
        x,
        [
            [1, 0, 1, 0, 0],
            [0, 1, 0, 0, 0],  # "wholesale" is not in the list: all zeros, no null flag
            [0, 0, 0, 0, 1],  # "48" unseen; seg NULL -> its indicator
            [0, 0, 0, 1, 0],  # term NULL on a non-nullable column: zeros
        ],
    )


def test_nulls_are_explicit_for_nullable_columns():
    s = spec(["qty", "vip"])
    assert s.output_names() == ["qty", "qty:null", "vip"]
    frame = pd.DataFrame({"qty": pd.array([5, None, 20], dtype="Int64"), "vip": [True, False, None]})
    x = s.encode(frame)
    np.testing.assert_allclose(x, [[0.5, 0, 1], [0, 1, 0], [1, 0, 0]])


def test_default_features_skip_ids_label_and_unencodable_columns():
    s = spec()
    assert [c.name for c in s.columns] == ["amount", "qty", "term", "seg", "ts", "vip"]
    assert set(s.skipped) == {"free_text", "raw"}


@pytest.mark.parametrize(
    ("features", "words"),
    [
        (["raw"], "no declared [lower, upper] bounds"),
        (["free_text"], "no public category list"),
        (["uid"], "id column"),
        (["label"], "cannot be a feature"),
        (["nope"], "unknown feature"),
        (["amount", "amount"], "twice"),
    ],
)
def test_features_that_cannot_be_encoded_from_metadata_are_refused(features, words):
    with pytest.raises(InvalidJob) as info:
        spec(features)
    assert info.value.code == "invalid_request" and words in info.value.message
    assert info.value.to_dict()["field"] == "features"


def test_label_positive_is_checked_against_the_public_list():
    cols = {"u": {"type": "id"}, "y": {"type": "category", "categories": ["No", "Yes"]}, "a": COLUMNS["amount"]}
    with pytest.raises(InvalidJob, match="positive"):
        build_spec({"columns": cols}, unit="u", label="y", positive="Maybe", features=None)
    with pytest.raises(InvalidJob, match="needs `positive`"):
        build_spec({"columns": {**cols, "n": {"type": "int", "lower": 0, "upper": 3}}}, unit="u", label="n",
                   positive=None, features=["a"])  # fmt: skip
    s = build_spec({"columns": cols}, unit="u", label="y", positive="Yes", features=None)
    assert (s.label.positive, s.label.negative) == ("Yes", "No")
    y, known = s.label.positives(pd.Series(["Yes", "No", None]))
    np.testing.assert_array_equal(y[known], [1, 0])
    assert known.tolist() == [True, True, False]


def test_the_max_norm_bounds_every_encoded_row():
    s = spec(["amount", "qty", "term", "seg", "ts", "vip"])
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "amount": rng.uniform(-5000, 5000, 500),
            "qty": pd.array(np.where(rng.random(500) < 0.2, None, rng.integers(0, 30, 500)), dtype="Int64"),
            "term": rng.choice(["36", "60", "x"], 500),
            "seg": rng.choice(["retail", "private", None], 500),
            "ts": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(-10, 30, 500), unit="D"),
            "vip": rng.random(500) < 0.5,
        }
    )
    x = s.encode(frame)
    assert x.min() >= 0 and x.max() <= 1
    assert np.linalg.norm(x, axis=1).max() <= s.max_norm + 1e-6


class TestPredictionRows:
    def test_good_rows_encode_like_training_rows(self):
        s = spec(["amount", "qty", "term", "seg", "ts", "vip"])
        x = s.encode_rows([{"amount": 250, "qty": None, "term": 60, "seg": "retail", "ts": "2025-01-06", "vip": True}])
        # ts 2025-01-06 is a Monday: weekday angle 0 -> ((sin+1)/2, (cos+1)/2) = (0.5, 1)
        np.testing.assert_allclose(x[0], [0.25, 0, 1, 0, 1, 1, 0, 0, 0.5, 0.5, 1, 1], atol=1e-7)

    @pytest.mark.parametrize(
        ("row", "field", "words"),
        [
            ({"amount": 1, "secret-column": 3, "vip": True, "term": 36}, "rows[1].secret-column", "unknown feature"),
            ({"vip": True, "term": 36}, "rows[1].amount", "missing required feature"),
            ({"amount": "s3cr3t-value", "vip": True, "term": 36}, "rows[1].amount", "must be a number"),
            ({"amount": True, "vip": True, "term": 36}, "rows[1].amount", "must be a number"),
            ({"amount": float("nan"), "vip": True, "term": 36}, "rows[1].amount", "finite"),
            ({"amount": 1, "vip": "yes-s3cr3t", "term": 36}, "rows[1].vip", "true or false"),
            ({"amount": 1, "vip": True, "term": {"x": 1}}, "rows[1].term", "string or number"),
            ({"amount": 1, "vip": True, "term": 36, "ts": "not-a-date-s3cr3t"}, "rows[1].ts", "ISO date"),
        ],
    )
    def test_bad_rows_name_the_row_and_field_but_not_the_value(self, row, field, words):
        s = spec(["amount", "vip", "term", "ts"]) if "ts" in row else spec(["amount", "vip", "term"])
        good = {"amount": 1, "vip": False, "term": 60}
        if "ts" in row:
            good["ts"] = "2025-01-02"
        with pytest.raises(InvalidJob) as info:
            s.encode_rows([good, row])
        err = info.value
        assert err.code == "invalid_request" and err.status == 400
        assert err.fields["row"] == 1 and err.fields["field"] == field
        assert words in err.message and "row 1" in err.message
        assert "s3cr3t" not in str(err.to_dict())

    @pytest.mark.parametrize("rows", [[], "abc", [1, 2], None])
    def test_rows_must_be_a_list_of_objects(self, rows):
        with pytest.raises(InvalidJob):
            spec(["amount"]).encode_rows(rows)


def test_a_category_label_without_positive_is_multiclass_over_its_public_list():
    cols = {"u": {"type": "id"}, "y": {"type": "category", "categories": ["up", "down", "flat"]},
            "a": COLUMNS["amount"]}  # fmt: skip
    s = build_spec({"columns": cols}, unit="u", label="y", positive=None, features=None)
    assert s.label.multiclass and s.label.classes == ("up", "down", "flat") and s.label.n_classes == 3
    y, known = s.label.codes(pd.Series(["flat", "up", None, "sideways", "down"]))
    assert known.tolist() == [True, True, False, False, True]
    np.testing.assert_array_equal(y[known], [2, 0, 1])
    assert [s.label.class_name(i) for i in range(3)] == ["up", "down", "flat"]
    with pytest.raises(ValueError, match="multi-class"):
        s.label.positives(pd.Series(["up"]))
    back = type(s).from_json(s.to_json())
    assert back.label == s.label
    # binary labels keep their codes: 1 = positive
    b = build_spec({"columns": cols}, unit="u", label="y", positive="up", features=None)
    y, known = b.label.codes(pd.Series(["up", "down", None]))
    assert y.tolist()[:2] == [1, 0] and known.tolist() == [True, True, False] and b.label.class_name(1) == "up"
