"""Input checks shared by the vision modules."""

from __future__ import annotations

import numpy as np

OHLC_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")


def as_ohlc_windows(ohlc: np.ndarray) -> np.ndarray:
    """``ohlc`` as a float64 array (n, T, 4) of finite, consistent candles (columns open, high, low,
    close, with ``low <= min(open, close)`` and ``high >= max(open, close)``); ValueError otherwise."""
    arr = np.asarray(ohlc, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != 4:
        raise ValueError(f"expected OHLC windows of shape (n, T, 4), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("OHLC values must be finite")
    o, h, l, c = (arr[..., k] for k in range(4))
    if np.any(h < np.maximum(o, c)) or np.any(l > np.minimum(o, c)):
        raise ValueError("inconsistent candles: need low <= min(open, close) and high >= max(open, close)")
    return arr
