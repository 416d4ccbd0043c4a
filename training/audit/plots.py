"""The audit's two figures, as PNG files: the ROC on log-log axes and the membership-score violins.

`roc.png` follows Carlini et al. 2022 (log-log ROC from FPR 1e-4, where membership inference matters: an
attack confident about a few records), with the chance diagonal and, when ε is claimed, the DP ceiling
``min(1, e^ε·FPR + δ, 1 - e^{-ε}(1 - δ - FPR))``: a curve above it is an attack the claim forbids (up to
sampling error; `bounds.ceiling_check` decides with margins). `violin.png` shows each attack's membership
probability over members and over non-members (Wang & Tsai 2022 show the members' side, the recognition
rate; the non-members' side is what tells whether it is high).

Figures are built on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot (no global
figure state, no backend switch). Matplotlib is still not thread-safe inside (its mathtext parser and font
caches are shared), so one module lock serialises drawing, and tick labels are plain text, not mathtext.
Densities come from fixed histogram bins on [0, 1] (a constant score
draws a spike rather than failing as a kernel density would).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ParamSpec

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from .attacks import AttackScores
from .bounds import dp_ceiling
from .metrics import ROC, attack_auc, tpr_at_fpr

__all__ = ["FPR_FLOOR", "plot_roc", "plot_violin", "write_plots"]

#: The ROC's left and bottom edge; rates of 0 are drawn just beyond it.
FPR_FLOOR = 1e-4
_DPI = 110
_BINS = np.linspace(0.0, 1.0, 51)
_MEMBER_COLOUR = "#c0392b"
_NONMEMBER_COLOUR = "#2c7fb8"
_LOCK = threading.Lock()
_P = ParamSpec("_P")


def _serialised(draw: Callable[_P, None]) -> Callable[_P, None]:
    """Run `draw` under the module lock (see the module doc)."""

    @functools.wraps(draw)
    def locked(*args: _P.args, **kwargs: _P.kwargs) -> None:
        with _LOCK:
            draw(*args, **kwargs)

    return locked


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=_DPI)


@_serialised
def plot_roc(
    path: Path,
    rocs: Sequence[tuple[AttackScores, ROC]],
    *,
    epsilon: float | None,
    delta: float | None,
    title: str = "",
) -> None:
    """Write the log-log ROC of every attack (with its AUC and TPR at 1% FPR in the legend) to `path`."""
    fig = Figure(figsize=(5.6, 5.0))
    ax = fig.add_subplot()
    grid = np.logspace(np.log10(FPR_FLOOR), 0, 200)
    ax.plot(grid, grid, color="0.55", linestyle=":", linewidth=1, label="chance")
    if epsilon is not None:
        d = delta or 0.0
        ax.plot(
            grid,
            dp_ceiling(grid, epsilon=epsilon, delta=d),
            color="black",
            linestyle="--",
            linewidth=1.2,
            label=f"DP ceiling (ε={epsilon:g}, δ={d:g})",
        )
    floor = FPR_FLOOR / 10
    for attack, roc in rocs:
        auc = attack_auc(attack.members, attack.nonmembers)
        tpr1 = tpr_at_fpr(roc, 0.01)
        ax.plot(
            np.maximum(roc.fpr, floor),
            np.maximum(roc.tpr, floor),
            linewidth=1.5,
            label=f"{attack.name} (AUC {auc:.3f}, TPR@1% {tpr1:.3f})",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlim(FPR_FLOOR, 1)
    ax.set_ylim(FPR_FLOOR, 1)
    ax.set_xlabel("false-positive rate (non-members flagged)")
    ax.set_ylabel("true-positive rate (members flagged)")
    ax.set_title(title or "Membership inference ROC")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def _violin_stats(values: np.ndarray) -> dict[str, float | np.ndarray]:
    counts, _ = np.histogram(np.clip(values, 0.0, 1.0), bins=_BINS)
    density = np.convolve(counts.astype(np.float64), [0.25, 0.5, 0.25], mode="same")
    centres = (_BINS[:-1] + _BINS[1:]) / 2
    return {
        "coords": np.r_[0.0, centres, 1.0],
        "vals": np.r_[0.0, density / density.max(), 0.0],
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "min": float(values.min()),
        "max": float(values.max()),
    }


@_serialised
def plot_violin(path: Path, attacks: Sequence[AttackScores], *, title: str = "") -> None:
    """Write, per attack, violins of the membership probability over members and over non-members."""
    fig = Figure(figsize=(max(4.0, 2.4 * len(attacks) + 1.5), 4.4))
    ax = fig.add_subplot()
    for i, attack in enumerate(attacks):
        for offset, values, colour in (
            (-0.2, attack.members_probability, _MEMBER_COLOUR),
            (0.2, attack.nonmembers_probability, _NONMEMBER_COLOUR),
        ):
            stats = _violin_stats(np.asarray(values))
            parts = ax.violin([stats], positions=[i + offset], widths=0.36, showmedians=True)
            for body in parts["bodies"]:
                body.set_facecolor(colour)
                body.set_edgecolor(colour)
                body.set_alpha(0.55)
            for key in ("cmedians", "cmins", "cmaxes", "cbars"):
                if key in parts:
                    parts[key].set_color(colour)
    ax.set_xticks(range(len(attacks)), [a.name for a in attacks])
    ax.set_xlim(-0.6, len(attacks) - 0.4)
    ax.set_ylim(0, 1)
    ax.set_ylabel("membership score (probability)")
    ax.plot([], [], color=_MEMBER_COLOUR, linewidth=6, alpha=0.55, label="members (recognition rate)")
    ax.plot([], [], color=_NONMEMBER_COLOUR, linewidth=6, alpha=0.55, label="non-members")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8, frameon=False)
    ax.set_title(title or "Membership scores")
    fig.tight_layout()
    _save(fig, path)


def write_plots(
    plots_dir: Path,
    rocs: Sequence[tuple[AttackScores, ROC]],
    *,
    epsilon: float | None,
    delta: float | None,
    title: str = "",
) -> list[str]:
    """Write ``roc.png`` and ``violin.png`` into `plots_dir` (created if missing); their file names."""
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    plot_roc(plots_dir / "roc.png", rocs, epsilon=epsilon, delta=delta, title=title)
    plot_violin(plots_dir / "violin.png", [a for a, _ in rocs], title=title)
    return ["roc.png", "violin.png"]
