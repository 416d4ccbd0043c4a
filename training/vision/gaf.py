"""Gramian Angular Field (GAF) images of short time series, and the 4-channel candlestick encoding of the
GAF-CNN work.

Definition (Wang & Oates, "Imaging time-series to improve classification and imputation", IJCAI 2015;
used by Chen & Tsai, "Encoding candlesticks as images for pattern classification using convolutional
neural networks", Financial Innovation 6:26, 2020):

1. rescale the window ``x_1..x_T`` by its own min and max, ``x~_i = (x_i - min x) / (max x - min x)``,
   onto ``[0, 1]`` (the default here, and what GAF-CNN does) or, with ``sample_range=(-1, 1)``, onto
   ``[-1, 1]`` (``2 x~ - 1``);
2. polar angle ``phi_i = arccos(x~_i)`` (in ``[0, pi/2]`` for ``[0, 1]``, in ``[0, pi]`` for ``[-1, 1]``);
3. GASF ``G_ij = cos(phi_i + phi_j) = x~_i x~_j - sqrt(1 - x~_i^2) sqrt(1 - x~_j^2)``,
   GADF ``D_ij = sin(phi_i - phi_j) = sqrt(1 - x~_i^2) x~_j - x~_i sqrt(1 - x~_j^2)``.

The GASF is symmetric with diagonal ``cos(2 phi_i) = 2 x~_i^2 - 1``; the GADF is antisymmetric with a zero
diagonal; every entry lies in ``[-1, 1]``. Both are computed here from the algebraic forms (no arccos
round trip), vectorised over a batch of windows.

Constant window (``max == min`` exactly, the rescaling is 0/0): the image is all zeros. That is the convention
of the GAF-CNN authors' code (``ts2gasf`` returns ``np.zeros`` when ``max_v == min_v``), and it is the
one value that says "no variation" without pretending the series sits at either end of the range
(pyts, by contrast, maps a constant series to the lower end of ``sample_range``, which gives an all
``-1`` GASF for ``[0, 1]``). It matters for candles: a window whose candles have no upper shadow at all
has a constant upper-shadow channel.

Each window is rescaled by its own min/max only, so the image of a window is a function of that window
alone: with the window as the privacy unit, the encoding is a per-record map and reads nothing from
other windows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ._ohlc import as_ohlc_windows

__all__ = ["CHANNELS", "culr", "encode_candles", "gadf", "gaf", "gasf", "rescale"]

#: channel order of `encode_candles` (the "CULR" feature set of GAF-CNN)
CHANNELS: tuple[str, ...] = ("close", "upper_shadow", "lower_shadow", "real_body")

Method = Literal["summation", "difference"]


def _as_batch(batch: np.ndarray) -> np.ndarray:
    arr = np.asarray(batch, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"expected a batch of windows of shape (n, T), got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError("windows must have at least one point")
    if not np.all(np.isfinite(arr)):
        raise ValueError("windows must be finite (no NaN or inf)")
    return arr


def rescale(
    batch: np.ndarray, *, sample_range: tuple[float, float] = (0.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Min-max rescale each row of ``batch`` (n, T) onto ``sample_range`` ((0, 1) or (-1, 1)).

    Returns ``(x_tilde, constant)``: the rescaled rows, clipped into the range against rounding, and a
    boolean (n,) mask of the constant rows, whose ``x_tilde`` is set to 0 (their image is all zeros).
    """
    lo, hi = (float(v) for v in sample_range)
    if (lo, hi) not in ((0.0, 1.0), (-1.0, 1.0)):
        raise ValueError("sample_range must be (0, 1) or (-1, 1): arccos needs values in [-1, 1]")
    arr = _as_batch(batch)
    mn = arr.min(axis=1, keepdims=True)
    mx = arr.max(axis=1, keepdims=True)
    span = mx - mn
    constant = span[:, 0] == 0  # exactly, as in the GAF-CNN code (``if max_v == min_v``)
    safe = np.where(span > 0, span, 1.0)
    unit = (arr - mn) / safe  # in [0, 1]
    x = unit * (hi - lo) + lo
    x = np.clip(x, lo, hi)
    x[constant] = 0.0
    return x, constant


def gaf(
    batch: np.ndarray,
    *,
    method: Method = "summation",
    sample_range: tuple[float, float] = (0.0, 1.0),
) -> np.ndarray:
    """GAF images (n, T, T) of a batch of windows (n, T): GASF (``method="summation"``) or GADF
    (``method="difference"``). Constant windows give all-zero images (see the module docstring)."""
    x, constant = rescale(batch, sample_range=sample_range)
    s = np.sqrt(np.clip(1.0 - x * x, 0.0, 1.0))  # sin(phi) >= 0 since phi in [0, pi]
    if method == "summation":
        # cos(phi_i + phi_j) = cos phi_i cos phi_j - sin phi_i sin phi_j
        out = x[:, :, None] * x[:, None, :] - s[:, :, None] * s[:, None, :]
    elif method == "difference":
        # sin(phi_i - phi_j) = sin phi_i cos phi_j - cos phi_i sin phi_j
        out = s[:, :, None] * x[:, None, :] - x[:, :, None] * s[:, None, :]
    else:
        raise ValueError(f"method must be 'summation' or 'difference', got {method!r}")
    out = np.clip(out, -1.0, 1.0)
    out[constant] = 0.0
    return out


def gasf(batch: np.ndarray, *, sample_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Gramian Angular Summation Field: (n, T) -> (n, T, T), ``cos(phi_i + phi_j)``."""
    return gaf(batch, method="summation", sample_range=sample_range)


def gadf(batch: np.ndarray, *, sample_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Gramian Angular Difference Field: (n, T) -> (n, T, T), ``sin(phi_i - phi_j)``."""
    return gaf(batch, method="difference", sample_range=sample_range)


def culr(ohlc: np.ndarray) -> np.ndarray:
    """The CULR features (n, T, 4) of OHLC windows (n, T, 4) (columns open, high, low, close):
    close, upper shadow ``high - max(open, close)``, lower shadow ``min(open, close) - low``, and the
    signed real body ``close - open``."""
    arr = as_ohlc_windows(ohlc)
    o, h, l, c = (arr[..., k] for k in range(4))
    return np.stack([c, h - np.maximum(o, c), np.minimum(o, c) - l, c - o], axis=-1)


def encode_candles(
    ohlc: np.ndarray,
    *,
    method: Method = "summation",
    sample_range: tuple[float, float] = (0.0, 1.0),
) -> np.ndarray:
    """GAF-CNN's candlestick image: OHLC windows (n, T, 4) -> (n, T, T, 4), one GAF per CULR channel
    (order `CHANNELS`).

    Normalisation, as in GAF-CNN: each channel is min-max rescaled on its own, within its window, onto
    [0, 1] (the authors' ``get_gasf`` loops over the 4 channels of each window and calls ``ts2gasf``
    with that channel's own ``amax``/``amin``; its to-do note "add normalization together version"
    records that a joint normalisation of the channels was considered and not used). So the shadows and
    the body are *not* scaled by the window's price range: each channel image shows the shape of that
    channel's sequence, not its size relative to the price, and a channel that is constant in the
    window (say, no upper shadow on any day) gives an all-zero image.
    """
    feats = culr(ohlc)
    n, t, k = feats.shape
    flat = np.moveaxis(feats, 2, 1).reshape(n * k, t)  # (n*4, T), row = (window, channel)
    img = gaf(flat, method=method, sample_range=sample_range).reshape(n, k, t, t)
    return np.moveaxis(img, 1, 3)
