"""The GAF-CNN classifier of candlestick images, trained plainly or with DP-SGD (Opacus).

Architecture. GafCNN's ``"dense"`` design is Chen & Tsai's ("Encoding candlesticks as images for
pattern classification using convolutional neural networks", Financial Innovation 6:26, 2020; the model
of Wang & Tsai's privacy study): two 3x3 convolutions (padding 1, 16 and 32 filters, ReLU), then a dense
layer of 256 ReLU units and one logit per class. Jobs train the ``"gn"`` design (`DEFAULT_DESIGN`,
issue #16), shaped for DP-SGD: the dense design's 819k-weight dense layer takes noise in every
coordinate, so the ``"gn"`` design has none (conv 16, conv 32 at stride 2, each with GroupNorm, then a
linear layer to the logits: 11.7k weights). On the demo windows it reaches 0.77 at ε = 5.4 where the
dense design reaches 0.63, at the same non-private accuracy (about 0.84; bench/vision_dp.py). No
BatchNorm in either: BatchNorm mixes the samples of a batch, so a sample's gradient would depend on the
others and per-sample clipping would bound nothing; Opacus refuses it. GroupNorm normalises each sample
on its own.

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

__all__ = ["DEFAULT_DESIGN", "DESIGNS", "GafCNN", "ImageBatches", "build_cnn", "predict_proba", "train_cnn"]


#: the layer designs of `GafCNN`; the product trains ``"gn"`` (`DEFAULT_DESIGN`)
DESIGNS = ("dense", "gn")
DEFAULT_DESIGN = "gn"


class GafCNN(nn.Module):
    """GAF-CNN: images ``[N, window, window, channels]`` (the layout of `training.vision.candlesticks`)
    to logits ``[N, n_classes]``, in one of two layer designs:

    * ``"dense"`` (the default of this constructor; Chen & Tsai's): conv 3x3 16, conv 3x3 32 (ReLU),
      a dense layer of `hidden` ReLU units on the flattened ``32 x window x window`` map, the logits.
      Its dense layer holds 819k of the 826k weights, each of which takes DP-SGD's noise;
    * ``"gn"`` (`DEFAULT_DESIGN`, what jobs train; shaped for per-sample clipping): conv 3x3 16 and conv
      3x3 32 at stride 2, each followed by GroupNorm (4 groups: a per-sample normalisation, unlike
      BatchNorm) and ReLU, then one linear layer from the ``32 x ceil(window/2)²`` map (800 for 10x10)
      to the logits: 11.7k weights for 8 classes. No global pooling: the position in a GAF image is the
      pair of days, and the patterns sit at the window's last days, so pooling it away costs accuracy
      (bench/vision_dp.py).

    `load_state_dict` reads either design's state dict and rebuilds the layers to match, so a model
    stored under either loads into ``GafCNN(n_classes, window, channels)``.
    """

    def __init__(
        self, n_classes: int, window: int = 10, channels: int = 4, hidden: int = 256, *, design: str = "dense",
        width: int = 32,
    ) -> None:  # fmt: skip
        super().__init__()
        if n_classes < 2 or window < 1 or channels < 1 or hidden < 1:
            raise ValueError("n_classes must be at least 2, and window, channels and hidden positive")
        if design not in DESIGNS:
            raise ValueError(f"design must be one of {DESIGNS}")
        if width < 8 or width % 8:
            raise ValueError("width must be a positive multiple of 8")
        self.n_classes, self.window, self.channels = n_classes, window, channels
        self._build(design, hidden=hidden, width=width)

    def _build(self, design: str, *, hidden: int, width: int) -> None:
        for name in ("conv1", "conv2", "fc1", "fc2", "act", "features", "fc"):
            if name in self._modules:
                del self._modules[name]
        self.design, self.hidden, self.width = design, hidden, width
        c, w = self.channels, self.window
        if design == "dense":
            self.conv1 = nn.Conv2d(c, 16, kernel_size=3, padding=1)
            self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
            self.fc1 = nn.Linear(32 * w * w, hidden)
            self.fc2 = nn.Linear(hidden, self.n_classes)
            self.act = nn.ReLU()
        else:
            half, side = width // 2, (w + 1) // 2
            self.features = nn.Sequential(
                nn.Conv2d(c, half, kernel_size=3, padding=1), nn.GroupNorm(4, half), nn.ReLU(),
                nn.Conv2d(half, width, kernel_size=3, stride=2, padding=1), nn.GroupNorm(4, width), nn.ReLU(),
            )  # fmt: skip
            self.fc = nn.Linear(width * side * side, self.n_classes)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        if "fc1.weight" in state_dict:
            hidden = int(state_dict["fc1.weight"].shape[0])
            if (self.design, self.hidden) != ("dense", hidden):
                self._build("dense", hidden=hidden, width=self.width)
        elif "features.3.weight" in state_dict:
            width = int(state_dict["features.3.weight"].shape[0])
            if (self.design, self.width) != ("gn", width):
                self._build("gn", hidden=self.hidden, width=width)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def describe(self) -> str:
        """The layers, in words (the model card's ``layers``)."""
        if self.design == "dense":
            return f"conv 3x3 16, conv 3x3 32, dense {self.hidden}"
        side = (self.window + 1) // 2
        return (f"conv 3x3 {self.width // 2} + GroupNorm, conv 3x3 {self.width} stride 2 + GroupNorm, "
                f"linear {self.width * side * side} -> {self.n_classes}")  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.window, self.window, self.channels):
            raise ValueError(
                f"expected images [N, {self.window}, {self.window}, {self.channels}], got {tuple(x.shape)}"
            )
        # channels last (the table's layout) -> channels first (Conv2d's); contiguous, because Opacus'
        # per-sample gradient of Conv2d assumes it (on a permuted view its per-sample gradients are wrong)
        h = x.permute(0, 3, 1, 2).contiguous()
        if self.design == "gn":
            return self.fc(self.features(h).flatten(1))
        h = self.act(self.conv1(h))
        h = self.act(self.conv2(h))
        h = self.act(self.fc1(h.flatten(1)))
        return self.fc2(h)


def build_cnn(arch: str, n_classes: int, window: int = 10, channels: int = 4, **kw: Any) -> nn.Module:
    """The image classifier named `arch`: ``"gaf_cnn"`` (GafCNN's ``"dense"`` design) or ``"gn"``."""
    design = {"gaf_cnn": "dense", "dense": "dense", "gn": "gn", "gn_flat": "gn"}.get(arch)
    if design is None:
        raise ValueError(f"unknown architecture {arch!r}")
    return GafCNN(n_classes, window, channels, design=design, **kw)


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
    model: nn.Module,
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
    ema: float | None = None,
) -> int:
    """Train `model` in place for `steps` steps; DP-SGD when `plan` is given (see the module docstring),
    else plain Adam on shuffled minibatches of `batch_size`. `ema`: end with the exponential moving
    average of the weights (`training.dpsgd.train_model`; post-processing).

    Returns the number of steps run. Raises `training.dpsgd.Cancelled` between steps when
    `should_stop()` says so.
    """
    data = ImageBatches(images, labels)
    if len(data) and int(data.y.max()) >= model.n_classes:
        raise ValueError(f"labels must be below n_classes = {model.n_classes}")
    return train_model(
        model, data, nn.CrossEntropyLoss(reduction="sum"), steps=steps, lr=lr, batch_size=batch_size, plan=plan,
        grad_sample_mode=grad_sample_mode, on_step=on_step, should_stop=should_stop, ema=ema,
    )  # fmt: skip


@torch.no_grad()
def predict_proba(model: nn.Module, images: np.ndarray, *, batch: int = 4096) -> np.ndarray:
    """Class probabilities (n, n_classes) of images ``[n, window, window, channels]`` (softmax of the
    logits; eval mode, no gradients)."""
    model.eval()
    x = np.asarray(images, dtype=np.float32)
    out = np.empty((len(x), model.n_classes), dtype=np.float64)
    for i in range(0, len(x), batch):
        logits = model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch])))
        out[i : i + batch] = torch.softmax(logits, dim=1).double().numpy()
    return out
