"""Statistical checks of released answers through the whole gateway: stated intervals cover, and the noise
has the stated scale.

Each query is repeated at ε = 1 (fresh noise every time) and compared with the exact answer computed
directly in DuckDB on the bounded relation `bnd__bank__tx`, clamped as the gateway clamps
(`LEAST(GREATEST(amount, 0), 1000)`). The default run repeats COUNT(*), SUM and AVG 200 times and the
GROUP BY cat COUNT 100 times (400 cells), about 8 s; the `slow` run repeats each of the four 400 times
(1,600 queries at 7–10 ms each: about 17 s of CPU, too close to the default run's budget).

Coverage: the share of answers with |noisy − exact| <= ci95 must be consistent with >= 95%. The check is a
one-sided exact binomial test of H0: coverage >= 0.95, failing when P(Binom(n, 0.95) <= hits) < 1e-4. When
the stated interval is right (coverage >= 95%; for the discrete Laplace it is slightly above, and for AVG
the stated ci95 is a conservative union bound, so its coverage is well above), each such test fails
spuriously with probability at most 1e-4. There are four coverage tests.

Scale: (noisy − exact) of COUNT cells (600 draws by default, 2,000 in the slow run: the COUNT(*) answers
and the GROUP BY cells, all with exact counts in the hundreds, so clipping at 0 never happens in practice)
is compared with the discrete Laplace of the stated `scale`, P(X = x) ∝ exp(−|x| / scale): a chi-square goodness-of-fit test
and a z-test of the sample variance against 2q/(1−q)², q = exp(−1/scale) (its standard error from the
exact fourth moment), each failing at p < 1e-4; the SUM's errors (200 or 400 draws) get a Kolmogorov–Smirnov
test against the continuous Laplace of its stated scale at p < 1e-4. Under a correct implementation the
whole file fails spuriously with probability below about 1e-3 (seven tests at 1e-4 each, the two
asymptotic ones, chi-square and the variance z-test, approximately).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from gateway.core import Gateway
from tests.conftest import make_gateway

FAST = {"count": 200, "grouped": 100, "sum": 200, "avg": 200}
FULL = {"count": 400, "grouped": 400, "sum": 400, "avg": 400}
EPSILON = 1
P_FAIL = 1e-4
CATS = ["food", "travel", "tech", "café ☕"]
CLAMPED = "LEAST(GREATEST(amount, 0), 1000)"


@pytest.fixture(scope="module", params=[pytest.param(FAST, id="fast"), pytest.param(FULL, id="full", marks=pytest.mark.slow)])
def runs(request: pytest.FixtureRequest) -> dict[str, int]:
    return request.param


@pytest.fixture(scope="module")
def gw() -> Gateway:
    return make_gateway()


def exact_scalar(gw: Gateway, sql: str) -> float:
    return gw.engine._con.execute(sql).fetchone()[0]  # type: ignore[index]


def repeat(gw: Gateway, sql: str, n: int) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    rows, accuracy = [], []
    for _ in range(n):
        answer = gw.query("bank", sql, epsilon=EPSILON)
        assert answer.cost.epsilon == EPSILON
        rows.append(answer.rows)
        accuracy.append(answer.accuracy)
    return rows, accuracy


def assert_coverage(hits: int, n: int, what: str) -> None:
    p = stats.binomtest(hits, n, 0.95, alternative="less").pvalue
    assert p >= P_FAIL, f"{what}: {hits}/{n} = {hits / n:.3f} inside the stated ci95 (p = {p:.2g} under coverage 0.95)"


@pytest.fixture(scope="module")
def counts(gw: Gateway, runs: dict[str, int]) -> dict[str, Any]:
    """COUNT(*) and GROUP BY cat COUNT(*): noisy answers, exact answers, stated accuracy."""
    total = exact_scalar(gw, "SELECT count(*) FROM bnd__bank__tx")
    by_cat = dict(gw.engine._con.execute("SELECT cat, count(*) FROM bnd__bank__tx GROUP BY cat").fetchall())
    cells = [by_cat.get(c, 0) for c in CATS]
    assert total > 1000 and min(cells) > 150  # far from 0: clipping at 0 does not distort the noise
    one, one_acc = repeat(gw, "SELECT COUNT(*) AS n FROM tx", runs["count"])
    grouped, grouped_acc = repeat(gw, "SELECT cat, COUNT(*) AS n FROM tx GROUP BY cat", runs["grouped"])
    for rows in grouped:
        assert [r[0] for r in rows] == CATS
    return {
        "total": total,
        "cells": cells,
        "one": [rows[0][0] for rows in one],
        "one_acc": [a["n"] for a in one_acc],
        "grouped": [[r[1] for r in rows] for rows in grouped],
        "grouped_acc": [a["n"] for a in grouped_acc],
    }


def test_count_star_coverage(counts: dict[str, Any]) -> None:
    acc = counts["one_acc"]
    assert len({(a.mechanism, a.scale, a.ci95) for a in acc}) == 1  # stated before the data: the same every time
    assert acc[0].scale == pytest.approx(5.0)  # k / ε = 5 rows per customer / 1
    hits = sum(abs(v - counts["total"]) <= a.ci95 for v, a in zip(counts["one"], acc))
    assert_coverage(hits, len(acc), "COUNT(*)")


def test_group_by_count_coverage(counts: dict[str, Any]) -> None:
    acc = counts["grouped_acc"]
    assert all(a.scale == pytest.approx(5.0) for a in acc)  # the whole vector's L1 sensitivity is k
    hits = sum(
        abs(v - e) <= a.ci95 for values, a in zip(counts["grouped"], acc) for v, e in zip(values, counts["cells"])
    )
    n = len(acc)
    assert_coverage(hits, n * len(CATS), "GROUP BY cat COUNT(*)")
    # no cell is systematically off (the per-cell mean error is 0 within 4.5 standard errors, sd = sqrt(2q)/(1-q))
    errors = np.array(counts["grouped"]) - np.array(counts["cells"])
    q = math.exp(-1 / acc[0].scale)
    se = math.sqrt(2 * q) / (1 - q) / math.sqrt(n)
    assert np.all(np.abs(errors.mean(axis=0)) < 4.5 * se), errors.mean(axis=0)


def test_sum_coverage_and_scale(gw: Gateway, runs: dict[str, int]) -> None:
    exact = exact_scalar(gw, f"SELECT sum({CLAMPED}) FROM bnd__bank__tx")
    rows, acc = repeat(gw, "SELECT SUM(amount) AS s FROM tx", runs["sum"])
    scale, ci95 = acc[0]["s"].scale, acc[0]["s"].ci95
    assert all((a["s"].scale, a["s"].ci95) == (scale, ci95) for a in acc)
    assert scale == pytest.approx(5 * 1000 / EPSILON)  # k * max(|lower|, |upper|) / ε
    assert exact > 5 * ci95  # far from 0: clipping of a non-negative sum at 0 does not matter
    errors = np.array([r[0][0] for r in rows]) - exact
    assert_coverage(int(np.sum(np.abs(errors) <= ci95)), len(rows), "SUM(amount)")
    p = stats.kstest(errors, stats.laplace(scale=scale).cdf).pvalue
    assert p >= P_FAIL, f"SUM noise does not look like Laplace(scale={scale}) (KS p = {p:.2g})"


def test_avg_coverage(gw: Gateway, runs: dict[str, int]) -> None:
    """The stated ci95 of AVG is a conservative bound (a union of the SUM's and the COUNT's 97.5% intervals,
    propagated through the ratio), so its coverage must be at least 95%."""
    exact = exact_scalar(gw, f"SELECT avg({CLAMPED}) FROM bnd__bank__tx")
    rows, acc = repeat(gw, "SELECT AVG(amount) AS a FROM tx", runs["avg"])
    values = [r[0][0] for r in rows]
    assert all(v is not None and 0 <= v <= 1000 for v in values)
    widths = [a["a"].ci95 for a in acc]
    assert all(w is not None and 0 < w < 1000 for w in widths)
    hits = sum(abs(v - exact) <= w for v, w in zip(values, widths))
    assert_coverage(hits, len(rows), "AVG(amount)")


def _discrete_laplace(scale: float, support: int) -> tuple[np.ndarray, np.ndarray]:
    q = math.exp(-1 / scale)
    x = np.arange(-support, support + 1)
    return x, (1 - q) / (1 + q) * q ** np.abs(x)


def test_count_noise_has_the_stated_scale(counts: dict[str, Any]) -> None:
    scale = counts["one_acc"][0].scale
    assert all(a.scale == scale for a in counts["grouped_acc"])
    errors = np.concatenate(
        [
            np.array(counts["one"]) - counts["total"],
            (np.array(counts["grouped"]) - np.array(counts["cells"])).ravel(),
        ]
    )
    n = len(errors)
    assert n == len(counts["one"]) + len(CATS) * len(counts["grouped"]) and errors.dtype.kind == "i"
    x, pmf = _discrete_laplace(scale, support=60 * int(math.ceil(scale)))

    # chi-square goodness of fit on |error|, in bins of expected count >= 20 (the last one is the whole tail)
    mags = np.abs(errors)
    centre = len(pmf) // 2
    p_abs = np.concatenate([[pmf[centre]], 2 * pmf[centre + 1 :]])  # P(|X| = m)
    edges, mass = [0], 0.0
    for m, p in enumerate(p_abs):
        mass += p
        if mass * n >= 20:
            edges.append(m + 1)
            mass = 0.0
    if (1 - p_abs[: edges[-1]].sum()) * n < 20:
        edges.pop()  # too little left for a tail bin of its own: merge it into the last bin
    observed = [int(np.sum((mags >= lo) & (mags < hi))) for lo, hi in zip(edges[:-1], edges[1:])]
    observed.append(int(np.sum(mags >= edges[-1])))
    expected_p = [float(p_abs[lo:hi].sum()) for lo, hi in zip(edges[:-1], edges[1:])]
    expected_p.append(1.0 - sum(expected_p))
    assert len(observed) >= 8 and sum(observed) == n
    chi = stats.chisquare(observed, np.array(expected_p) * n)
    assert chi.pvalue >= P_FAIL, f"COUNT noise does not fit the discrete Laplace({scale}) (chi-square p = {chi.pvalue:.2g})"

    # the variance: 2q / (1 - q)^2, with the standard error of the sample variance from the exact 4th moment
    var = float(np.sum(pmf * x.astype(float) ** 2))
    q = math.exp(-1 / scale)
    assert var == pytest.approx(2 * q / (1 - q) ** 2, rel=1e-9)
    mu4 = float(np.sum(pmf * x.astype(float) ** 4))
    se = math.sqrt((mu4 - var**2) / n)
    z = (float(np.var(errors)) - var) / se
    assert abs(z) < stats.norm.isf(P_FAIL / 2), f"variance {np.var(errors):.1f} vs {var:.1f} (z = {z:.2f})"
    # and no bias
    assert abs(errors.mean()) < stats.norm.isf(P_FAIL / 2) * math.sqrt(var / n)
