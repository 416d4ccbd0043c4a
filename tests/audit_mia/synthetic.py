"""Synthetic audit fixtures: Gaussian classes with label noise and a Parzen-window classifier.

The classifier keeps its training rows and predicts p(c | x) ∝ prior + Σ_i K(x, x_i)·[y_i = c] with a
Gaussian kernel of bandwidth h: each training row adds its own kernel weight 1 at itself, so it memorises
(a smooth 1-nearest-neighbour). In 8 dimensions with h = 1 it still generalises (binary test accuracy
≈ 0.84), so members and non-members overlap: a realistic, not a trivial, attack target.
"""

from __future__ import annotations

import numpy as np

from training.audit import AuditData

DIM = 8
BANDWIDTH = 1.0


def draw(n: int, n_classes: int, rng: np.random.Generator, *, flip: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """`n` rows around fixed class centres, a fraction `flip` of labels redrawn uniformly."""
    centres = np.random.default_rng(123).normal(size=(n_classes, DIM)) * 1.5
    y = rng.integers(n_classes, size=n)
    x = centres[y] + rng.normal(size=(n, DIM))
    y = np.where(rng.random(n) < flip, rng.integers(n_classes, size=n), y)
    return x, y


def audit_data(
    n_classes: int, *, seed: int = 0, n: int = 250, n_population: int = 1000, image: bool = False
) -> AuditData:
    """Members, non-members and population from one distribution; `image` shapes rows (n, 2, 2, 2)."""
    rng = np.random.default_rng(seed)
    parts = [draw(k, n_classes, rng) for k in (n, n, n_population)]
    if image:
        parts = [(x.reshape(len(x), 2, 2, 2), y) for x, y in parts]
    (xm, ym), (xn, yn), (xp, yp) = parts
    return AuditData(xm, ym, xn, yn, xp, yp)


def parzen(x: np.ndarray, y: np.ndarray, seed: int = 0, *, n_classes: int, h: float = BANDWIDTH, prior: float = 0.05):
    """Train (keep) the Parzen-window classifier; its ``predict_proba``. `seed` is unused (deterministic)."""
    train_x = x.reshape(len(x), -1).astype(np.float64)
    onehot = np.eye(n_classes)[y]

    def predict_proba(z: np.ndarray) -> np.ndarray:
        q = z.reshape(len(z), -1)
        d2 = (q**2).sum(1)[:, None] + (train_x**2).sum(1)[None, :] - 2 * q @ train_x.T
        w = np.exp(-np.maximum(d2, 0.0) / (2 * h * h)) @ onehot + prior
        return w / w.sum(1, keepdims=True)

    return predict_proba


def trainer(n_classes: int):
    """The reference recipe: the same Parzen classifier, as a `TrainFn`."""
    return lambda x, y, seed: parzen(x, y, seed, n_classes=n_classes)


def constant(n_classes: int):
    """A model that ignores its data: the same probabilities for every row."""
    p = np.arange(1, n_classes + 1, dtype=np.float64)
    p /= p.sum()
    return lambda z: np.tile(p, (len(z), 1))
