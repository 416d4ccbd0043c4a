"""The pattern detectors against hand-made candles: for every pattern a positive and near misses.

Every window has 10 candles. The candles before the pattern are a steady trend: in a downtrend each
candle is black with body 1 and shadows 0.5 (range 2) and the last close is 93; in an uptrend each is
white, same sizes, last close 107. So the reference body is 1, the reference range 2, and the fitted
move over the 7-candle context is 6, well past the trend bar of 0.5 * 2.
"""

from __future__ import annotations

import numpy as np
import pytest

from training.vision.patterns import (
    ALL_PATTERNS,
    CLASSES,
    EXTRA_PATTERNS,
    PATTERN_LENGTH,
    Rules,
    detect,
    label_codes,
    label_windows,
    match_matrix,
)

T = 10


def candle(o: float, h: float, l: float, c: float) -> list[float]:
    return [o, h, l, c]


def context(n: int, trend: str) -> list[list[float]]:
    """n candles ending at close 93 (down), 107 (up) or alternating around 93 (flat)."""
    out = []
    for k in range(n):
        if trend == "down":
            o = 93.0 + n - k
            c = o - 1.0
            out.append(candle(o, o + 0.5, c - 0.5, c))
        elif trend == "up":
            o = 107.0 - n + k
            c = o + 1.0
            out.append(candle(o, c + 0.5, o - 0.5, c))
        else:  # flat: white and black candles of body 1 in turn, the last closing at 93
            up = (n - k) % 2 == 0
            o, c = (92.0, 93.0) if up else (93.0, 92.0)
            out.append(candle(o, max(o, c) + 0.5, min(o, c) - 0.5, c))
    return out


def window(trend: str, *pattern: list[float]) -> np.ndarray:
    w = np.array(context(T - len(pattern), trend) + list(pattern))
    assert w.shape == (T, 4)
    return w


# ----------------------------------------------------------------------------- positives, one per class

LONG_BLACK = candle(93, 93.2, 89.8, 90)  # after the downtrend: body 3, centre 91.5
LONG_WHITE = candle(107, 110.2, 106.8, 110)  # after the uptrend: body 3, centre 108.5

POSITIVES = {
    # long black q (93 -> 90), short star p below q's close, white c closing above 90 + 0.3 * 3 = 90.9
    "morning_star": window(
        "down", LONG_BLACK, candle(89.8, 90, 89.3, 89.6), candle(89.8, 92.2, 89.7, 92)
    ),
    "evening_star": window(
        "up", LONG_WHITE, candle(110.2, 110.7, 110, 110.4), candle(110.2, 110.3, 107.8, 108)
    ),
    # long black p (93 -> 91), white c from 90.5 to 93.5 covering it
    "bullish_engulfing": window("down", candle(93, 93.2, 90.8, 91), candle(90.5, 93.7, 90.3, 93.5)),
    "bearish_engulfing": window("up", candle(107, 109.2, 106.8, 109), candle(109.5, 109.7, 106.3, 106.5)),
    # long black p (93 -> 90), small white c inside it
    "bullish_harami": window("down", LONG_BLACK, candle(90.5, 91.7, 90.3, 91.5)),
    "bearish_harami": window("up", LONG_WHITE, candle(109.5, 109.7, 108.3, 108.5)),
    # one candle after the trend (here after a long candle of the trend's colour, which the rule does not
    # need): body 0.2 at the bottom, upper shadow 1.2, lower 0.1; the reference body is (6 + 3) / 7
    "inverted_hammer": window("down", LONG_BLACK, candle(89.8, 91.2, 89.7, 90.0)),
    "shooting_star": window("up", LONG_WHITE, candle(110.2, 111.4, 109.9, 110.0)),
    # body 0.2 near the top, lower shadow 1.4, upper 0.1
    "hammer": window("down", candle(92.6, 92.9, 91.2, 92.8)),
    "hanging_man": window("up", candle(107.6, 107.9, 106.2, 107.8)),
}


def test_label_set():
    assert len(CLASSES) == 8 and len(set(CLASSES)) == 8
    assert [PATTERN_LENGTH[c] for c in CLASSES] == [3, 3, 2, 2, 1, 1, 2, 2]
    assert set(ALL_PATTERNS) == set(CLASSES) | set(EXTRA_PATTERNS)
    assert set(PATTERN_LENGTH) == set(ALL_PATTERNS)
    assert Rules().min_window() == 10
    assert set(POSITIVES) == set(ALL_PATTERNS)


