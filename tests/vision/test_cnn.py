"""The GAF-CNN: shapes, per-image clipping under DP-SGD (against gradients computed by hand), cancellation,
and one small CPU run each, plain and private, on the real candlesticks dataset (seeded)."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from opacus.grad_sample.utils import prepare_module
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

from tests.training.conftest import _IGNORED  # third-party warnings of Opacus' hooks (see there)
from training.dpsgd import Cancelled, DPSGDPlan, plan_dpsgd
from training.errors import InvalidJob
from training.vision.candlesticks import build_candlesticks
from training.vision.cnn import GafCNN, ImageBatches, predict_proba, train_cnn
from training.vision.patterns import CLASSES

pytestmark = [pytest.mark.filterwarnings(spec) for spec in _IGNORED]

C = 0.5


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # small convolutions are faster on one thread, and the test machine's cores are shared
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def candlesticks() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every labelled window; a held-out set of 20 windows per class, the rest to train on."""
    images, labels, class_names, _ = build_candlesticks(per_class=1500)
    assert class_names == list(CLASSES)
    rng = np.random.default_rng(0)
    test = np.concatenate([rng.choice(np.flatnonzero(labels == k), 20, replace=False) for k in range(8)])
    train = np.setdiff1d(np.arange(len(labels)), test)
    return images[train], labels[train], images[test], labels[test]


def random_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, 10, 10, 4)).astype(np.float32), rng.integers(0, 8, n)


def manual_grads(model: GafCNN, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The gradient of one image's cross-entropy, computed on that image alone."""
    loss = torch.nn.functional.cross_entropy(model(x[None]), y[None], reduction="sum")
    return list(torch.autograd.grad(loss, list(model.parameters())))


def flat_norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in tensors)))


def accuracy(model: GafCNN, images: np.ndarray, labels: np.ndarray) -> float:
    return float((predict_proba(model, images).argmax(axis=1) == labels).mean())


def test_shapes_and_probabilities():
    torch.manual_seed(0)
    model = GafCNN(8)
    x, _ = random_images(5)
    assert model(torch.from_numpy(x)).shape == (5, 8)
    assert [type(m).__name__ for m in model.children()] == ["Conv2d", "Conv2d", "Linear", "Linear", "ReLU"]
    assert (model.conv1.out_channels, model.conv2.out_channels, model.fc1.out_features) == (16, 32, 256)
    proba = predict_proba(model, x, batch=2)  # several batches
    assert proba.shape == (5, 8) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert not model.training
    assert predict_proba(model, x[:0]).shape == (0, 8)
    other = GafCNN(3, window=6, channels=2, hidden=16)
    assert other(torch.zeros(2, 6, 6, 2)).shape == (2, 3)
    with pytest.raises(ValueError):
        model(torch.zeros(2, 4, 10, 10))  # channels first: not the table's layout
    with pytest.raises(ValueError):
        GafCNN(1)


def test_hooks_clip_each_image_to_the_norm():
    torch.manual_seed(0)
    x, y = random_images(3)
    data = ImageBatches(x, y)
    model = GafCNN(8)
    reference = copy.deepcopy(model)
    xb, yb = data.collate([0, 1, 2])
    per_image = [manual_grads(reference, xb[i], yb[i]) for i in range(3)]
    assert all(flat_norm(g) > 4 * C for g in per_image)  # every image's gradient is beyond the norm

    gsm = prepare_module(model, grad_sample_mode="hooks", batch_first=True, loss_reduction="sum")
    opt = DPOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1),
        noise_multiplier=0.0, max_grad_norm=C, expected_batch_size=3, loss_reduction="sum",
    )  # fmt: skip
    torch.nn.functional.cross_entropy(gsm(xb), yb, reduction="sum").backward()
    for k, p in enumerate(model.parameters()):
        assert p.grad_sample.shape == (3, *p.shape)  # one gradient per image
        for i in range(3):
            torch.testing.assert_close(p.grad_sample[i], per_image[i][k], rtol=1e-4, atol=1e-5)
    opt.pre_step()
    # noise 0: the step's gradient is the sum of the clipped per-image gradients, each scaled to norm C
    expected = [sum(g[k] * (C / flat_norm(g)) for g in per_image) for k in range(len(per_image[0]))]
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-3, atol=1e-6)
    assert flat_norm([p.grad for p in model.parameters()]) <= 3 * C + 1e-5
    gsm.remove_hooks()


