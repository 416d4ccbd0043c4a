"""Training runs beyond the binary tabular MLP: the GAF CNN on image tables (DP-SGD or non-private),
multi-class labels, and PATE (teachers on the private table, a student on a public one).

Guarantees. DP-SGD on an image table is the same Poisson-subsampled Gaussian mechanism as the tabular
MLP (`training.dpsgd`): a sample is a privacy unit, here a window of one row (max_rows_per_unit 1 is
required), clipped per sample by Opacus, with the plan the job was charged for. PATE's guarantee is the
aggregator's (`training.pate`): the teachers are trained without noise on disjoint partitions by unit,
so one unit changes one teacher's vote on each query; the plan's (ε, δ) was charged when the job
started and `label_queries` is handed a charge callback that only checks that. The student sees public
rows and the noisy labels, nothing else.

Metrics of multi-class models are one release: the counts of correct and wrong predictions per true class
over the held-out rows (at most k rows per unit, so L1 sensitivity k), noised within the metrics' ε share
(`metrics.multiclass_dp_metrics`); binary models use `metrics.dp_metrics` as the tabular MLP does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mechanisms.cost import Cost

from .errors import InvalidJob
from .features import FeatureSpec
from .jobs import JobSpec

__all__ = ["fit_cnn", "fit_logreg", "fit_mlp", "image_columns", "images", "two_columns", "multiclass_exact_metrics", "run_cnn", "run_pate"]


def image_columns(image: dict[str, Any]) -> list[str]:
    """The pixel columns of an image table, row-major (i, j, channel) — the order `images` reshapes."""
    w, prefix = int(image["window"]), str(image.get("prefix", "gaf_"))
    return [f"{prefix}{i}_{j}_{ch}" for i in range(w) for j in range(w) for ch in image["channels"]]


def images(x: np.ndarray, image: dict[str, Any]) -> np.ndarray:
    """Encoded rows ``[n, W*W*C]`` as images ``[n, W, W, C]``."""
    w = int(image["window"])
    return np.ascontiguousarray(x.reshape(len(x), w, w, len(image["channels"])))


def multiclass_exact_metrics(proba: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    n = len(y)
    pred = proba.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=proba.shape[1] if proba.ndim == 2 else 1)
    return {"held_out_rows": int(n), "accuracy": None if n == 0 else float((pred == y).mean()),
            "majority_share": None if n == 0 else float(counts.max() / n),
            "classes": int(proba.shape[1]) if proba.ndim == 2 else None}  # fmt: skip


# -- the GAF CNN ----------------------------------------------------------------------------------------


#: the EMA decay of DP-SGD's CNN weights (`training.dpsgd.train_model`: post-processing of the iterates)
CNN_EMA = 0.99


#: non-private pre-training on a public table's labelled images (`pretrain_cnn`): Adam at this step and
#: batch (the non-private CNN's recipe), for the job's ``pretrain_epochs``
PRETRAIN_LR = 1e-3
PRETRAIN_BATCH = 64


def public_labelled(frame: pd.DataFrame, spec: FeatureSpec, label: str) -> tuple[np.ndarray, np.ndarray]:
    """The public table's rows with a known label, encoded as the job's (features, class codes): what
    pre-training reads. Public data: no privacy cost."""
    if label not in frame.columns:
        raise InvalidJob(f"pre-training needs the label column {label!r} in the public table", field="public_table")
    codes, known = spec.label.codes(frame[label])
    return public_rows(frame.loc[known].reset_index(drop=True), spec), codes[known]


def pretrain_cnn(model: Any, pretrain: tuple[np.ndarray, np.ndarray], image: dict[str, Any], epochs: float,
                 table: str | None, stopped: Callable[[], bool] | None = None) -> dict[str, Any]:  # fmt: skip
    """Train `model` in place without noise on the public labelled rows (post-processing of public data:
    it changes no privacy accounting); returns what the card says of it. A cancel between steps raises
    `training.dpsgd.Cancelled`, as in training."""
    from .vision.cnn import train_cnn

    xs, ys = pretrain
    steps = max(1, math.ceil(epochs * len(xs) / PRETRAIN_BATCH)) if len(xs) else 0
    if steps:
        train_cnn(model, images(xs, image), ys, steps=steps, lr=PRETRAIN_LR, batch_size=PRETRAIN_BATCH, plan=None,
                  should_stop=stopped)  # fmt: skip
    return {"table": table, "rows": int(len(xs)), "epochs": epochs, "steps": steps, "lr": PRETRAIN_LR,
            "batch_size": PRETRAIN_BATCH, "noise": "none: public rows and labels"}  # fmt: skip


def run_cnn(
    job: JobSpec, plan: dict[str, Any], x: np.ndarray, y: np.ndarray, train: np.ndarray,
    *, on_step: Callable[[int, int], None], stopped: Callable[[], bool],
    pretrain: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """Train the CNN on the training rows (DP-SGD when the job is dpsgd); returns (model, training).

    The CNN is `training.vision.cnn.GafCNN` in its GroupNorm design (`DEFAULT_DESIGN`); DP-SGD ends with
    the EMA of its weights (`CNN_EMA`), which the plan's accounting covers as post-processing. With
    `pretrain` (the public table's labelled rows), the network first trains on those without noise
    (`pretrain_cnn`): DP-SGD then starts from public weights, which costs nothing."""
    from .dpsgd import DPSGDPlan
    from .vision.cnn import DEFAULT_DESIGN, GafCNN, train_cnn

    image, p = plan["image"], job.params
    n_classes = int(plan["n_classes"])
    imgs = images(x[train], image)  # possibly none: DP-SGD's steps are then noise only, as planned
    model = GafCNN(n_classes, window=int(image["window"]), channels=len(image["channels"]), design=DEFAULT_DESIGN)
    pretrained = None
    if pretrain is not None:
        pretrained = pretrain_cnn(model, pretrain, image, float(p["pretrain_epochs"]), job.public_table, stopped)
    if job.method == "dpsgd":
        m = plan["model"]
        dp: DPSGDPlan | None = DPSGDPlan(**{f: m[f] for f in DPSGDPlan.__dataclass_fields__})
        steps = int(m["steps"])
    else:
        dp, steps = None, max(1, math.ceil(p["epochs"] * len(imgs) / p["batch_size"]))
    ema = CNN_EMA if dp is not None else None
    # ghost clipping: ~18x faster than hooks for the CNN (one image per unit), measured at batch 256
    mode = p.get("grad_sample_mode", "auto")
    mode = "ghost" if mode == "auto" else mode
    ran = train_cnn(
        model, imgs, y[train], steps=steps, lr=p["lr"], batch_size=p["batch_size"], plan=dp,
        grad_sample_mode=mode, on_step=lambda done: on_step(done, steps), should_stop=stopped, ema=ema,
    )  # fmt: skip
    training = _cnn_training(image, n_classes, p, ran, model)
    training["grad_sample_mode"] = mode if dp is not None else None
    training["ema"] = ema
    training["pretrained"] = pretrained
    return model, training


def _cnn_training(image: dict[str, Any], n_classes: int, p: dict[str, Any], steps: int, model: Any) -> dict[str, Any]:
    return {
        "architecture": "gaf_cnn",
        "design": model.design,
        "layers": model.describe(),
        "n_classes": n_classes,
        "image": image,
        "optimizer": "adam",
        "lr": p["lr"],
        "batch_size": p["batch_size"],
        "epochs": p["epochs"],
        "steps": steps,
        "samples": "units (one window each)",
    }


def cnn_proba(model: Any, image: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    from .vision.cnn import predict_proba

    return lambda x: predict_proba(model, images(x, image))


# -- PATE -----------------------------------------------------------------------------------------------


def run_pate(
    job: JobSpec, plan: dict[str, Any], spec: FeatureSpec, x: np.ndarray, y: np.ndarray, units: np.ndarray,
    train: np.ndarray, x_public: np.ndarray, key: str, *, charged: Cost,
    on_progress: Callable[[float], None], stopped: Callable[[], bool],
    pretrain: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """Teachers on the training units' partitions, labels for public rows, the student; returns
    (student model, training record). `charged` is what the job was charged at start: the charge
    callback of `label_queries` only checks that it covers the plan. With `pretrain` (image tables: the
    public table's labelled rows), one network pre-trains on them without noise and every teacher and
    the student start from its weights."""
    from .pate import PATEPlan
    from .pate.teachers import train_pate

    p = job.params
    pate = PATEPlan(**plan["pate"])
    image = plan.get("image")
    n_classes = int(plan["n_classes"])
    holder: dict[str, Any] = {}  # the student model, for the registry
    init, pretrained = None, None
    if pretrain is not None and image is not None:
        import torch

        from .vision.cnn import DEFAULT_DESIGN, GafCNN

        torch.manual_seed(0)
        base = GafCNN(n_classes, window=int(image["window"]), channels=len(image["channels"]), design=DEFAULT_DESIGN)
        pretrained = pretrain_cnn(base, pretrain, image, float(p["pretrain_epochs"]), job.public_table, stopped)
        init = {k: v.detach().clone() for k, v in base.state_dict().items()}

    def check_charge(cost: Cost) -> None:
        if not cost.fits_within(charged):  # the job's charge covers the plan: nothing more to pay
            raise AssertionError("the PATE plan costs more than the job was charged")

    # rows stay flat (n, d) through PATE; the CNN's fits reshape them to images. The student trains on
    # whatever labels were released (one class, or none): the run never stops on what the rows hold
    result = train_pate(
        x_private=x[train], y_private=y[train], units=units[train], x_public=x_public, n_classes=n_classes,
        n_teachers=p["teachers"], plan=pate, charge=check_charge,
        fit_teacher=_teacher_fit(image, n_classes, p, init), fit_student=_student_fit(image, n_classes, p, holder, init),
        key=key.encode(), seed=0, on_progress=on_progress, should_stop=stopped,
    )  # fmt: skip
    training: dict[str, Any] = {
        "teachers": p["teachers"],
        "aggregator": pate.aggregator,
        "queries": result.queries,
        "labelled": result.labelled,
        "abstained": result.abstained,
        "student": "gaf_cnn" if image is not None else "mlp",
        "teacher_model": "gaf_cnn" if image is not None else "logistic regression (scikit-learn)",
        "lr": p["lr"],
        "batch_size": p["batch_size"],
        "epochs": p["epochs"],
        "public_table": job.public_table,
    }
    if image is not None:
        training.update(_cnn_training(image, n_classes, p, holder.get("steps", 0), holder["model"]))
        training["samples"] = "public rows labelled by the teachers"
        training["pretrained"] = pretrained
    else:
        training["hidden"] = p["hidden"]
        training["n_classes"] = n_classes
    return holder["model"], training


def fit_cnn(
    xs: np.ndarray, ys: np.ndarray, *, image: dict[str, Any], n_classes: int, epochs: float, lr: float,
    batch_size: int, seed: int, init: dict[str, Any] | None = None,
) -> tuple[Any, Callable[[np.ndarray], np.ndarray]]:  # fmt: skip
    """A CNN trained without noise on flat image rows (PATE's teachers and student, audit references):
    ``(model, predict_proba)``. `init`: start from these (public, pre-trained) weights."""
    import torch

    from .vision.cnn import DEFAULT_DESIGN, GafCNN, train_cnn

    torch.manual_seed(seed)
    net = GafCNN(n_classes, window=int(image["window"]), channels=len(image["channels"]), design=DEFAULT_DESIGN)
    if init is not None:
        net.load_state_dict(init)
    steps = max(1, math.ceil(epochs * len(xs) / batch_size))
    train_cnn(net, images(xs, image), ys, steps=steps, lr=lr, batch_size=batch_size, plan=None)
    return net, cnn_proba(net, image)


def fit_mlp(
    xs: np.ndarray, ys: np.ndarray, *, hidden: list[int], epochs: float, lr: float, batch_size: int, seed: int
) -> tuple[Any, Callable[[np.ndarray], np.ndarray]]:
    """The binary MLP trained without noise on rows (PATE's student, audit references):
    ``(model, predict_proba)`` with two columns, P(negative) and P(positive)."""
    import torch

    from .dpsgd import train_mlp
    from .nets import MLP, UnitBatches

    torch.manual_seed(seed)
    steps = max(1, math.ceil(epochs * len(xs) / batch_size))
    data = UnitBatches(xs, ys.astype(np.float32), np.arange(len(xs)), np.ones(len(xs), np.int64), per_unit=False)
    net = MLP(int(xs.shape[1]), hidden)
    train_mlp(net, data, steps=steps, lr=lr, batch_size=batch_size, plan=None)
    return net, lambda z: two_columns(net.predict_proba(z))


def fit_logreg(xs: np.ndarray, ys: np.ndarray, *, n_classes: int, seed: int, balanced: bool) -> Callable[[np.ndarray], np.ndarray]:
    """scikit-learn's logistic regression (no noise): predict_proba over all `n_classes` columns (a class
    absent from `ys` gets 0)."""
    from sklearn.linear_model import LogisticRegression

    est = LogisticRegression(max_iter=500, class_weight="balanced" if balanced else None, random_state=seed).fit(xs, ys)

    def proba(z: np.ndarray) -> np.ndarray:
        out = np.zeros((len(z), n_classes))
        out[:, est.classes_] = est.predict_proba(z)
        return out

    return proba


def two_columns(p: np.ndarray) -> np.ndarray:
    """P(positive) per row as (P(negative), P(positive)); (n, C) probabilities pass through."""
    p = np.asarray(p, dtype=np.float64)
    return np.stack([1.0 - p, p], axis=1) if p.ndim == 1 else p


def _teacher_fit(image: dict[str, Any] | None, n_classes: int, p: dict[str, Any], init: dict[str, Any] | None = None) -> Any:
    def fit(xs: np.ndarray, ys: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
        if image is not None:
            return fit_cnn(xs, ys, image=image, n_classes=n_classes, epochs=p["teacher_epochs"], lr=p["lr"],
                           batch_size=p["batch_size"], seed=seed, init=init)[1]  # fmt: skip
        present = np.unique(ys)
        if len(present) < 2:  # one class in the partition: it always votes that class
            only = int(present[0]) if len(present) else 0
            return lambda z: np.eye(n_classes)[np.full(len(z), only)]
        # class-balanced: with a rare class (3% default) an unweighted teacher of a few hundred rows
        # votes the majority class on every query, and the student would get no signal at all
        return fit_logreg(xs, ys, n_classes=n_classes, seed=seed, balanced=True)

    return fit


def _student_fit(
    image: dict[str, Any] | None, n_classes: int, p: dict[str, Any], holder: dict[str, Any], init: dict[str, Any] | None = None
) -> Any:
    def fit(xs: np.ndarray, ys: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
        steps = max(1, math.ceil(p["epochs"] * len(xs) / p["batch_size"]))
        common = {"epochs": p["epochs"], "lr": p["lr"], "batch_size": p["batch_size"], "seed": seed}
        if image is not None:
            net, proba = fit_cnn(xs, ys, image=image, n_classes=n_classes, init=init, **common)
        elif n_classes != 2:
            raise InvalidJob("PATE on a tabular table trains a binary student: give `positive`", field="positive")
        else:
            net, proba = fit_mlp(xs, ys, hidden=p["hidden"], **common)
        holder.update(model=net, steps=steps)
        return proba

    return fit


def public_rows(frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """The public table's rows encoded with the job's feature spec (public data: no privacy cost)."""
    missing = [c for c in spec.source_columns if c not in frame.columns]
    if missing:
        raise InvalidJob(f"the public table lacks the feature column {missing[0]!r}", field="public_table")
    return spec.encode(frame)
