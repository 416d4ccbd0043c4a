"""DP-SGD at user level: a unit is one sample, clipped as a whole; the plan matches the accountant."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from opacus.accountants import create_accountant
from opacus.grad_sample.utils import prepare_module
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

from training.dpsgd import Cancelled, DPSGDPlan, PoissonSampler, plan_dpsgd, train_mlp
from training.nets import MLP, UnitBatches, UnitBCELoss
from training.split import group_units

C = 0.5


def unit_data(d: int, big_rows: int, small_rows: int = 3, seed: int = 0) -> UnitBatches:
    """Unit 0: many rows that all pull the same way (a large summed gradient); unit 1: a few rows."""
    rng = np.random.default_rng(seed)
    units = np.concatenate([np.zeros(big_rows, int), np.ones(small_rows, int)])
    x = np.concatenate([np.full((big_rows, d), 0.9), rng.random((small_rows, d))]).astype(np.float32)
    y = np.concatenate([np.ones(big_rows), np.zeros(small_rows)]).astype(np.float32)
    order, starts, lengths = group_units(units)
    return UnitBatches(x[order], y[order], starts, lengths, per_unit=True)


def manual_unit_grads(model: MLP, data: UnitBatches, unit: int) -> list[torch.Tensor]:
    """The gradient of one unit's summed row losses, computed on its rows alone (no padding)."""
    s, n = int(data.starts[unit]), int(data.lengths[unit])
    model.zero_grad()
    logits = model(data.x[s : s + n])
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, data.y[s : s + n], reduction="sum")
    return list(torch.autograd.grad(loss, list(model.parameters())))


def flat_norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in tensors)))


# (d, rows of the big unit, hidden): the first exercises UnitLinear's per-sample-gradient branch,
# the second its ghost (Gram-matrix) branch on the first layer
SHAPES = [(3, 50, [8]), (32, 5, [64])]


@pytest.mark.parametrize(("d", "rows", "hidden"), SHAPES)
def test_hooks_clip_each_unit_as_one_sample(d, rows, hidden):
    torch.manual_seed(0)
    data = unit_data(d, rows)
    model = MLP(d, hidden)
    reference = copy.deepcopy(model)
    per_unit = [manual_unit_grads(reference, data, u) for u in (0, 1)]
    assert flat_norm(per_unit[0]) > 4 * C  # the big unit's gradient is far beyond the clipping norm

    gsm = prepare_module(model, grad_sample_mode="hooks", batch_first=True, loss_reduction="sum")
    opt = DPOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1),
        noise_multiplier=0.0, max_grad_norm=C, expected_batch_size=2, loss_reduction="sum",
    )  # fmt: skip
    x, target = data.collate([0, 1])
    assert x.shape == (2, rows, d)  # one sample per unit, padded to the longest
    UnitBCELoss("sum")(gsm(x), target).backward()
    for i, p in enumerate(model.parameters()):
        assert p.grad_sample.shape[0] == 2  # per-sample = per-unit, not per-row
        for u in (0, 1):  # padding adds nothing: each unit's gradient is that of its own rows
            torch.testing.assert_close(p.grad_sample[u], per_unit[u][i], rtol=1e-4, atol=1e-5)
    opt.pre_step()
    clipped_sum = [p.grad.clone() for p in model.parameters()]
    # each unit contributes at most C; the big one exactly C (its norm was above)
    assert flat_norm(clipped_sum) <= 2 * C + 1e-5
    gsm.remove_hooks()

    # the big unit alone: its whole contribution, all rows together, has norm C
    model2 = copy.deepcopy(reference)
    gsm2 = prepare_module(model2, grad_sample_mode="hooks", batch_first=True, loss_reduction="sum")
    opt2 = DPOptimizer(
        torch.optim.SGD(model2.parameters(), lr=0.1),
        noise_multiplier=0.0, max_grad_norm=C, expected_batch_size=1, loss_reduction="sum",
    )  # fmt: skip
    x, target = data.collate([0])
    UnitBCELoss("sum")(gsm2(x), target).backward()
    opt2.pre_step()
    assert flat_norm([p.grad for p in model2.parameters()]) == pytest.approx(C, rel=1e-4)
    gsm2.remove_hooks()


@pytest.mark.parametrize(("d", "rows", "hidden"), SHAPES)
def test_ghost_clipping_computes_exact_unit_norms_and_clips_them(d, rows, hidden):
    torch.manual_seed(1)
    data = unit_data(d, rows)
    model = MLP(d, hidden)
    reference = copy.deepcopy(model)
    true_norms = [flat_norm(manual_unit_grads(reference, data, u)) for u in (0, 1)]

    gsm = prepare_module(model, grad_sample_mode="ghost", batch_first=True, loss_reduction="sum", max_grad_norm=C)
    opt = DPOptimizerFastGradientClipping(
        torch.optim.SGD(model.parameters(), lr=0.1),
        noise_multiplier=0.0, max_grad_norm=C, expected_batch_size=1, loss_reduction="sum",
    )  # fmt: skip
    criterion = DPLossFastGradientClipping(gsm, opt, UnitBCELoss("sum"), "sum")
    x, target = data.collate([0, 1])
    criterion(gsm(x), target).backward()
    np.testing.assert_allclose(gsm.get_norm_sample().detach().numpy(), true_norms, rtol=1e-4)
    opt.pre_step()
    assert flat_norm([p.grad for p in model.parameters()]) <= 2 * C + 1e-5
    gsm.remove_hooks()


