"""Rule-based candlestick pattern detectors, vectorised over windows of OHLC candles.

Label set (`CLASSES`): the eight patterns of GAF-CNN (Chen & Tsai, Financial Innovation 6:26, 2020),
whose authors' code lists them as ``["no_class", "evening", "morning", "bearish_engulfing",
"bullish_engulfing", "shooting_star", "inverted_hammer", "bearish_harami", "bullish_harami"]``, class 0
being "no pattern". They come in four bullish/bearish mirror pairs:

=====================  =======  =======  ================================================================
class                  candles  trend    rule (last candle ``c``, the one before ``p``, before it ``q``)
=====================  =======  =======  ================================================================
``evening_star``       3        up       ``q`` long white; ``p`` short body whose centre is at or
                                         above ``q``'s close; ``c`` black, closing at least
                                         ``penetration`` (0.3) of ``q``'s body below ``q``'s close
``morning_star``       3        down     mirror: ``q`` long black; ``p`` short, centre at or below
                                         ``q``'s close; ``c`` white, closing at least 0.3 of ``q``'s
                                         body above ``q``'s close
``bearish_engulfing``  2        up       ``p`` white; ``c`` black whose body covers ``p``'s body
                                         (one end may be equal, not both)
``bullish_engulfing``  2        down     mirror: ``p`` black; ``c`` white covering it
``shooting_star``      1        up       ``c`` has a short body, an upper shadow at least twice its
                                         body and at least half a reference body long, and a lower
                                         shadow at most half the upper (so the body sits in the lower
                                         half of the candle's range)
``inverted_hammer``    1        down     ``c`` of the same shape as the shooting star
``bearish_harami``     2        up       ``p`` long white; ``c`` black whose body lies inside ``p``'s
                                         body (one end may be equal, not both)
``bullish_harami``     2        down     mirror: ``p`` long black; ``c`` white inside it
=====================  =======  =======  ================================================================

Why these eight: they are GAF-CNN's (and so the study's) label set, each is a named pattern whose
bullish/bearish twin is also in the set, and each is fixed by its candles' shapes together with the
prior trend. The issue also names the hammer and the hanging man; they are detected here
(`EXTRA_PATTERNS`, usable with ``classes=ALL_PATTERNS``) but left out of the label set, as in GAF-CNN,
so that results stay comparable with the study's.

The rules follow the standard definitions (Nison, *Japanese Candlestick Charting Techniques*, 2nd ed.
2001; TA-Lib's ``CDL*`` functions for the numbers). An earlier version was stricter than they are in
three places, which left 14 inverted hammers in 66 years of the S&P 500; it was loosened to them:

* engulfing: Nison asks for a trend, opposite colours and a second real body that engulfs the first;
  the first body may be small (TA-Lib's ``CDLENGULFING`` sets no size either). The earlier version
  asked for a long first body, which kept one engulfing in six;
* shooting star and inverted hammer: Nison's shape is one candle after the trend, a small real body at
  the lower end of the range, an upper shadow at least twice the body (his measure for the hammer
  family) and little lower shadow; a gap from the prior body is "ideal", not required, and the prior
  candle's size and colour are no part of the definition. The earlier version required a long prior
  candle of the trend's colour and the star's body beyond its centre, and an upper shadow of a whole
  reference body;
* morning and evening star: the third candle must close "well into" the first body; TA-Lib's default
  penetration is 0.3 of that body (`Rules.penetration`), where the earlier version asked for half.

Two conditions remain that the textbooks leave out or leave loose: the star's upper shadow must be at
least half the reference body long (``long_shadow``), so that a near-doji day with a flick of an upper
shadow is not a star (TA-Lib compares the shadow with the candle's own body only); and the harami's
second candle has the opposite colour (Nison's usual case; he allows the same colour).

Overlaps, and `NO_PATTERN`. A longer pattern can contain a shorter one: the third candle of a morning
star often engulfs the star, and a small candle inside a long body may have a star's shadow. The longest
pattern that fires is the label: it explains the most candles, and the shorter one is a part of it.
Only when two patterns of that same length fire is the window ambiguous; `detect` then returns None,
as it does when no rule fires, so that every labelled window has exactly one well-defined class. (With
the default rules no two patterns of one length can fire together: the trend, the colours and the
shadows exclude each other; custom `Rules` may allow it.)

Definitions, all computed inside the window, so that a window's label is a function of that window
alone (the window is the privacy unit):

* body ``c - o`` (white if > 0, black if < 0), top/bottom ``max/min(o, c)``, body centre ``(o + c)/2``,
  upper shadow ``h - top``, lower shadow ``bottom - l``, range ``h - l``;
* the *context* of a k-candle pattern is the ``trend_len`` (7) candles just before its first candle
  (GAF-CNN takes the trend as the regression slope of the 7 closes before the pattern); a 10-candle
  window holds the context of every pattern (7 + 3);
* reference sizes: ``ref_body`` and ``ref_range`` are the context's mean absolute body and mean range
  (TA-Lib's candle settings likewise compare a candle with averages over the candles before it);
  long body ``>= long_body * ref_body`` (1x), short body ``< short_body * ref_body`` (1x: TA-Lib's
  "BodyLong"/"BodyShort" compare with the average body alike);
* trend: least-squares slope ``b`` of the context's closes; the fitted move ``b * (trend_len - 1)`` is
  an uptrend when ``>= trend_min * ref_range`` and a downtrend when ``<= -trend_min * ref_range``, with
  ``trend_min = 0.5`` (scale free, so one threshold serves the index at 60 and at 2,000 points).

Two readings are looser than the textbook, because of the data: daily S&P 500 candles rarely have the
"little or no" opposite shadow of textbook stars and hammers (on volatile days both shadows are long),
so the opposite shadow may be up to half the long one; and from 1962 to the early 1980s the index's
open is mostly the previous close, so the star's gap is relaxed to a body-centre condition, as
GAF-CNN's own rules do.

A window whose context has no body at all (``ref_body == 0``, e.g. the S&P 500 rows before 1962 carry
open = high = low = close) gets no label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ._ohlc import as_ohlc_windows

__all__ = [
    "ALL_PATTERNS",
    "CLASSES",
    "EXTRA_PATTERNS",
    "NO_PATTERN",
    "PATTERN_LENGTH",
    "Rules",
    "detect",
    "label_codes",
    "label_windows",
    "match_matrix",
]

#: the 8 labels, in GAF-CNN's order (its class 0, "no pattern", is `NO_PATTERN`)
CLASSES: tuple[str, ...] = (
    "evening_star",
    "morning_star",
    "bearish_engulfing",
    "bullish_engulfing",
    "shooting_star",
    "inverted_hammer",
    "bearish_harami",
    "bullish_harami",
)
#: detected, but not in the label set (see the module docstring)
EXTRA_PATTERNS: tuple[str, ...] = ("hammer", "hanging_man")
ALL_PATTERNS: tuple[str, ...] = CLASSES + EXTRA_PATTERNS
#: the rejection label's name where a string is needed (`detect` itself returns None)
NO_PATTERN = "no_pattern"

#: candles each pattern spans, ending at the window's last candle
PATTERN_LENGTH: dict[str, int] = {
    "evening_star": 3,
    "morning_star": 3,
    "bearish_engulfing": 2,
    "bullish_engulfing": 2,
    "shooting_star": 1,
    "inverted_hammer": 1,
    "bearish_harami": 2,
    "bullish_harami": 2,
    "hammer": 1,
    "hanging_man": 1,
}


@dataclass(frozen=True)
class Rules:
    """Thresholds of the detectors (defaults as described in the module docstring)."""

    trend_len: int = 7  # context candles before the pattern
    trend_min: float = 0.5  # |fitted move over the context| in mean ranges for a trend
    long_body: float = 1.0  # long body: |body| >= long_body * ref_body
    short_body: float = 1.0  # short body: |body| < short_body * ref_body
    shadow_ratio: float = 2.0  # star/hammer: long shadow >= shadow_ratio * |body|
    long_shadow: float = 0.5  # ... and >= long_shadow * ref_body
    small_shadow: float = 0.5  # ... and the other shadow <= small_shadow * long shadow
    penetration: float = 0.3  # star: c closes this share of q's body into it (TA-Lib's default)

    def __post_init__(self) -> None:
        if self.trend_len < 2:
            raise ValueError("trend_len must be at least 2 (a slope needs two closes)")
        names = ("trend_min", "long_body", "short_body", "shadow_ratio", "long_shadow", "small_shadow", "penetration")
        for name in names:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0")

    def min_window(self, classes: Sequence[str] = CLASSES) -> int:
        """The shortest window that holds the context and candles of every class in ``classes``."""
        return self.trend_len + max(PATTERN_LENGTH[c] for c in classes)


DEFAULT_RULES = Rules()


class _Candles:
    """Per-candle quantities of a batch of windows (n, T, 4), and the context statistics."""

    def __init__(self, arr: np.ndarray, rules: Rules) -> None:
        self.rules = rules
        o, h, l, c = (arr[..., k] for k in range(4))
        self.open, self.high, self.low, self.close = o, h, l, c
        self.body = c - o
        self.abs_body = np.abs(self.body)
        self.top = np.maximum(o, c)
        self.bottom = np.minimum(o, c)
        self.mid = (o + c) / 2.0
        self.upper = h - self.top
        self.lower = self.bottom - l
        self.range = h - l
        self.T = arr.shape[1]
        self._context: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def context(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(trend, ref_body, ref_range) for a pattern of k candles ending at the last candle: trend is
        +1 (up), -1 (down) or 0, per window."""
        if k not in self._context:
            L = self.rules.trend_len
            stop = self.T - k
            start = stop - L
            closes = self.close[:, start:stop]
            ref_body = self.abs_body[:, start:stop].mean(axis=1)
            ref_range = self.range[:, start:stop].mean(axis=1)
            t = np.arange(L, dtype=np.float64) - (L - 1) / 2.0
            slope = (closes - closes.mean(axis=1, keepdims=True)) @ t / float(t @ t)
            move = slope * (L - 1)
            bar = self.rules.trend_min * ref_range
            trend = np.where(move >= bar, 1, np.where(move <= -bar, -1, 0))
            # no trend (and so no label) where the context is degenerate
            trend = np.where((ref_body > 0) & (ref_range > 0), trend, 0)
            self._context[k] = (trend, ref_body, ref_range)
        return self._context[k]

    # candle i counted from the end: -1 is the last candle
    def long(self, i: int, ref_body: np.ndarray) -> np.ndarray:
        return (self.abs_body[:, i] >= self.rules.long_body * ref_body) & (self.abs_body[:, i] > 0)

    def short(self, i: int, ref_body: np.ndarray) -> np.ndarray:
        return self.abs_body[:, i] < self.rules.short_body * ref_body

    def white(self, i: int) -> np.ndarray:
        return self.body[:, i] > 0

    def black(self, i: int) -> np.ndarray:
        return self.body[:, i] < 0

    def engulfs(self, i: int, j: int) -> np.ndarray:
        """Candle i's body covers candle j's body, strictly larger at one end at least."""
        ti, bi, tj, bj = self.top[:, i], self.bottom[:, i], self.top[:, j], self.bottom[:, j]
        return (ti >= tj) & (bi <= bj) & ((ti > tj) | (bi < bj))

    def inside(self, i: int, j: int) -> np.ndarray:
        """Candle i's body lies within candle j's body, strictly smaller at one end at least."""
        return self.engulfs(j, i)

    def star_shape(self, i: int, ref_body: np.ndarray) -> np.ndarray:
        """Inverted hammer / shooting star shape: short body, long upper shadow, little lower shadow."""
        r = self.rules
        up, lo = self.upper[:, i], self.lower[:, i]
        return (
            self.short(i, ref_body)
            & (up >= r.shadow_ratio * self.abs_body[:, i])
            & (up >= r.long_shadow * ref_body)
            & (lo <= r.small_shadow * up)
        )

    def hammer_shape(self, i: int, ref_body: np.ndarray) -> np.ndarray:
        """Hammer / hanging man shape: short body, long lower shadow, little upper shadow."""
        r = self.rules
        up, lo = self.upper[:, i], self.lower[:, i]
        return (
            self.short(i, ref_body)
            & (lo >= r.shadow_ratio * self.abs_body[:, i])
            & (lo >= r.long_shadow * ref_body)
            & (up <= r.small_shadow * lo)
        )


