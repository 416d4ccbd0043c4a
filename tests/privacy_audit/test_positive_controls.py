"""Positive controls: the auditor has power. Broken mechanisms must be caught (ε_lb > the claimed ε),
and the correct versions of the same steps must pass, with the same auditor at the same level.

(a) A Laplace count whose sensitivity is understated: OpenDP's Laplace at scale / 4 (and / 2) of
what the claimed ε needs. (b) One DP-SGD step with the noise divided by the batch size — the bug
Tramèr et al. (2022) found in a published implementation: N(0, (σC/B)²) added to the sum of clipped
per-sample gradients instead of N(0, (σC)²), with σ from training.dpsgd.plan_dpsgd (Opacus' PRV
accountant) for ε = 1, δ = 1e-5; without subsampling (q = 1: the step is the whole claim) and with
Poisson sampling at q = 0.1 (one step of a ten-step claim).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tests.privacy_audit.cases import (
    CONTROL_CASES,
    DPSGD_CLIP,
    SLOW_SAMPLES,
    TEST_ALPHA,
    dpsgd_plan,
    opacus_optimizer,
    opacus_step,
    per_sample_gradients,
    run,
)

_BY_NAME = {c.name: c for c in CONTROL_CASES}


def _audit(name: str, samples: int | None = None) -> tuple[float, float]:
    case = _BY_NAME[name]
    neighbours, result = run(case, samples=samples or case.fast_samples, alpha=TEST_ALPHA)
    return neighbours.epsilon, result.epsilon_lower_bound


@pytest.mark.parametrize("factor", [4, 2])
def test_positive_control_understated_sensitivity_is_caught(factor: int) -> None:
    claimed, bound = _audit(f"control: Laplace, sensitivity understated {factor}×")
    assert bound > claimed, (claimed, bound)


@pytest.mark.slow
def test_positive_control_understated_sensitivity_by_a_quarter_is_caught_at_a_million_samples() -> None:
    claimed, bound = _audit("control: Laplace, sensitivity understated 1.25×", SLOW_SAMPLES)
    assert bound > claimed, (claimed, bound)


@pytest.mark.parametrize("q", ["1", "0.1"])
def test_positive_control_dpsgd_noise_divided_by_batch_size_is_caught(q: str) -> None:
    claimed, broken = _audit(f"control: DP-SGD step q={q}, noise σC/B")
    assert broken > claimed, (claimed, broken)
    claimed, correct = _audit(f"control: DP-SGD step q={q}, correct noise σC")
    assert correct <= claimed, (claimed, correct)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_BY_NAME))
def test_positive_control_verdict_at_a_million_samples(name: str) -> None:
    case = _BY_NAME[name]
    neighbours, result = run(case, samples=SLOW_SAMPLES, alpha=TEST_ALPHA)
    assert result.consistent_with(neighbours.epsilon) is not case.expect_caught, (case.name, result.to_json())


def test_dpsgd_plan_is_opacus_for_the_claim() -> None:
    plan = dpsgd_plan(1.0)
    assert plan.sample_rate == 1.0 and plan.steps == 1
    assert plan.epsilon <= plan.target_epsilon == 1.0 and plan.delta == 1e-5
    assert plan.noise_multiplier > 1  # a single unsubsampled step at ε = 1 needs σ ≈ 3.8
    ten = dpsgd_plan(0.1)
    assert ten.sample_rate == pytest.approx(0.1) and ten.steps == 10 and ten.noise_multiplier < plan.noise_multiplier


def test_dpsgd_step_model_matches_opacus_optimizer() -> None:
    """The controls draw the step vectorised: Opacus' clipped sum plus N(0, (σC)²). Opacus' own
    optimiser, stepped for real, gives the same distribution (mean: the clipped target gradient along
    e0; noise: σC on every coordinate, Kolmogorov–Smirnov against the normal, level 1e-4)."""
    import torch

    sigma = dpsgd_plan(1.0).noise_multiplier
    p, opt = opacus_optimizer(sigma, generator=torch.Generator().manual_seed(7))
    grads = per_sample_gradients(True)
    steps = np.stack([opacus_step(p, opt, grads).numpy() for _ in range(2_000)])
    p0, exact = opacus_optimizer(0.0)
    clipped = opacus_step(p0, exact, grads).numpy()
    assert clipped[0] == pytest.approx(DPSGD_CLIP, rel=1e-5) and np.allclose(clipped[1:], 0.0, atol=1e-5)
    noise = steps - clipped
    for j in range(noise.shape[1]):
        assert stats.kstest(noise[:, j], "norm", args=(0.0, sigma * DPSGD_CLIP)).pvalue > 1e-4
