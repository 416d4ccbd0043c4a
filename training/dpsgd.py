"""DP-SGD with Opacus: the plan (sampling rate, steps, noise multiplier, the accountant's ε) and the loop.

Guarantee. Each step draws a Poisson sample of *units* at rate q (each unit independently; see
`PoissonSampler`, distributed exactly as Opacus' `UniformWithReplacementSampler`), computes one
gradient per unit (the sum of its rows' gradients; see `nets`), clips it to L2 norm C with Opacus'
per-sample clipping, sums, and adds N(0, σ²C²) noise to every coordinate (Opacus' DP optimiser) — the
Poisson-subsampled Gaussian mechanism, composed over the planned number of steps. Opacus' PRV accountant
(Gopi et al. 2021; its `get_epsilon` returns the upper end of its error interval) gives the ε of that
composition at the job's δ, under add/remove-one-unit neighbours; the RDP accountant (Mironov 2017) is the
fallback, used only when PRV fails, with the reason recorded. σ comes from Opacus'
`get_noise_multiplier`, which searches for the smallest σ whose ε is at most the target.

Everything the accountant sees — q, the steps, σ, C — is fixed before training from public inputs (the
job's parameters) and a noisy count of the training units (the job pays for it; see `service`). The
exact number of units never enters: q = batch_size / noisy count, and the optimiser sums (loss
reduction "sum") rather than dividing by an exact batch size; Adam is scale-invariant, so no division is
needed. Noise comes from torch's generator: Opacus' ``secure_mode`` is off (a caveat on every card).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.grad_sample.utils import prepare_module
from opacus.optimizers import get_optimizer_class
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping
from torch.utils.data import DataLoader

from .errors import InvalidJob
from .jobs import GRAD_SAMPLE_MODES
from .nets import MLP, UnitBatches, UnitBCELoss

__all__ = ["GRAD_SAMPLE_MODES", "Cancelled", "DPSGDPlan", "PoissonSampler", "plan_dpsgd", "train_mlp", "train_model"]

DEFAULT_GRAD_SAMPLE_MODE = "hooks"


class PoissonSampler(torch.utils.data.Sampler[list[int]]):
    """Poisson sampling of n samples at rate q: each joins a batch independently with probability q.

    Drawn as |S| ~ Binomial(n, q), then S uniform among the subsets of that size. This is the same
    distribution as n coin flips — P(S) = q^|S| (1 - q)^(n - |S|) depends on |S| alone, so given its
    size the subset is uniform — at O(|S|) work per step instead of Opacus' O(n)
    (`UniformWithReplacementSampler` draws n uniforms each step: half the step time at a million rows).
    The uniform subset: distinct values of uniform draws, then a uniform subset of the needed size — a
    procedure that commutes with every permutation of the n indices, hence uniform. One "epoch" is
    int(1 / q) batches, as in Opacus. Randomness: torch's generator (`generator`, default global).
    """

    def __init__(self, n: int, q: float, generator: torch.Generator | None = None) -> None:
        self.n, self.q, self.generator = int(n), float(q), generator
        self._count = torch.tensor([float(self.n)], dtype=torch.float64)
        self._rate = torch.tensor([self.q], dtype=torch.float64)

    def __len__(self) -> int:
        return max(1, int(1 / self.q))

    def __iter__(self) -> Any:
        for _ in range(len(self)):
            m = int(torch.binomial(self._count, self._rate, generator=self.generator).item())
            yield self._subset(m)

    def _subset(self, m: int) -> list[int]:
        g = self.generator
        if m == 0:
            return []
        if 4 * m >= self.n:
            return torch.randperm(self.n, generator=g)[:m].tolist()
        chosen = torch.empty(0, dtype=torch.int64)
        while len(chosen) < m:
            extra = m - len(chosen)
            draw = torch.randint(self.n, (extra + extra // 8 + 8,), generator=g)
            chosen = torch.unique(torch.cat([chosen, draw]))
        return chosen[torch.randperm(len(chosen), generator=g)[:m]].tolist()


class Cancelled(Exception):
    """The job was cancelled; raised between steps."""


@dataclass(frozen=True)
class DPSGDPlan:
    """What the accountant was asked and answered; all public once the job is charged."""

    sample_rate: float
    steps: int
    epochs: float
    noise_multiplier: float
    max_grad_norm: float
    target_epsilon: float
    epsilon: float  # the accountant's ε for `steps` at `noise_multiplier` (<= target_epsilon)
    delta: float
    accountant: str
    accountant_note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _accountant_epsilon(name: str, sigma: float, q: float, steps: int, delta: float) -> float:
    acc = create_accountant(mechanism=name)
    acc.history = [(sigma, q, steps)]
    return float(acc.get_epsilon(delta=delta))


def plan_dpsgd(
    *,
    target_epsilon: float,
    delta: float,
    units_estimate: int,
    batch_size: int,
    epochs: float,
    max_grad_norm: float,
) -> DPSGDPlan:
    """Sampling rate, steps and noise multiplier for the target (ε, δ) of the model part.

    `units_estimate` is a noisy (already paid for) count of the training units: q = batch_size / it,
    capped at 1; steps = ceil(epochs / q). Raises InvalidJob when no noise multiplier reaches the target.
    """
    # The PRV accountant takes log(0) = -inf on parts of its domain for some q; that is expected and
    # harmless (its ε is checked below), so numpy's floating-point warnings are silenced here, per thread.
    with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
        return _plan_dpsgd(target_epsilon, delta, units_estimate, batch_size, epochs, max_grad_norm)


def _plan_dpsgd(
    target_epsilon: float, delta: float, units_estimate: int, batch_size: int, epochs: float, max_grad_norm: float
) -> DPSGDPlan:
    q = min(1.0, batch_size / max(1, units_estimate))
    steps = max(1, math.ceil(epochs / q))
    # σ's search stops within 1% of the target: ε left unspent is at most that, and each accountant
    # evaluation costs a quarter second
    tolerance = max(1e-4, 0.01 * target_epsilon)
    note = None
    try:
        sigma = get_noise_multiplier(
            target_epsilon=target_epsilon, target_delta=delta, sample_rate=q, steps=steps,
            accountant="prv", epsilon_tolerance=tolerance,
        )  # fmt: skip
        epsilon = _accountant_epsilon("prv", sigma, q, steps, delta)
        name = "prv"
    except ValueError as exc:
        if "budget is too low" in str(exc):
            raise InvalidJob(
                "epsilon is too small for these steps: no noise multiplier reaches it "
                "(fewer epochs or a larger batch_size may help)",
                field="epsilon",
            ) from None
        note = f"the PRV accountant failed ({type(exc).__name__}); RDP was used"
        sigma, epsilon, name = None, None, "rdp"
    except (ArithmeticError, RuntimeError, IndexError) as exc:
        note = f"the PRV accountant failed ({type(exc).__name__}); RDP was used"
        sigma, epsilon, name = None, None, "rdp"
    if sigma is None:
        try:
            sigma = get_noise_multiplier(
                target_epsilon=target_epsilon, target_delta=delta, sample_rate=q, steps=steps,
                accountant="rdp", epsilon_tolerance=tolerance,
            )  # fmt: skip
        except ValueError:
            raise InvalidJob("epsilon is too small for these steps", field="epsilon") from None
        epsilon = _accountant_epsilon("rdp", sigma, q, steps, delta)
    assert epsilon is not None
    if not epsilon <= target_epsilon:  # get_noise_multiplier guarantees it; a failure here is a bug
        raise AssertionError("the accountant's epsilon exceeds the target")
    return DPSGDPlan(
        sample_rate=q,
        steps=steps,
        epochs=float(epochs),
        noise_multiplier=float(sigma),
        max_grad_norm=float(max_grad_norm),
        target_epsilon=float(target_epsilon),
        epsilon=epsilon,
        delta=float(delta),
        accountant=name,
        accountant_note=note,
    )


def train_mlp(
    model: MLP,
    data: UnitBatches,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    plan: DPSGDPlan | None,
    grad_sample_mode: str = DEFAULT_GRAD_SAMPLE_MODE,
    on_step: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Train `model` in place for `steps` steps; DP-SGD when `plan` is given, else plain (admins only).

    Returns the number of steps run. Raises Cancelled between steps when `should_stop()` says so.
    """
    return train_model(
        model, data, UnitBCELoss("sum"), steps=steps, lr=lr, batch_size=batch_size, plan=plan,
        grad_sample_mode=grad_sample_mode, on_step=on_step, should_stop=should_stop,
    )  # fmt: skip