def _evening_star(k: _Candles) -> np.ndarray:
    trend, ref_body, _ = k.context(3)
    return (
        (trend == 1)
        & k.white(-3)
        & k.long(-3, ref_body)
        & k.short(-2, ref_body)
        & (k.mid[:, -2] >= k.close[:, -3])
        & k.black(-1)
        & (k.close[:, -1] <= k.close[:, -3] - k.rules.penetration * k.abs_body[:, -3])
    )


def _morning_star(k: _Candles) -> np.ndarray:
    trend, ref_body, _ = k.context(3)
    return (
        (trend == -1)
        & k.black(-3)
        & k.long(-3, ref_body)
        & k.short(-2, ref_body)
        & (k.mid[:, -2] <= k.close[:, -3])
        & k.white(-1)
        & (k.close[:, -1] >= k.close[:, -3] + k.rules.penetration * k.abs_body[:, -3])
    )


def _bearish_engulfing(k: _Candles) -> np.ndarray:
    trend, _, _ = k.context(2)
    return (trend == 1) & k.white(-2) & k.black(-1) & k.engulfs(-1, -2)


def _bullish_engulfing(k: _Candles) -> np.ndarray:
    trend, _, _ = k.context(2)
    return (trend == -1) & k.black(-2) & k.white(-1) & k.engulfs(-1, -2)