@pytest.mark.parametrize("name", CLASSES)
def test_each_class_has_a_positive(name):
    w = POSITIVES[name]
    assert detect(w) == name
    # exactly that rule fires, among all ten
    fired = match_matrix(w[None], ALL_PATTERNS)[0]
    assert [p for p, f in zip(ALL_PATTERNS, fired) if f] == [name]


@pytest.mark.parametrize("name", EXTRA_PATTERNS)
def test_hammer_and_hanging_man_are_detected_but_not_labels(name):
    w = POSITIVES[name]
    assert detect(w, ALL_PATTERNS) == name
    assert detect(w) is None  # not in the 8-class label set


@pytest.mark.parametrize("name", ALL_PATTERNS)
def test_no_pattern_without_the_trend(name):
    """The same pattern candles after the opposite trend, or after no trend, are no pattern."""
    w = POSITIVES[name]
    k = PATTERN_LENGTH[name]
    bullish = ("morning_star", "bullish_engulfing", "bullish_harami", "inverted_hammer", "hammer")
    opposite = "up" if name in bullish else "down"
    for trend in (opposite, "flat"):
        moved = window(trend, *[list(c) for c in w[-k:]])
        assert not match_matrix(moved[None], [name])[0, 0], trend


# -------------------------------------------------------------------------------------------- near misses

NEAR_MISSES = {
    "morning_star": [
        # c closes less than 0.3 of q's body into it (90.7 < 90.9)
        window("down", LONG_BLACK, candle(89.8, 90, 89.3, 89.6), candle(89.8, 90.9, 89.7, 90.7)),
        # the middle candle is not short (body 1.5 >= reference body 1)
        window("down", LONG_BLACK, candle(90, 90.2, 88.3, 88.5), candle(89.8, 92.2, 89.7, 92)),
        # the middle candle sits above q's close (its centre 90.5 > 90)
        window("down", LONG_BLACK, candle(90.4, 90.8, 90.2, 90.6), candle(90.5, 92.2, 90.4, 92)),
        # q is short (body 0.5)
        window(
            "down", candle(93, 93.2, 92.3, 92.5), candle(92.4, 92.6, 92.1, 92.3), candle(92.4, 94.2, 92.3, 94)
        ),
    ],
    "evening_star": [
        window("up", LONG_WHITE, candle(110.2, 110.7, 110, 110.4), candle(110.2, 110.3, 109.2, 109.3)),
        window("up", LONG_WHITE, candle(110.2, 110.4, 109.3, 109.4), candle(110.2, 110.3, 107.8, 108)),
    ],
    "bullish_engulfing": [
        # c's close (92.5) does not reach p's open (93)
        window("down", candle(93, 93.2, 90.8, 91), candle(90.5, 92.7, 90.3, 92.5)),
        # c's body equals p's body at both ends: not engulfing (nor inside)
        window("down", candle(93, 93.2, 90.8, 91), candle(91, 93.2, 90.8, 93)),
        # p is white (and c closes too low for a morning star of the last context candle, p and c)
        window("down", candle(92.5, 93.2, 92.3, 93), candle(92.2, 93.3, 92.1, 93.2)),
        # c is black
        window("down", candle(93, 93.2, 90.8, 91), candle(93.5, 93.7, 90.3, 90.5)),
    ],
    "bearish_engulfing": [
        window("up", candle(107, 109.2, 106.8, 109), candle(109.5, 109.7, 107.3, 107.5)),
        window("up", candle(107, 109.2, 106.8, 109), candle(109, 109.2, 106.8, 107)),
    ],
    "bullish_harami": [
        # c's body pokes above p's open
        window("down", LONG_BLACK, candle(90.5, 93.7, 90.3, 93.5)),
        # c is black
        window("down", LONG_BLACK, candle(91.5, 91.7, 90.3, 90.5)),
        # p is short
        window("down", candle(93, 93.2, 92.3, 92.5), candle(92.6, 92.9, 92.5, 92.8)),
    ],
    "bearish_harami": [
        window("up", LONG_WHITE, candle(110.5, 110.7, 108.3, 108.5)),
        window("up", LONG_WHITE, candle(108.5, 109.7, 108.3, 109.5)),
    ],
    "inverted_hammer": [
        # upper shadow 0.6: three times the body, but under half the reference body (9 / 7)
        window("down", LONG_BLACK, candle(89.8, 90.6, 89.7, 90.0)),
        # lower shadow 0.8 > half the upper shadow 1.2
        window("down", LONG_BLACK, candle(89.8, 91.2, 89.0, 90.0)),
        # body 1.5, not short (the reference body is 9 / 7)
        window("down", LONG_BLACK, candle(88.5, 93.0, 88.4, 90.0)),
        # upper shadow 0.3, under twice the body 0.2
        window("down", candle(92.4, 92.9, 92.3, 92.6)),
    ],
    "shooting_star": [
        window("up", LONG_WHITE, candle(110.2, 110.8, 109.9, 110.0)),
        window("up", LONG_WHITE, candle(110.2, 111.4, 109.0, 110.0)),
        window("up", LONG_WHITE, candle(108.5, 111.0, 106.4, 110.0)),
    ],
    "hammer": [
        window("down", candle(92.6, 93.6, 91.2, 92.8)),  # upper shadow 0.8 > half the lower 1.4
        window("down", candle(92.6, 92.9, 92.2, 92.8)),  # lower shadow 0.4 < half the reference body 1
    ],
    "hanging_man": [window("up", candle(107.6, 107.9, 107.2, 107.8))],
}