def test_ghost_clipping_computes_the_same_norms():
    torch.manual_seed(1)
    x, y = random_images(4, seed=1)
    model = GafCNN(8)
    xb, yb = torch.from_numpy(x), torch.from_numpy(y)
    true_norms = [flat_norm(manual_grads(copy.deepcopy(model), xb[i], yb[i])) for i in range(4)]
    gsm = prepare_module(model, grad_sample_mode="ghost", batch_first=True, loss_reduction="sum", max_grad_norm=C)
    opt = DPOptimizerFastGradientClipping(
        torch.optim.SGD(model.parameters(), lr=0.1),
        noise_multiplier=0.0, max_grad_norm=C, expected_batch_size=4, loss_reduction="sum",
    )  # fmt: skip
    criterion = DPLossFastGradientClipping(gsm, opt, torch.nn.CrossEntropyLoss(reduction="sum"), "sum")
    criterion(gsm(xb), yb).backward()
    np.testing.assert_allclose(gsm.get_norm_sample().detach().numpy(), true_norms, rtol=1e-4)
    opt.pre_step()
    assert flat_norm([p.grad for p in model.parameters()]) <= 4 * C + 1e-5
    gsm.remove_hooks()


def test_training_stops_between_steps_when_cancelled():
    x, y = random_images(200)
    plan = DPSGDPlan(0.25, 100, 25.0, 1.0, 1.0, 1.0, 0.9, 1e-5, "prv")
    for p in (plan, None):
        steps: list[int] = []
        checks = iter([False, False, False, True])
        with pytest.raises(Cancelled):
            train_cnn(
                GafCNN(8, hidden=8), x, y, steps=100, lr=0.01, batch_size=50, plan=p,
                on_step=steps.append, should_stop=lambda: next(checks),
            )  # fmt: skip
        assert steps == [1, 2, 3]


@pytest.mark.parametrize("mode", ["hooks", "ghost", "functorch"])
def test_every_mode_takes_private_steps_and_cleans_up(mode):
    torch.manual_seed(0)
    x, y = random_images(60)
    model = GafCNN(8, hidden=16)
    before = [p.detach().clone() for p in model.parameters()]
    plan = DPSGDPlan(0.2, 4, 1.0, 1.0, 1.0, 1.0, 0.9, 1e-5, "prv")
    assert train_cnn(model, x, y, steps=4, lr=0.01, batch_size=12, plan=plan, grad_sample_mode=mode) == 4
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(getattr(p, "grad_sample", None) is None and p.grad is None for p in model.parameters())
    assert not model.training


def test_empty_batches_still_take_a_noisy_step():
    x, y = random_images(40)
    model = GafCNN(8, hidden=8)
    before = [p.detach().clone() for p in model.parameters()]
    plan = DPSGDPlan(1e-9, 3, 1.0, 1.0, 1.0, 1.0, 0.9, 1e-5, "prv")  # q so small that every batch is empty
    assert train_cnn(model, x, y, steps=3, lr=0.01, batch_size=1, plan=plan) == 3
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # noise moved everything


def test_bad_inputs_are_refused():
    x, y = random_images(10)
    plan = DPSGDPlan(0.5, 2, 1.0, 1.0, 1.0, 1.0, 0.9, 1e-5, "prv")
    with pytest.raises(InvalidJob):
        train_cnn(GafCNN(8), x, y, steps=2, lr=0.01, batch_size=5, plan=plan, grad_sample_mode="magic")
    with pytest.raises(ValueError):
        train_cnn(GafCNN(4), x, y + 4, steps=2, lr=0.01, batch_size=5, plan=None)  # labels beyond the classes
    with pytest.raises(ValueError):
        ImageBatches(x[:, :, :, 0], y)


def test_nonprivate_cnn_learns_the_patterns(candlesticks):
    """Chance is 1/8 on the balanced held-out set; the CNN reaches about 0.8 here in about 3 seconds."""
    x_train, y_train, x_test, y_test = candlesticks
    torch.manual_seed(0)
    model = GafCNN(8)
    assert train_cnn(model, x_train, y_train, steps=150, lr=1e-3, batch_size=64, plan=None) == 150
    assert accuracy(model, x_test, y_test) > 0.5


def test_private_cnn_at_epsilon_3_beats_chance(candlesticks):
    """DP-SGD at (3, 1e-5) on ~2,100 images, 10 epochs: about 0.5 on the balanced held-out set (chance
    0.125). Ghost clipping, for speed: the per-image norms are those of hooks (see above)."""
    x_train, y_train, x_test, y_test = candlesticks
    plan = plan_dpsgd(
        target_epsilon=3.0, delta=1e-5, units_estimate=len(y_train), batch_size=256, epochs=10, max_grad_norm=1.0
    )
    assert plan.epsilon <= 3.0
    torch.manual_seed(0)
    model = GafCNN(8)
    steps = train_cnn(
        model, x_train, y_train, steps=plan.steps, lr=1e-2, batch_size=256, plan=plan, grad_sample_mode="ghost"
    )
    assert steps == plan.steps
    assert accuracy(model, x_test, y_test) > 0.25