def _shooting_star(k: _Candles) -> np.ndarray:
    trend, ref_body, _ = k.context(1)
    return (trend == 1) & k.star_shape(-1, ref_body)


def _inverted_hammer(k: _Candles) -> np.ndarray:
    trend, ref_body, _ = k.context(1)
    return (trend == -1) & k.star_shape(-1, ref_body)


def _bearish_harami(k: _Candles) -> np.ndarray:
    trend, ref_body, _ = k.context(2)
    return (trend == 1) & k.white(-2) & k.long(-2, ref_body) & k.black(-1) & k.inside(-1, -2)


def _bullish_harami(k: _Candles) -> np.ndarray:
    trend, ref_body, _ = k.context(2)
    return (trend == -1) & k.black(-2) & k.long(-2, ref_body) & k.white(-1) & k.inside(-1, -2)


def _hammer(k: _Candles) -> np.ndarray:
    trend, ref_body, _ = k.context(1)
    return (trend == -1) & k.hammer_shape(-1, ref_body)


def _hanging_man(k: _Candles) -> np.ndarray:
    trend, ref_body, _ = k.context(1)
    return (trend == 1) & k.hammer_shape(-1, ref_body)


_DETECTORS: dict[str, Callable[[_Candles], np.ndarray]] = {
    "evening_star": _evening_star,
    "morning_star": _morning_star,
    "bearish_engulfing": _bearish_engulfing,
    "bullish_engulfing": _bullish_engulfing,
    "shooting_star": _shooting_star,
    "inverted_hammer": _inverted_hammer,
    "bearish_harami": _bearish_harami,
    "bullish_harami": _bullish_harami,
    "hammer": _hammer,
    "hanging_man": _hanging_man,
}


