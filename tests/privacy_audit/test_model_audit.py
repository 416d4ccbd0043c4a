"""Membership audits of DP-SGD models against the DP ceiling, with a broken positive control.

Members: 500 rows whose labels are coin flips (only memorising them fits them), non-members 500 more,
reference population 1,000; a 30-256-256-1 MLP trained 150 epochs at batch 64 (an easy target for
membership inference). Correct DP-SGD (σ from Opacus' PRV accountant for ε = 1, 3, 8, δ = 1e-5):
no attack's TPR at FPR 0.1% / 1% beats e^ε·FPR + δ beyond its 95% Clopper–Pearson margins, and the
audit's empirical ε lower bound stays at or below ε. The broken control — DP-SGD with its noise divided
by the batch size (Tramèr et al. 2022), still claiming ε = 1 — must be caught: its ROC crosses the
ceiling somewhere (ε lower bound > 1). Measured: ε_lb 2.56 (loss threshold) against a claimed 1; at FPR
1% and 0.1% exactly, 500 non-members do not give the resolution to see it (TPR@1% 0.044 against 0.027).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from training.audit import AuditData, run_audit
from training.dpsgd import DPSGDPlan, plan_dpsgd, train_mlp
from training.nets import MLP, UnitBatches
from tests.training.conftest import _IGNORED

pytestmark = [pytest.mark.slow, *[pytest.mark.filterwarnings(spec) for spec in _IGNORED]]

N, D, BATCH, DELTA = 500, 30, 64, 1e-5


def _data(rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(m, D)).astype(np.float32)
    return (x + 3) / 6, (rng.random(m) < 0.5).astype(np.float32)


def _fit(x: np.ndarray, y: np.ndarray, plan: DPSGDPlan | None, steps: int, seed: int = 0):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    net = MLP(D, (256, 256))
    data = UnitBatches(x, y, np.arange(len(x)), np.ones(len(x), np.int64), per_unit=False)
    train_mlp(net, data, steps=steps, lr=0.003, batch_size=BATCH, plan=plan, grad_sample_mode="hooks")
    return lambda z: np.stack([1 - net.predict_proba(z), net.predict_proba(z)], axis=1)


def _audit(epsilon: float, *, broken: bool) -> dict:
    rng = np.random.default_rng(0)
    (xm, ym), (xn, yn), (xp, yp) = _data(rng, N), _data(rng, N), _data(rng, 2 * N)
    plan = plan_dpsgd(target_epsilon=epsilon, delta=DELTA, units_estimate=N, batch_size=BATCH, epochs=150, max_grad_norm=1.0)
    if broken:
        plan = dataclasses.replace(plan, noise_multiplier=plan.noise_multiplier / BATCH)
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        target = _fit(xm, ym, plan, plan.steps)
        data = AuditData(xm, ym.astype(int), xn, yn.astype(int), xp, yp.astype(int))
        return run_audit(target, data, train_reference=lambda x, y, s: _fit(x, y, None, plan.steps, s),
                         epsilon=plan.epsilon, delta=DELTA, n_reference=4)  # fmt: skip
    finally:
        torch.set_num_threads(prev)


@pytest.mark.parametrize("epsilon", [1.0, 3.0, 8.0])
def test_dp_sgd_models_stay_under_the_ceiling(epsilon: float) -> None:
    result = _audit(epsilon, broken=False)
    assert result["ceiling"]["any_exceeds"] is False
    for name, attack in result["attacks"].items():
        assert attack["epsilon_lower_bound"] <= epsilon, (name, attack["epsilon_lower_bound"])


def test_positive_control_noise_divided_by_the_batch_size_is_caught() -> None:
    result = _audit(1.0, broken=True)
    worst = max(a["epsilon_lower_bound"] for a in result["attacks"].values())
    assert worst > result["model"]["epsilon"], worst
