"""The GAF-CNN classifier of candlestick images, trained plainly or with DP-SGD (Opacus).

Architecture (Chen & Tsai, "Encoding candlesticks as images for pattern classification using
convolutional neural networks", Financial Innovation 6:26, 2020; the model of Wang & Tsai's privacy
study): two 3x3 convolutions (padding 1, 16 and 32 filters, ReLU), then a dense layer of 256 ReLU units
and one logit per class. No pooling (the images are 10x10) and no BatchNorm: BatchNorm mixes the
samples of a batch, so a sample's gradient would depend on the others and per-sample clipping would
bound nothing; Opacus refuses it.

Guarantee (with a plan). The unit is the image: one window, one row of the table, one sample. Each step
draws a Poisson sample of images at rate ``plan.sample_rate`` (`training.dpsgd.PoissonSampler`), computes
each image's gradient of its cross-entropy loss, clips it to L2 norm ``plan.max_grad_norm``, sums, and adds
N(0, σ²C²) noise with σ = ``plan.noise_multiplier`` (Opacus' DP optimiser) — the Poisson-subsampled
Gaussian mechanism of `training.dpsgd`, composed over ``plan.steps``, whose ε the plan's accountant
states under add/remove-one-image neighbours. As there, the loss is summed (not averaged over the
batch, whose size is private) and the optimiser is Adam. Noise comes from torch's generator (Opacus'
``secure_mode`` off).

Without a plan the model trains on shuffled minibatches with plain Adam (administrators' baselines).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..dpsgd import DEFAULT_GRAD_SAMPLE_MODE, DPSGDPlan, train_model

__all__ = ["GafCNN", "ImageBatches", "predict_proba", "train_cnn"]


class GafCNN(nn.Module):
    """GAF-CNN: images ``[N, window, window, channels]`` (the layout of `training.vision.candlesticks`)
    to logits ``[N, n_classes]``."""

    def __init__(self, n_classes: int, window: int = 10, channels: int = 4, hidden: int = 256) -> None:
        super().__init__()
        if n_classes < 2 or window < 1 or channels < 1 or hidden < 1:
            raise ValueError("n_classes must be at least 2, and window, channels and hidden positive")
        self.n_classes, self.window, self.channels, self.hidden = n_classes, window, channels, hidden
        self.conv1 = nn.Conv2d(channels, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(32 * window * window, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.window, self.window, self.channels):
            raise ValueError(
                f"expected images [N, {self.window}, {self.window}, {self.channels}], got {tuple(x.shape)}"
            )
        # channels last (the table's layout) -> channels first (Conv2d's); contiguous, because Opacus'
        # per-sample gradient of Conv2d assumes it (on a permuted view its per-sample gradients are wrong)
        h = x.permute(0, 3, 1, 2).contiguous()
        h = self.act(self.conv1(h))
        h = self.act(self.conv2(h))
        h = self.act(self.fc1(h.flatten(1)))
        return self.fc2(h)


class ImageBatches(torch.utils.data.Dataset[Any]):
    """Images and labels as samples for a (Poisson) DataLoader: the dataset yields indices and
    `collate` gathers them, so that a batch is one indexing of two tensors."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        x = np.asarray(images, dtype=np.float32)
        y = np.asarray(labels)
        if x.ndim != 4 or y.shape != (x.shape[0],):
            raise ValueError(f"expected images [n, T, T, C] and labels [n], got {x.shape} and {y.shape}")
        if len(y) and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0):
            raise ValueError("labels must be non-negative class indices")
        self.x = torch.from_numpy(np.ascontiguousarray(x))
        self.y = torch.from_numpy(y.astype(np.int64))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[int]:
        return (int(i),)

    def __getitems__(self, indices: list[int]) -> list[int]:
        return list(indices)

    def collate(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return self.x[idx], self.y[idx]


def train_cnn(
    model: GafCNN,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    plan: DPSGDPlan | None,
    grad_sample_mode: str = DEFAULT_GRAD_SAMPLE_MODE,
    on_step: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Train `model` in place for `steps` steps; DP-SGD when `plan` is given (see the module docstring),
    else plain Adam on shuffled minibatches of `batch_size`.

    Returns the number of steps run. Raises `training.dpsgd.Cancelled` between steps when
    `should_stop()` says so.
    """
    data = ImageBatches(images, labels)
    if len(data) and int(data.y.max()) >= model.n_classes:
        raise ValueError(f"labels must be below n_classes = {model.n_classes}")
    return train_model(
        model, data, nn.CrossEntropyLoss(reduction="sum"), steps=steps, lr=lr, batch_size=batch_size, plan=plan,
        grad_sample_mode=grad_sample_mode, on_step=on_step, should_stop=should_stop,
    )  # fmt: skip


@torch.no_grad()
def predict_proba(model: GafCNN, images: np.ndarray, *, batch: int = 4096) -> np.ndarray:
    """Class probabilities (n, n_classes) of images ``[n, window, window, channels]`` (softmax of the
    logits; eval mode, no gradients)."""
    model.eval()
    x = np.asarray(images, dtype=np.float32)
    out = np.empty((len(x), model.n_classes), dtype=np.float64)
    for i in range(0, len(x), batch):
        logits = model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch])))
        out[i : i + batch] = torch.softmax(logits, dim=1).double().numpy()
    return out