def _check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    classes = tuple(classes)
    unknown = [c for c in classes if c not in _DETECTORS]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct names from {ALL_PATTERNS}, got {classes}")
    return classes


def match_matrix(
    ohlc_windows: np.ndarray, classes: Sequence[str] = CLASSES, *, rules: Rules = DEFAULT_RULES
) -> np.ndarray:
    """Boolean (n, len(classes)): which rules fire on each window (n, T, 4) at its last candles."""
    classes = _check_classes(classes)
    arr = as_ohlc_windows(ohlc_windows)
    need = rules.min_window(classes)
    if arr.shape[1] < need:
        raise ValueError(f"windows of {arr.shape[1]} candles are too short: these rules need {need}")
    k = _Candles(arr, rules)
    return np.stack([_DETECTORS[c](k) for c in classes], axis=1)


def label_codes(matches: np.ndarray, classes: Sequence[str] = CLASSES) -> np.ndarray:
    """Int array (n,) from a `match_matrix` (n, len(classes)): the index in ``classes`` of the label,
    -1 where no rule fires, -2 where the longest patterns that fire are two or more (ambiguous).

    Among the rules that fire, only those of the longest pattern count (see the module docstring)."""
    classes = _check_classes(classes)
    m = np.asarray(matches, dtype=bool)
    if m.ndim != 2 or m.shape[1] != len(classes):
        raise ValueError(f"expected matches of shape (n, {len(classes)}), got {m.shape}")
    lengths = np.array([PATTERN_LENGTH[c] for c in classes])
    longest = np.where(m, lengths[None, :], 0).max(axis=1, initial=0)
    m = m & (lengths[None, :] == longest[:, None])
    hits = m.sum(axis=1)
    return np.where(hits == 1, m.argmax(axis=1), np.where(hits == 0, -1, -2))


def label_windows(
    ohlc_windows: np.ndarray, classes: Sequence[str] = CLASSES, *, rules: Rules = DEFAULT_RULES
) -> np.ndarray:
    """Object array (n,) of class names, or None where no rule fires or the window is ambiguous."""
    classes = _check_classes(classes)
    codes = label_codes(match_matrix(ohlc_windows, classes, rules=rules), classes)
    out = np.full(codes.shape[0], None, dtype=object)
    named = codes >= 0
    out[named] = np.array(classes, dtype=object)[codes[named]]
    return out


def detect(ohlc: np.ndarray, classes: Sequence[str] = CLASSES, *, rules: Rules = DEFAULT_RULES) -> str | None:
    """The pattern ending at the last candle of one window (T, 4), or None (no pattern, or ambiguous)."""
    arr = np.asarray(ohlc, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"expected one window of shape (T, 4), got shape {arr.shape}")
    return label_windows(arr[None], classes, rules=rules)[0]