@pytest.mark.parametrize("name", ALL_PATTERNS)
def test_near_misses(name):
    for i, w in enumerate(NEAR_MISSES[name]):
        assert not match_matrix(w[None], [name])[0, 0], f"{name} near miss {i}"
        assert detect(w, ALL_PATTERNS) is None, f"{name} near miss {i}: {detect(w, ALL_PATTERNS)}"


def test_engulfing_may_share_one_end():
    # c opens exactly at p's close (as the S&P's open often equals the previous close)
    w = window("down", candle(93, 93.2, 90.8, 91), candle(91, 93.7, 90.8, 93.5))
    assert detect(w) == "bullish_engulfing"
    w = window("down", LONG_BLACK, candle(90, 91.7, 89.9, 91.5))
    assert detect(w) == "bullish_harami"


def test_the_textbook_rules_ask_nothing_more():
    """Where an earlier version was stricter than Nison's definitions (see the module docstring)."""
    # engulfing: the engulfed body may be short (here 0.5, half the reference body); c closes short of
    # a morning (evening) star with the last context candle
    w = window("down", candle(93, 93.2, 92.3, 92.5), candle(92.2, 93.4, 92.1, 93.25))
    assert detect(w) == "bullish_engulfing"
    w = window("up", candle(107, 107.7, 106.8, 107.5), candle(107.8, 107.9, 106.6, 106.75))
    assert detect(w) == "bearish_engulfing"
    # shooting star / inverted hammer: one candle after the trend, whatever the candle before it, and
    # with no gap (here the star's body sits inside the previous body)
    assert detect(window("up", candle(109.0, 111.4, 108.9, 109.2))) == "shooting_star"
    assert detect(window("down", candle(92.4, 93.8, 92.3, 92.6))) == "inverted_hammer"
    # morning star: c closes 0.3 of q's body into it, short of its centre (91.5)
    w = window("down", LONG_BLACK, candle(89.8, 90, 89.3, 89.6), candle(89.8, 91.2, 89.7, 91))
    assert detect(w) == "morning_star"
    strict = Rules(penetration=0.5)
    assert detect(w, rules=strict) is None


def test_the_longest_pattern_wins():
    # a small white candle with a long upper shadow, inside the lower half of a long black body:
    # both a bullish harami (2 candles) and an inverted hammer (1 candle); the harami is the label
    w = window("down", LONG_BLACK, candle(90.5, 92.5, 90.4, 90.8))
    fired = match_matrix(w[None], CLASSES)[0]
    assert {c for c, f in zip(CLASSES, fired) if f} == {"bullish_harami", "inverted_hammer"}
    assert detect(w) == "bullish_harami"
    # asked for one of them only, it is that one
    assert detect(w, ["inverted_hammer"]) == "inverted_hammer"
    # a morning star whose third candle engulfs the star is a morning star
    w = window("down", LONG_BLACK, candle(89.8, 90, 89.3, 89.6), candle(89.5, 92.2, 89.4, 92))
    fired = match_matrix(w[None], CLASSES)[0]
    assert {c for c, f in zip(CLASSES, fired) if f} == {"morning_star", "bullish_engulfing"}
    assert detect(w) == "morning_star"


