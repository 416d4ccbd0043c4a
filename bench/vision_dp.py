"""DP-SGD recipes for the candlestick CNN (issue #16): test accuracy of candidate architectures and
training recipes, non-private and at ε 5.4 and 12.6 (δ 1e-5), on the windows the demo uses.

Data: `training.vision.candlesticks.build_candlesticks` (window 10, seed 7, every labelled window), split
by period at `gateway.demo_data.CANDLESTICKS_CUT` as `load_candlesticks` does: the private windows
(1985-2015, 1,384) are the demo's ``windows`` table, the public ones (1962-84, 883) its
``windows_public``. The labels of the public windows are a function of those public windows alone (the
rules of `training.vision.patterns`), so they are public too; this bench uses them for two things only:
choosing recipes (each recipe is also run on a train/test split of the *public* windows, and the table
says which recipe the public runs pick) and, for recipes marked ``pretrain``, a non-private pre-training
of the network on all public windows before DP-SGD on the private ones. Nothing is tuned on the private
test accuracy: it is reported.

Private split: 80% train / 20% test by a seeded permutation of the windows (the product splits by a
keyed hash, at the same 20%). Accounting as a job does it: the model's ε is the job's ε less the metrics
share (10%) and the size share (1%) (`training.jobs` defaults), the plan comes from
`training.dpsgd.plan_dpsgd` (PRV accountant, RDP fallback) for the real training-set size, sampling
rate and steps; training is `training.vision.cnn.train_cnn` (Opacus, Poisson sampling, per-sample
clipping, ghost clipping). EMA of the weights and augmentation are post-processing / per-sample maps
inside the clipped gradient, so they do not change the accounting.

Run: ``nice -n 10 .venv/bin/python bench/vision_dp.py [--recipes NAME ...] [--epsilons 5.4 12.6]
[--seeds 0 1] [--public]`` (one thread; a recipe at one ε takes seconds to a minute on one core).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.dpsgd import plan_dpsgd  # noqa: E402
from training.vision.cnn import build_cnn, predict_proba, train_cnn  # noqa: E402

#: the job's shares of ε that do not go to the model (training.jobs: metrics_share, size_share)
MODEL_SHARE = 1.0 - 0.1 - 0.01
DELTA = 1e-5


@dataclass(frozen=True)
class Recipe:
    arch: str = "gaf_cnn"
    epochs: float = 60.0
    batch_size: int = 256
    lr: float = 0.005
    max_grad_norm: float = 1.0
    ema: float | None = None  # EMA decay of the weights (None: the last iterate)
    pretrain: bool = False  # non-private pre-training on the public windows first
    pretrain_epochs: float = 30.0
    np_epochs: float = 20.0  # the non-private reference's epochs (batch 64, lr 1e-3 unless set)
    np_batch: int = 64
    np_lr: float = 0.001
    tanh: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    # the product's CNN with docs/study.md's DP-SGD parameters (bench/study.py)
    "baseline": Recipe(),
    # the product's CNN at the task defaults (training.jobs: epochs 20, batch 1024, lr 0.1)
    "baseline_defaults": Recipe(epochs=20, batch_size=1024, lr=0.1),
}

_FIELDS = {"b": ("batch_size", int), "e": ("epochs", float), "lr": ("lr", float), "c": ("max_grad_norm", float),
           "ema": ("ema", float), "pre": ("pretrain_epochs", float), "w": ("width", int),
           "tanh": ("tanh", str)}  # fmt: skip


def recipe(name: str) -> Recipe:
    """A named recipe, or one spelt ``ARCH/b256/e60/lr0.005/c1/ema0.99/pre30/w32`` (any of the
    fields, the rest as `Recipe`'s defaults; ``pre`` turns public pre-training on)."""
    if name in RECIPES:
        return RECIPES[name]
    arch, *parts = name.split("/")
    kw: dict[str, Any] = {"arch": arch}
    extra: dict[str, Any] = {}
    for part in parts:
        key = part.rstrip("0123456789.e-") or part
        for k in sorted(_FIELDS, key=len, reverse=True):
            if part.startswith(k):
                key = k
                break
        field_name, cast = _FIELDS[key]
        value = cast(part[len(key):])
        if field_name == "tanh":  # a bench-only variant: tanh instead of ReLU in the convolutions
            kw["tanh"] = True
        elif field_name == "width":
            extra["width"] = value
        else:
            kw[field_name] = value
        if key == "pre":
            kw["pretrain"] = True
    return Recipe(**kw, extra=extra)


class PoolCNN(torch.nn.Module):
    """A bench-only candidate (``gn_pool``): two coordinate channels (row, column in [-1, 1]), three 3x3
    convolutions (16, 32, 32) with GroupNorm and ReLU, global average pooling, a linear layer."""

    def __init__(self, n_classes: int, window: int = 10, channels: int = 4) -> None:
        super().__init__()
        nn = torch.nn
        self.n_classes = n_classes
        c = torch.linspace(-1.0, 1.0, window)
        grid = torch.stack([c[:, None].expand(window, window), c[None, :].expand(window, window)])
        self.register_buffer("grid", grid[None], persistent=False)
        layers: list[torch.nn.Module] = []
        for a, b in ((channels + 2, 16), (16, 32), (32, 32)):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.GroupNorm(4, b), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(32, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.permute(0, 3, 1, 2).contiguous()
        h = torch.cat([h, self.grid.expand(len(h), -1, -1, -1)], dim=1)
        return self.fc(self.features(h).mean(dim=(2, 3)))


def make_model(arch: str, n_classes: int, **kw: Any) -> torch.nn.Module:
    return PoolCNN(n_classes) if arch == "gn_pool" else build_cnn(arch, n_classes, **kw)


def load() -> dict[str, np.ndarray]:
    import pandas as pd

    from gateway.demo_data import CANDLESTICKS_CUT
    from training.vision.candlesticks import build_candlesticks

    images, labels, names, meta = build_candlesticks(10, seed=7)
    cut = pd.Timestamp(CANDLESTICKS_CUT)
    private = (meta["start_date"] >= cut).to_numpy()
    public = (meta["end_date"] < cut).to_numpy()
    return {"x": images[private], "y": labels[private], "xp": images[public], "yp": labels[public],
            "classes": np.array(names)}  # fmt: skip


def split(n: int, seed: int, fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(1000 + seed).permutation(n)
    k = int(round(fraction * n))
    return np.sort(perm[k:]), np.sort(perm[:k])


def run_one(
    recipe: Recipe, x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, *, epsilon: float | None,
    seed: int, n_classes: int, pre: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, Any]:  # fmt: skip
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = make_model(recipe.arch, n_classes, **recipe.extra)
    if recipe.tanh:
        for name, child in list(getattr(model, "features", torch.nn.Sequential()).named_children()):
            if isinstance(child, torch.nn.ReLU):
                model.features[int(name)] = torch.nn.Tanh()
    t0 = time.perf_counter()
    if pre is not None:
        xp, yp = pre
        steps = max(1, int(np.ceil(recipe.pretrain_epochs * len(xp) / recipe.np_batch)))
        train_cnn(model, xp, yp, steps=steps, lr=recipe.np_lr, batch_size=recipe.np_batch, plan=None)
    info: dict[str, Any] = {}
    if pre is not None:  # what the public pre-training alone scores on the private test windows
        info["public_only_accuracy"] = float((predict_proba(model, xt).argmax(axis=1) == yt).mean())
    if epsilon is None:
        steps = max(1, int(np.ceil(recipe.np_epochs * len(x) / recipe.np_batch)))
        train_cnn(model, x, y, steps=steps, lr=recipe.np_lr, batch_size=recipe.np_batch, plan=None, ema=recipe.ema)
    else:
        plan = plan_dpsgd(target_epsilon=epsilon * MODEL_SHARE, delta=DELTA, units_estimate=len(x),
                          batch_size=recipe.batch_size, epochs=recipe.epochs, max_grad_norm=recipe.max_grad_norm)  # fmt: skip
        train_cnn(model, x, y, steps=plan.steps, lr=recipe.lr, batch_size=recipe.batch_size, plan=plan,
                  grad_sample_mode="ghost", ema=recipe.ema)  # fmt: skip
        info.update({"sigma": round(plan.noise_multiplier, 3), "steps": plan.steps, "q": round(plan.sample_rate, 4),
                     "model_epsilon": round(plan.epsilon, 3), "accountant": plan.accountant})  # fmt: skip
    acc = float((predict_proba(model, xt).argmax(axis=1) == yt).mean())
    return {"accuracy": acc, "seconds": round(time.perf_counter() - t0, 1), **info}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", nargs="+", default=["baseline"])
    ap.add_argument("--epsilons", nargs="+", type=float, default=[5.4, 12.6])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--public", action="store_true", help="also run each recipe on the public windows' split")
    ap.add_argument("--nonprivate", action="store_true", help="also the non-private reference of each recipe")
    ap.add_argument("--out", default=None, help="append one JSON line per run to this file")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(RECIPES))
        return 0
    torch.set_num_threads(1)
    d = load()
    n_classes = len(d["classes"])
    rows = []
    for name in args.recipes:
        rec = recipe(name)
        sets = [("private", d["x"], d["y"])] + ([("public", d["xp"], d["yp"])] if args.public else [])
        for where, xa, ya in sets:
            for seed in args.seeds:
                tr, te = split(len(ya), seed)
                pre = (d["xp"], d["yp"]) if rec.pretrain and where == "private" else None
                for eps in ([None] if args.nonprivate else []) + list(args.epsilons):
                    r = run_one(rec, xa[tr], ya[tr], xa[te], ya[te], epsilon=eps, seed=seed,
                                n_classes=n_classes, pre=pre)  # fmt: skip
                    row = {"recipe": name, "data": where, "seed": seed, "epsilon": eps, **r}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if args.out:
                        with open(args.out, "a") as f:
                            f.write(json.dumps(row) + "\n")
    # summary: mean accuracy per (recipe, data, epsilon)
    print("\n| recipe | data | ε | accuracy (mean over seeds) | runs |\n|---|---|---:|---:|---:|")
    keys = sorted({(r["recipe"], r["data"], r["epsilon"] or 0.0) for r in rows}, key=lambda k: (k[0], k[1], k[2]))
    for rec, where, eps in keys:
        accs = [r["accuracy"] for r in rows if (r["recipe"], r["data"], r["epsilon"] or 0.0) == (rec, where, eps)]
        print(f"| {rec} | {where} | {eps or '–'} | {np.mean(accs):.3f} | {len(accs)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