def train_model(
    model: torch.nn.Module,
    data: Any,
    criterion: Any,
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
    """The loop behind `train_mlp` and the CNN's `train_cnn`: Adam on `criterion` (a loss with reduction
    "sum" over per-sample losses), DP-SGD when `plan` is given — Opacus' per-sample clipping and noise,
    Poisson sampling of the samples of `data` (a dataset with ``collate``) at the plan's rate — else
    shuffled minibatches of `batch_size`. Returns the steps run; raises Cancelled between steps.

    `ema` (a decay in (0, 1)): the model ends with the exponential moving average of its weights over the
    steps (decay ``min(ema, (1 + t) / (10 + t))`` at step t, so early iterates fade fast), not the last
    iterate. The average is a function of the released iterates alone: post-processing of the DP-SGD
    mechanism, no change to its accounting."""
    if ema is not None and not 0.0 < ema < 1.0:
        raise ValueError("ema must be a decay in (0, 1)")
    base = torch.optim.Adam(model.parameters(), lr=lr)
    params = [p for p in model.parameters() if p.requires_grad]
    averaged = [p.detach().clone() for p in params] if ema is not None else None
    if plan is not None:
        if grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise InvalidJob(f"grad_sample_mode must be one of {GRAD_SAMPLE_MODES}", field="params.grad_sample_mode")
        extra = {"max_grad_norm": plan.max_grad_norm} if grad_sample_mode == "ghost" else {}
        module: Any = prepare_module(
            model, grad_sample_mode=grad_sample_mode, batch_first=True, loss_reduction="sum", **extra
        )
        optimizer: Any = get_optimizer_class(clipping="flat", distributed=False, grad_sample_mode=grad_sample_mode)(
            base,
            noise_multiplier=plan.noise_multiplier,
            max_grad_norm=plan.max_grad_norm,
            expected_batch_size=batch_size,
            loss_reduction="sum",
        )
        if grad_sample_mode == "ghost":
            criterion = DPLossFastGradientClipping(module, optimizer, criterion, "sum")
        loader: DataLoader[Any] = DataLoader(
            data,
            batch_sampler=PoissonSampler(len(data), plan.sample_rate),
            collate_fn=data.collate,  # an empty sample collates to an empty batch: the step adds noise only
        )
    else:
        if len(data) == 0:  # nothing to learn from without noise (PATE's student on no labels): untrained
            model.eval()
            return 0
        module, optimizer = model, base
        loader = DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=data.collate)
    model.train()
    done = 0
    try:
        while done < steps:
            for x, target in loader:
                if should_stop is not None and should_stop():
                    raise Cancelled()
                optimizer.zero_grad(set_to_none=True)
                loss = criterion(module(x), target)
                loss.backward()
                optimizer.step()
                done += 1
                if averaged is not None:
                    decay = min(float(ema), (1.0 + done) / (10.0 + done))  # type: ignore[arg-type]
                    with torch.no_grad():
                        for a, p in zip(averaged, params):
                            a.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
                if on_step is not None:
                    on_step(done)
                if done >= steps:
                    break
    finally:
        if plan is not None and hasattr(module, "remove_hooks"):
            module.remove_hooks()
        for p in model.parameters():
            for attr in ("grad_sample", "summed_grad", "_forward_counter"):
                if hasattr(p, attr):
                    setattr(p, attr, None)
            p.grad = None
    if averaged is not None and done > 0:
        with torch.no_grad():
            for a, p in zip(averaged, params):
                p.copy_(a)
    model.eval()
    return done
