"""The GAF encoder against matrices worked out by hand from the definition

    x~ = min-max rescaling of the window, phi = arccos(x~),
    GASF_ij = cos(phi_i + phi_j) = x~_i x~_j - sqrt(1 - x~_i^2) sqrt(1 - x~_j^2),
    GADF_ij = sin(phi_i - phi_j) = sqrt(1 - x~_i^2) x~_j - x~_i sqrt(1 - x~_j^2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.vision.gaf import CHANNELS, culr, encode_candles, gadf, gaf, gasf, rescale

R3 = math.sqrt(3.0)
R5 = math.sqrt(5.0)
R15 = math.sqrt(15.0)


def test_three_points_zero_one():
    # x = 1, 2, 3 -> x~ = 0, 1/2, 1 ; sqrt(1 - x~^2) = 1, sqrt(3)/2, 0 ; phi = pi/2, pi/3, 0
    expected_gasf = np.array(
        [
            [-1.0, -R3 / 2, 0.0],  # 0*0 - 1*1 ; 0*1/2 - 1*sqrt3/2 ; 0*1 - 1*0
            [-R3 / 2, -0.5, 0.5],  # 1/4 - 3/4 ; 1/2*1 - sqrt3/2*0
            [0.0, 0.5, 1.0],
        ]
    )
    expected_gadf = np.array(
        [
            [0.0, 0.5, 1.0],  # sin(pi/2 - pi/3) = 1/2 ; sin(pi/2 - 0) = 1
            [-0.5, 0.0, R3 / 2],  # sin(pi/3 - 0) = sqrt3/2
            [-1.0, -R3 / 2, 0.0],
        ]
    )
    np.testing.assert_allclose(gasf(np.array([[1.0, 2.0, 3.0]]))[0], expected_gasf, atol=1e-12)
    np.testing.assert_allclose(gadf(np.array([[1.0, 2.0, 3.0]]))[0], expected_gadf, atol=1e-12)


def test_three_points_minus_one_one():
    # x~ = -1, 0, 1 ; phi = pi, pi/2, 0 ; GASF = cos(phi_i + phi_j)
    expected = np.array(
        [
            [1.0, 0.0, -1.0],  # cos 2pi ; cos 3pi/2 ; cos pi
            [0.0, -1.0, 0.0],  # cos pi ; cos pi/2
            [-1.0, 0.0, 1.0],
        ]
    )
    got = gasf(np.array([[1.0, 2.0, 3.0]]), sample_range=(-1, 1))[0]
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_four_points_zero_one():
    # x = 2, 4, 3, 6 -> x~ = 0, 1/2, 1/4, 1 ; sqrt(1 - x~^2) = 1, sqrt3/2, sqrt15/4, 0
    g12 = 0.5 * 0.25 - (R3 / 2) * (R15 / 4)  # = 1/8 - 3 sqrt5 / 8
    assert g12 == pytest.approx((1 - 3 * R5) / 8)
    expected = np.array(
        [
            [-1.0, -R3 / 2, -R15 / 4, 0.0],
            [-R3 / 2, -0.5, (1 - 3 * R5) / 8, 0.5],
            [-R15 / 4, (1 - 3 * R5) / 8, -0.875, 0.25],  # 1/16 - 15/16
            [0.0, 0.5, 0.25, 1.0],
        ]
    )
    np.testing.assert_allclose(gasf(np.array([[2.0, 4.0, 3.0, 6.0]]))[0], expected, atol=1e-12)


def test_four_points_minus_one_one_both_fields():
    # x = 0, 1, 3, 4 -> x~ = -1, -1/2, 1/2, 1 ; phi = pi, 2pi/3, pi/3, 0
    gasf_expected = np.array(
        [
            [1.0, 0.5, -0.5, -1.0],  # cos 2pi ; cos 5pi/3 ; cos 4pi/3 ; cos pi
            [0.5, -0.5, -1.0, -0.5],  # cos 4pi/3 ; cos pi ; cos 2pi/3
            [-0.5, -1.0, -0.5, 0.5],  # cos 2pi/3 ; cos pi/3
            [-1.0, -0.5, 0.5, 1.0],
        ]
    )
    h = R3 / 2
    gadf_expected = np.array(
        [
            [0.0, h, h, 0.0],  # sin pi/3 ; sin 2pi/3 ; sin pi
            [-h, 0.0, h, h],
            [-h, -h, 0.0, h],
            [0.0, -h, -h, 0.0],
        ]
    )
    x = np.array([[0.0, 1.0, 3.0, 4.0]])
    np.testing.assert_allclose(gasf(x, sample_range=(-1, 1))[0], gasf_expected, atol=1e-12)
    np.testing.assert_allclose(gadf(x, sample_range=(-1, 1))[0], gadf_expected, atol=1e-12)


def test_matches_the_angle_form_on_random_windows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 10)).cumsum(axis=1)
    for sample_range in ((0, 1), (-1, 1)):
        xt, _ = rescale(x, sample_range=sample_range)
        phi = np.arccos(xt)
        by_angle_s = np.cos(phi[:, :, None] + phi[:, None, :])
        by_angle_d = np.sin(phi[:, :, None] - phi[:, None, :])
        np.testing.assert_allclose(gasf(x, sample_range=sample_range), by_angle_s, atol=1e-12)
        np.testing.assert_allclose(gadf(x, sample_range=sample_range), by_angle_d, atol=1e-12)


def test_properties_symmetry_diagonal_range():
    rng = np.random.default_rng(1)
    scale = rng.uniform(0.01, 100, size=(200, 1))
    x = rng.normal(size=(200, 12)) * scale + rng.uniform(-50, 50, size=(200, 1))
    for sample_range in ((0, 1), (-1, 1)):
        g = gasf(x, sample_range=sample_range)
        d = gadf(x, sample_range=sample_range)
        xt, _ = rescale(x, sample_range=sample_range)
        assert g.shape == d.shape == (200, 12, 12)
        np.testing.assert_allclose(g, np.swapaxes(g, 1, 2), atol=0)  # GASF symmetric
        np.testing.assert_allclose(d, -np.swapaxes(d, 1, 2), atol=1e-15)  # GADF antisymmetric
        np.testing.assert_allclose(np.diagonal(g, axis1=1, axis2=2), 2 * xt**2 - 1, atol=1e-12)  # cos 2phi
        np.testing.assert_allclose(np.diagonal(d, axis1=1, axis2=2), 0.0, atol=1e-15)
        assert g.min() >= -1.0 and g.max() <= 1.0 and d.min() >= -1.0 and d.max() <= 1.0
        # the window's min and max map to the ends of the range: diagonal -1 (or +1) and +1 there
        assert np.allclose(g.max(axis=(1, 2)), 1.0)
    # invariant under increasing affine maps of the window
    np.testing.assert_allclose(gasf(3.5 * x + 7.0), gasf(x), atol=1e-9)


def test_rescale_ranges():
    xt, const = rescale(np.array([[2.0, 4.0, 3.0, 6.0]]))
    np.testing.assert_allclose(xt, [[0.0, 0.5, 0.25, 1.0]])
    xt, const = rescale(np.array([[2.0, 4.0, 3.0, 6.0]]), sample_range=(-1, 1))
    np.testing.assert_allclose(xt, [[-1.0, 0.0, -0.5, 1.0]])
    assert not const.any()
    with pytest.raises(ValueError):
        rescale(np.array([[1.0, 2.0]]), sample_range=(0, 2))


def test_constant_window_gives_zeros():
    x = np.array([[5.0, 5.0, 5.0], [1.0, 2.0, 3.0], [-2.5, -2.5, -2.5]])
    for method in ("summation", "difference"):
        for sample_range in ((0, 1), (-1, 1)):
            out = gaf(x, method=method, sample_range=sample_range)
            assert np.all(out[0] == 0.0) and np.all(out[2] == 0.0)
            assert np.any(out[1] != 0.0)  # the other rows are unaffected
    _, const = rescale(x)
    assert const.tolist() == [True, False, True]
    assert np.all(gasf(np.array([[7.0]])) == 0.0)  # a single point is constant too


def test_input_checks():
    with pytest.raises(ValueError):
        gasf(np.zeros(5))
    with pytest.raises(ValueError):
        gasf(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError):
        gaf(np.array([[1.0, 2.0]]), method="product")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- candles

# three hand-made candles (open, high, low, close)
CANDLES = np.array([[[10.0, 12.0, 9.0, 11.0], [11.0, 11.5, 9.5, 10.0], [10.0, 13.0, 10.0, 12.0]]])


def test_culr_features():
    f = culr(CANDLES)[0]
    np.testing.assert_allclose(f[:, 0], [11.0, 10.0, 12.0])  # close
    np.testing.assert_allclose(f[:, 1], [1.0, 0.5, 1.0])  # high - max(open, close)
    np.testing.assert_allclose(f[:, 2], [1.0, 0.5, 0.0])  # min(open, close) - low
    np.testing.assert_allclose(f[:, 3], [1.0, -1.0, 2.0])  # close - open
    assert CHANNELS == ("close", "upper_shadow", "lower_shadow", "real_body")


def test_encode_candles_by_hand():
    img = encode_candles(CANDLES)
    assert img.shape == (1, 3, 3, 4)
    # close 11, 10, 12 -> x~ = 1/2, 0, 1
    close = np.array([[-0.5, -R3 / 2, 0.5], [-R3 / 2, -1.0, 0.0], [0.5, 0.0, 1.0]])
    # upper shadow 1, 1/2, 1 -> x~ = 1, 0, 1
    upper = np.array([[1.0, 0.0, 1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 1.0]])
    # lower shadow 1, 1/2, 0 -> x~ = 1, 1/2, 0
    lower = np.array([[1.0, 0.5, 0.0], [0.5, -0.5, -R3 / 2], [0.0, -R3 / 2, -1.0]])
    # body 1, -1, 2 -> x~ = 2/3, 0, 1 ; sqrt(1 - 4/9) = sqrt5/3
    body = np.array(
        [[-1.0 / 9.0, -R5 / 3, 2.0 / 3.0], [-R5 / 3, -1.0, 0.0], [2.0 / 3.0, 0.0, 1.0]]
    )
    for k, expected in enumerate((close, upper, lower, body)):
        np.testing.assert_allclose(img[0, :, :, k], expected, atol=1e-12, err_msg=CHANNELS[k])


def test_encode_candles_channels_are_normalised_separately():
    rng = np.random.default_rng(2)
    o = 100 + rng.normal(size=(20, 10)).cumsum(axis=1)
    c = o + rng.normal(size=(20, 10))
    h = np.maximum(o, c) + rng.uniform(0, 1, size=(20, 10))
    l = np.minimum(o, c) - rng.uniform(0, 1, size=(20, 10))
    ohlc = np.stack([o, h, l, c], axis=-1)
    img = encode_candles(ohlc)
    feats = culr(ohlc)
    for k in range(4):
        np.testing.assert_allclose(img[..., k], gasf(feats[..., k]), atol=0)
    # each channel by its own min/max: scaling only the upper shadows leaves every channel's image as is
    taller = ohlc.copy()
    taller[..., 1] = np.maximum(o, c) + 3.0 * (h - np.maximum(o, c))
    np.testing.assert_allclose(encode_candles(taller), img, atol=1e-12)
    # and a change of price level or unit changes nothing
    np.testing.assert_allclose(encode_candles(2.0 * ohlc + 50.0), img, atol=1e-9)
    np.testing.assert_allclose(encode_candles(ohlc, method="difference")[..., 0], gadf(feats[..., 0]), atol=0)


def test_encode_candles_constant_channel():
    # no upper shadow on any day: the upper-shadow channel is constant (0) -> an all-zero image
    ohlc = np.array([[[10.0, 11.0, 9.0, 11.0], [11.0, 11.0, 10.0, 10.5], [10.5, 12.0, 10.0, 12.0]]])
    img = encode_candles(ohlc)
    assert np.all(img[0, :, :, 1] == 0.0)
    assert np.any(img[0, :, :, 0] != 0.0)


def test_encode_candles_rejects_bad_candles():
    with pytest.raises(ValueError):
        encode_candles(np.array([[[10.0, 9.0, 8.0, 9.5]]]))  # high below open
    with pytest.raises(ValueError):
        encode_candles(np.zeros((2, 3)))


@pytest.mark.slow  # importing pyts compiles its numba kernels: about 40 s
def test_agrees_with_pyts():
    """Cross-check with pyts (optional: skipped where it is not installed). pyts takes arccos and then
    cos; arccos's slope is infinite at +-1, so its rounding near the ends of the range is about
    sqrt(machine epsilon) ~ 1.5e-8, hence the tolerance."""
    pyts_image = pytest.importorskip("pyts.image")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 10)).cumsum(axis=1)
    for sample_range in ((0, 1), (-1, 1)):
        for method in ("summation", "difference"):
            ref = pyts_image.GramianAngularField(sample_range=sample_range, method=method).fit_transform(x)
            np.testing.assert_allclose(gaf(x, method=method, sample_range=sample_range), ref, atol=1e-7)