def test_row_level_batches_are_plain_rows():
    x = np.random.default_rng(0).random((10, 4)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.float32)
    order, starts, lengths = group_units(np.arange(10))
    data = UnitBatches(x[order], y[order], starts, lengths, per_unit=False)
    xb, yb = data.collate([3, 7])
    assert xb.shape == (2, 4) and yb.shape == (2,)
    torch.testing.assert_close(xb[1], torch.from_numpy(x[7]))


def test_the_plan_is_what_the_accountant_says():
    plan = plan_dpsgd(target_epsilon=1.0, delta=1e-5, units_estimate=1000, batch_size=100, epochs=2, max_grad_norm=1.0)
    assert plan.sample_rate == pytest.approx(0.1) and plan.steps == 20 and plan.accountant == "prv"
    assert 0.95 <= plan.epsilon <= plan.target_epsilon == 1.0
    acc = create_accountant("prv")
    acc.history = [(plan.noise_multiplier, plan.sample_rate, plan.steps)]
    assert acc.get_epsilon(delta=1e-5) == pytest.approx(plan.epsilon, rel=1e-9)


def test_training_stops_between_steps_when_cancelled():
    rng = np.random.default_rng(0)
    x = rng.random((400, 3)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.float32)
    order, starts, lengths = group_units(np.arange(400))
    data = UnitBatches(x, y, starts, lengths, per_unit=False)
    plan = DPSGDPlan(0.25, 100, 25.0, 1.0, 1.0, 1.0, 0.9, 1e-5, "prv")
    steps: list[int] = []
    checks = iter([False, False, False, True])
    with pytest.raises(Cancelled):
        train_mlp(
            MLP(3, [4]), data, steps=100, lr=0.01, batch_size=100, plan=plan, grad_sample_mode="hooks",
            on_step=steps.append, should_stop=lambda: next(checks),
        )  # fmt: skip
    assert steps == [1, 2, 3]


@pytest.mark.parametrize("mode", ["hooks", "ghost", "functorch"])
def test_every_mode_trains_unit_batches(mode):
    rng = np.random.default_rng(0)
    units = np.repeat(np.arange(60), rng.integers(1, 6, 60))
    x = rng.random((len(units), 3)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.float32)
    order, starts, lengths = group_units(units)
    data = UnitBatches(x[order], y[order], starts, lengths, per_unit=True)
    plan = DPSGDPlan(0.2, 5, 1.0, 1.0, 1.0, 1.0, 0.9, 1e-5, "prv")
    model = MLP(3, [4])
    before = [p.detach().clone() for p in model.parameters()]
    assert train_mlp(model, data, steps=5, lr=0.01, batch_size=12, plan=plan, grad_sample_mode=mode) == 5
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(getattr(p, "grad_sample", None) is None for p in model.parameters())


def test_the_poisson_sampler_includes_each_sample_independently_at_rate_q():
    """Seeded; the bounds are > 6 standard errors wide (a false failure is far below 1e-6)."""
    n, q, epochs = 500, 0.04, 400
    sampler = PoissonSampler(n, q, generator=torch.Generator().manual_seed(7))
    assert len(sampler) == 25
    counts = np.zeros(n)
    sizes = []
    for _ in range(epochs):
        for batch in sampler:
            assert len(set(batch)) == len(batch) and all(0 <= i < n for i in batch)
            counts[batch] += 1
            sizes.append(len(batch))
    steps = epochs * 25
    # batch sizes ~ Binomial(n, q)
    assert np.mean(sizes) == pytest.approx(n * q, abs=6 * np.sqrt(n * q * (1 - q) / steps))
    assert np.var(sizes) == pytest.approx(n * q * (1 - q), rel=0.1)
    # every sample joins ~ Binomial(steps, q) batches, independently of the others
    per = steps * q
    assert counts.mean() == pytest.approx(per, abs=6 * np.sqrt(per * (1 - q) / n))
    assert counts.std() == pytest.approx(np.sqrt(per * (1 - q)), rel=0.15)
    assert abs(counts.min() - per) < 6 * np.sqrt(per) and abs(counts.max() - per) < 6 * np.sqrt(per)


@pytest.mark.parametrize("per_unit", [False, True])
@pytest.mark.parametrize("mode", ["hooks", "ghost", "functorch"])
def test_empty_batches_still_take_a_noisy_step(mode, per_unit):
    rng = np.random.default_rng(0)
    units = np.repeat(np.arange(40), rng.integers(1, 4, 40)) if per_unit else np.arange(40)
    x = rng.random((len(units), 3)).astype(np.float32)
    order, starts, lengths = group_units(units)
    data = UnitBatches(x[order], (x[order, 0] > 0.5).astype(np.float32), starts, lengths, per_unit=per_unit)
    assert data.collate([])[0].shape[0] == 0
    plan = DPSGDPlan(1e-9, 3, 1.0, 1.0, 1.0, 1.0, 0.9, 1e-5, "prv")  # q so small that every batch is empty
    model = MLP(3, [4])
    before = [p.detach().clone() for p in model.parameters()]
    assert train_mlp(model, data, steps=3, lr=0.01, batch_size=1, plan=plan, grad_sample_mode=mode) == 3
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # noise moved every tensor
