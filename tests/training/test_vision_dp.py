"""The CNN design DP-SGD jobs train (GafCNN's GroupNorm design) and the EMA of the weights: per-image
clipping of the GroupNorm design (against gradients computed by hand), the stored-model round trip of
either design, and the EMA as a post-processing of exactly the iterates DP-SGD took."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from opacus.grad_sample.utils import prepare_module
from opacus.optimizers import DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

from tests.training.conftest import _IGNORED
from training.dpsgd import DPSGDPlan
from training.vision.cnn import DEFAULT_DESIGN, GafCNN, build_cnn, predict_proba, train_cnn

pytestmark = [pytest.mark.filterwarnings(spec) for spec in _IGNORED]

C = 0.5


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, 10, 10, 4)).astype(np.float32), rng.integers(0, 8, n)


def flat_norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in tensors)))


def manual_grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x[None]), y[None], reduction="sum").backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def test_the_default_design_is_small_and_normalises_per_sample():
    torch.manual_seed(0)
    model = GafCNN(8, design=DEFAULT_DESIGN)
    assert DEFAULT_DESIGN == "gn"
    kinds = {type(m).__name__ for m in model.modules()}
    assert "GroupNorm" in kinds and not any("BatchNorm" in k for k in kinds)
    assert sum(p.numel() for p in model.parameters()) < 20_000  # the dense design: 826k
    assert sum(p.numel() for p in GafCNN(8).parameters()) > 800_000
    x, _ = random_images(5)
    assert model(torch.from_numpy(x)).shape == (5, 8)
    # one image's logits do not depend on the other images of its batch (no batch statistics)
    with torch.no_grad():
        torch.testing.assert_close(model(torch.from_numpy(x))[:1], model(torch.from_numpy(x[:1])))
    assert "GroupNorm" in model.describe() and model.describe().endswith("linear 800 -> 8")
    with pytest.raises(ValueError):
        GafCNN(8, design="batchnorm")
    with pytest.raises(ValueError):
        build_cnn("resnet", 8)


def test_ghost_clipping_of_the_groupnorm_design_clips_each_image():
    torch.manual_seed(1)
    x, y = random_images(4, seed=1)
    model = GafCNN(8, design="gn")
    xb, yb = torch.from_numpy(x), torch.from_numpy(y)
    per_image = [manual_grads(copy.deepcopy(model), xb[i], yb[i]) for i in range(4)]
    true_norms = [flat_norm(g) for g in per_image]
    assert min(true_norms) > C  # every image is clipped
    gsm = prepare_module(model, grad_sample_mode="ghost", batch_first=True, loss_reduction="sum", max_grad_norm=C)
    opt = DPOptimizerFastGradientClipping(
        torch.optim.SGD(model.parameters(), lr=0.1),
        noise_multiplier=0.0, max_grad_norm=C, expected_batch_size=4, loss_reduction="sum",
    )  # fmt: skip
    criterion = DPLossFastGradientClipping(gsm, opt, torch.nn.CrossEntropyLoss(reduction="sum"), "sum")
    criterion(gsm(xb), yb).backward()
    np.testing.assert_allclose(gsm.get_norm_sample().detach().numpy(), true_norms, rtol=1e-4)
    opt.pre_step()
    # noise 0: the step's gradient is the sum of the per-image gradients, each scaled to norm C
    expected = [sum(g[k] * (C / flat_norm(g)) for g in per_image) for k in range(len(per_image[0]))]
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-3, atol=1e-6)
    gsm.remove_hooks()


@pytest.mark.parametrize("design", ["gn", "dense"])
def test_a_stored_model_of_either_design_loads_into_the_default_constructor(design):
    torch.manual_seed(2)
    trained = GafCNN(8, design=design, hidden=16)
    x, _ = random_images(6)
    loaded = GafCNN(8)  # what the model registry builds
    loaded.load_state_dict(trained.state_dict())
    assert loaded.design == design
    np.testing.assert_allclose(predict_proba(loaded, x), predict_proba(trained, x), rtol=1e-6)
    wide = GafCNN(8, design="gn", width=64)
    back = GafCNN(8, design="gn")
    back.load_state_dict(wide.state_dict())
    np.testing.assert_allclose(predict_proba(back, x), predict_proba(wide, x), rtol=1e-6)


@pytest.mark.parametrize("private", [False, True])
def test_ema_is_the_moving_average_of_the_iterates_taken(private):
    """The same seeded run with and without `ema`: the EMA model's weights are the moving average of the
    no-EMA run's iterates (so the EMA changes which weights are kept, not the steps, their sampling or
    their noise), and the number of steps is the plan's."""
    x, y = random_images(60)
    plan = DPSGDPlan(0.2, 6, 1.2, 1.0, 1.0, 1.0, 0.9, 1e-5, "prv") if private else None
    decay = 0.9

    torch.manual_seed(3)
    plain = GafCNN(8, design="gn")
    start = copy.deepcopy(plain)
    iterates: list[list[torch.Tensor]] = []
    ran = train_cnn(plain, x, y, steps=6, lr=0.01, batch_size=12, plan=plan, grad_sample_mode="ghost",
                    on_step=lambda _: iterates.append([p.detach().clone() for p in plain.parameters()]))  # fmt: skip
    assert ran == 6 and len(iterates) == 6

    torch.manual_seed(3)
    averaged = GafCNN(8, design="gn")
    assert train_cnn(averaged, x, y, steps=6, lr=0.01, batch_size=12, plan=plan, grad_sample_mode="ghost", ema=decay) == 6

    expected = [p.detach().clone() for p in start.parameters()]
    for t, it in enumerate(iterates, start=1):
        d = min(decay, (1.0 + t) / (10.0 + t))
        expected = [d * e + (1 - d) * w for e, w in zip(expected, it)]
    for p, e in zip(averaged.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)
    assert not all(torch.equal(p, w) for p, w in zip(averaged.parameters(), iterates[-1]))
    with pytest.raises(ValueError):
        train_cnn(GafCNN(8), x, y, steps=1, lr=0.01, batch_size=12, plan=None, ema=1.0)


@pytest.mark.parametrize("method", ["dpsgd", "nonprivate"])
def test_image_jobs_train_the_groupnorm_design_and_say_so(method):
    from fractions import Fraction

    from training import models
    from training.jobs import JobSpec

    x, y = random_images(40)
    image = {"window": 10, "channels": ["close", "upper", "lower", "body"], "prefix": "gaf_"}
    dp = DPSGDPlan(0.25, 3, 0.75, 1.0, 1.0, 1.0, 0.9, 1e-5, "prv")
    plan = {"image": image, "n_classes": 8, "model": dp.to_json()}
    params = {"epochs": 1.0, "batch_size": 10, "lr": 0.01, "grad_sample_mode": "auto"}
    job = JobSpec("candlesticks", "windows", "label", None, None, method, Fraction(1), Fraction(1, 100_000), params)
    seen: list[tuple[int, int]] = []
    torch.manual_seed(4)
    model, training = models.run_cnn(job, plan, x.reshape(40, -1), y, np.ones(40, bool),
                                     on_step=lambda d, t: seen.append((d, t)), stopped=lambda: False)  # fmt: skip
    assert model.design == "gn" and training["architecture"] == "gaf_cnn" and training["design"] == "gn"
    assert training["layers"] == model.describe()
    assert training["steps"] == (3 if method == "dpsgd" else 4) == seen[-1][0] == seen[-1][1]
    assert training["ema"] == (models.CNN_EMA if method == "dpsgd" else None)
    assert models.cnn_proba(model, image)(x.reshape(40, -1)[:3]).shape == (3, 8)
