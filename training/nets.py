"""The tabular model of DP-SGD jobs and the user-level batching it trains on.

User-level DP-SGD. A sample is a privacy unit, not a row. A batch is a tensor ``[B, T, d]`` of B units,
each padded to the batch's longest unit (T <= k = max_rows_per_unit, which the bounded relation enforces)
with a mask ``[B, T]``; the model maps every row to a logit (``[B, T]``) and `UnitBCELoss` sums the masked
row losses of each unit into one per-unit loss ``[B]``. Opacus therefore computes, clips and noises one
gradient per *unit* — the sum of its rows' gradients, clipped as a whole to ``max_grad_norm`` — and its
Poisson sampler draws units. Padded rows carry a zero mask, hence zero loss and zero gradient. Removing a
unit removes exactly one sample from the sampled set, which is the neighbouring relation that Opacus'
accountants (Poisson-subsampled Gaussian) analyse: the (ε, δ) they report is user-level.

Where k = 1 the unit is the row and batches are plain ``[B, d]``.

`UnitLinear` is an ``nn.Linear`` whose per-sample gradient *norm* (ghost clipping) is computed the cheaper
of two exact ways: Opacus' ghost identity (a ``T x T`` Gram matrix per sample, cost ~ T²(d_in+d_out)) or
the per-sample gradient itself (cost ~ T·d_in·d_out). For tabular units of up to hundreds of rows the
second wins by an order of magnitude; for T = 1 the first does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from opacus.grad_sample.linear import compute_linear_grad_sample
from opacus.grad_sample.utils import register_grad_sampler, register_norm_sampler
from torch import nn

__all__ = ["MLP", "UnitBCELoss", "UnitBatches", "UnitLinear"]


class UnitLinear(nn.Linear):
    """``nn.Linear`` with a cost-aware exact per-sample gradient norm (see the module docstring)."""


@register_grad_sampler(UnitLinear)
def _unit_linear_grad_sample(
    layer: nn.Linear, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    return compute_linear_grad_sample(layer, activations, backprops)


@register_norm_sampler(UnitLinear)
def _unit_linear_norm_sample(
    layer: nn.Linear, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[torch.Tensor, torch.Tensor]:
    a = activations[0].to(backprops.dtype)
    g = backprops
    out: dict[torch.Tensor, torch.Tensor] = {}  # keyed by the layer's parameters
    if g.dim() == 2:  # one row per sample: ||g a^T|| = ||g|| ||a||
        if layer.weight.requires_grad:
            out[layer.weight] = g.norm(dim=1) * a.norm(dim=1)
        if layer.bias is not None and layer.bias.requires_grad:
            out[layer.bias] = g.norm(dim=1)
        return out
    if g.dim() > 3:
        g = g.flatten(1, -2)
        a = a.flatten(1, -2)
    t, d_in, d_out = g.shape[1], a.shape[-1], g.shape[-1]
    if layer.weight.requires_grad:
        if t * (d_in + d_out) <= d_in * d_out:  # ghost: <G G^T, A A^T>
            ggt = torch.bmm(g, g.transpose(1, 2))
            aat = torch.bmm(a, a.transpose(1, 2))
            out[layer.weight] = (ggt * aat).sum(dim=(1, 2)).clamp(min=0).sqrt()
        else:  # the per-sample gradient G^T A, then its norm
            out[layer.weight] = torch.bmm(g.transpose(1, 2), a).flatten(1).norm(dim=1)
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias] = g.sum(dim=1).norm(dim=1)
    return out


class MLP(nn.Module):
    """A small ReLU network: d -> hidden... -> 1 logit per row; any leading dimensions pass through.

    Padded rows of a unit batch get logits too; their loss is masked to zero (`UnitBCELoss`)."""

    def __init__(self, d_in: int, hidden: Sequence[int] = (64, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = d_in
        for h in hidden:
            layers += [UnitLinear(width, h), nn.ReLU()]
            width = h
        layers.append(UnitLinear(width, 1))
        self.net = nn.Sequential(*layers)
        self.d_in = d_in
        self.hidden = tuple(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # features arrive in [0, 1]; centring them on [-1, 1] (a fixed map, no data involved) keeps the
        # early, bias-dominated steps of an imbalanced task from learning "large inputs -> negative"
        return self.net(2.0 * x - 1.0).squeeze(-1)

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray, *, batch: int = 65_536) -> np.ndarray:
        """P(positive) per row of a ``[n, d]`` array."""
        self.eval()
        out = np.empty(len(x), dtype=np.float64)
        for i in range(0, len(x), batch):
            logits = self(torch.from_numpy(np.ascontiguousarray(x[i : i + batch])))
            out[i : i + batch] = torch.sigmoid(logits).double().numpy()
        return out


class UnitBCELoss(nn.Module):
    """Binary cross-entropy summed over each unit's rows: ``[B]`` per-unit losses, then `reduction`.

    Target: ``[B]`` labels for plain batches, or ``[B, T, 2]`` (label, mask) for unit batches. Opacus'
    ghost clipping sets ``reduction = "none"`` to get the per-unit losses.
    """

    def __init__(self, reduction: str = "sum") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() == 1:
            per_unit = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        else:
            y, mask = target[..., 0], target[..., 1]
            rows = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
            per_unit = (rows * mask).sum(dim=1)
        if self.reduction == "none":
            return per_unit
        if self.reduction == "sum":
            return per_unit.sum()
        return per_unit.mean()


class UnitBatches(torch.utils.data.Dataset[Any]):
    """Units as samples for a (Poisson) DataLoader: the dataset yields unit indices, `collate` pads.

    `x` and `y` are the rows sorted by unit; unit i owns rows ``starts[i] : starts[i] + lengths[i]``.
    With `per_unit` False (k = 1) a unit is one row and batches are ``([B, d], [B])``.
    """

    def __init__(
        self, x: np.ndarray, y: np.ndarray, starts: np.ndarray, lengths: np.ndarray, *, per_unit: bool
    ) -> None:
        # one all-zero row at the end: padding points there, so a gather needs no masking afterwards
        pad = np.zeros((1, x.shape[1]), np.float32)
        self.x = torch.from_numpy(np.concatenate([np.asarray(x, dtype=np.float32), pad]))
        self.y = torch.from_numpy(np.concatenate([np.asarray(y, dtype=np.float32), np.zeros(1, np.float32)]))
        self._pad = len(self.x) - 1
        self.starts = torch.from_numpy(np.asarray(starts, dtype=np.int64))
        self.lengths = torch.from_numpy(np.asarray(lengths, dtype=np.int64))
        self.per_unit = per_unit

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[int]:
        return (int(i),)

    def __getitems__(self, indices: list[int]) -> list[int]:
        return list(indices)

    def collate(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        if not self.per_unit:
            rows = self.starts[idx]
            return self.x[rows], self.y[rows]
        lengths = self.lengths[idx]
        t = int(lengths.max()) if len(lengths) else 1
        steps = torch.arange(t)
        mask = steps[None, :] < lengths[:, None]
        pos = torch.where(mask, self.starts[idx][:, None] + steps[None, :], self._pad).flatten()
        x = torch.index_select(self.x, 0, pos).view(len(idx), t, self.x.shape[1])
        y = torch.index_select(self.y, 0, pos).view(len(idx), t)
        return x, torch.stack([y, mask.to(torch.float32)], dim=-1)