def test_two_patterns_of_one_length_are_ambiguous():
    codes = label_codes(np.array([[1, 0, 1, 0, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0], [0] * 8], dtype=bool))
    assert codes.tolist() == [0, -2, -1]  # a star beats an engulfing; two engulfings are ambiguous
    # custom rules under which a candle is both hammer- and star-shaped: no label
    loose = Rules(shadow_ratio=0.0, long_shadow=0.0, small_shadow=2.0)
    w = window("down", candle(92.4, 93.4, 91.4, 92.6))
    assert set(np.array(ALL_PATTERNS)[match_matrix(w[None], ALL_PATTERNS, rules=loose)[0]]) == {
        "inverted_hammer", "hammer"
    }
    assert detect(w, ALL_PATTERNS, rules=loose) is None
    with pytest.raises(ValueError):
        label_codes(np.zeros((2, 3), dtype=bool))


def test_degenerate_context_is_no_pattern():
    # closes only (open = high = low = close), as the S&P 500 rows before 1962
    closes = np.linspace(100, 90, T)
    w = np.repeat(closes[:, None], 4, axis=1)
    w[-2:] = POSITIVES["bullish_engulfing"][-2:] - 3
    assert detect(w) is None


def test_label_windows_is_detect_vectorised():
    all_windows = list(POSITIVES.values()) + [w for ws in NEAR_MISSES.values() for w in ws]
    batch = np.stack(all_windows)
    labels = label_windows(batch)
    assert labels.dtype == object and labels.shape == (len(all_windows),)
    assert labels.tolist() == [detect(w) for w in all_windows]
    assert labels[: len(CLASSES)].tolist() == list(POSITIVES)[: len(CLASSES)]
    assert label_windows(batch, ALL_PATTERNS)[: len(POSITIVES)].tolist() == list(POSITIVES)


def test_mirror_image_swaps_bullish_and_bearish():
    """Price reflected (p -> -p, so high <-> low): up and down trends, white and black swap, and the
    stars, engulfings and haramis become their twins. Checked on random walks, bit for bit. (The hammer
    and the stars of one candle are no such pairs: reflection turns a long lower shadow into a long
    upper one.)"""
    twins = {
        "morning_star": "evening_star",
        "bullish_engulfing": "bearish_engulfing",
        "bullish_harami": "bearish_harami",
    }
    twins.update({v: k for k, v in list(twins.items())})
    rng = np.random.default_rng(5)
    n = 20000
    c = rng.normal(scale=1.0, size=(n, T)).cumsum(axis=1)
    o = np.concatenate([c[:, :1] - rng.normal(size=(n, 1)), c[:, :-1]], axis=1)
    h = np.maximum(o, c) + rng.exponential(0.4, size=(n, T))
    l = np.minimum(o, c) - rng.exponential(0.4, size=(n, T))
    w = np.stack([o, h, l, c], axis=-1)
    mirror = np.stack([-o, -l, -h, -c], axis=-1)
    names = list(twins)
    m = match_matrix(w, names)
    mm = match_matrix(mirror, [twins[x] for x in names])
    assert m.sum() > 50  # the random walks do contain patterns
    np.testing.assert_array_equal(m, mm)


def test_input_checks():
    with pytest.raises(ValueError):
        detect(np.zeros((9, 4)) + 1.0)  # shorter than 7 context + 3 pattern candles
    with pytest.raises(ValueError):
        detect(POSITIVES["hammer"], ["doji"])
    bad = POSITIVES["hammer"].copy()
    bad[-1, 1] = bad[-1, 3] - 1.0  # high below close
    with pytest.raises(ValueError):
        detect(bad)
    assert detect(POSITIVES["hammer"][-8:], ["hammer"]) == "hammer"  # 7 + 1 candles are enough
