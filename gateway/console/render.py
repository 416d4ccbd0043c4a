"""Pure helpers for the pages: gauges, "how many more like this", the bar chart's geometry. No Flask."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any


@dataclass(frozen=True)
class Gauge:
    label: str
    spent: float
    total: float

    @property
    def remaining(self) -> float:
        return max(self.total - self.spent, 0.0)

    @property
    def fraction(self) -> float:
        """Spent as a share of the total, in [0, 1] (a zero total is all spent)."""
        return 1.0 if self.total <= 0 else min(max(self.spent / self.total, 0.0), 1.0)

    @property
    def width(self) -> int:
        return round(200 * self.fraction)


def gauges(budget: dict[str, Any]) -> list[Gauge]:
    """A `GET /v1/budget` item as its ε gauges: the caller's allocation and the dataset's total; a level
    that renews shows its current window first, then its cap over all windows."""
    label = f"organisation {budget['organisation']}" if budget.get("organisation") else "your allocation"
    out = []
    for name, row in ((label, budget), ("dataset total", budget["dataset_level"])):
        window = row.get("window")
        if window is None:
            out.append(Gauge(name, row["epsilon_spent"], row["epsilon_total"]))
            continue
        span = f"{window['start'][:10]} to {window['end'][:10]} UTC"
        out.append(Gauge(f"{name}: this {window['every']} ({span})", window["epsilon_spent"], window["epsilon_per_window"]))
        out.append(Gauge(f"{name}: cap over all windows", row["epsilon_spent"], row["epsilon_total"]))
    return out


def more_like_this(cost: dict[str, float], remaining: dict[str, dict[str, float]]) -> int | None:
    """How many more queries of this cost both levels can pay for (None: it is free)."""
    counts = []
    for level in ("analyst", "dataset"):
        for part in ("epsilon", "delta"):
            price = float(cost.get(part) or 0.0)
            if price > 0:
                counts.append(math.floor(float(remaining[level][part]) / price * (1 + 1e-9)))
    return min(counts) if counts else None


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    x: float
    y: float
    width: float
    height: float
    low_y: float | None
    high_y: float | None
    cx: float


CHART_W, CHART_H, CHART_PAD = 560, 220, 30


def bar_chart(answer: dict[str, Any]) -> dict[str, Any] | None:
    """An inline SVG's geometry for a GROUP BY with one key: the key column (mechanism "none") against
    the first noisy numeric column, each bar with its interval as a whisker. None where it does not suit."""
    columns = answer.get("columns") or []
    accuracy = answer.get("accuracy") or {}
    keys = [c for c in columns if (accuracy.get(c) or {}).get("mechanism") == "none"]
    values = [c for c in columns if c not in keys]
    rows = answer.get("rows") or []
    if len(keys) != 1 or not values or not 1 <= len(rows) <= 40:
        return None
    key_i, col = columns.index(keys[0]), values[0]
    val_i = columns.index(col)
    intervals = (answer.get("intervals") or {}).get(col) or [None] * len(rows)
    points = []
    for row, iv in zip(rows, intervals, strict=False):
        v = row[val_i]
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            return None
        points.append((str(row[key_i]), float(v), iv))
    top = max([0.0] + [p[1] for p in points] + [float(iv[1]) for _, _, iv in points if iv and iv[1] is not None])
    bottom = min([0.0] + [p[1] for p in points] + [float(iv[0]) for _, _, iv in points if iv and iv[0] is not None])
    span = (top - bottom) or 1.0
    inner_h = CHART_H - 2 * CHART_PAD
    slot = (CHART_W - 2 * CHART_PAD) / len(points)

    def y(v: float) -> float:
        return CHART_PAD + (top - v) / span * inner_h

    bars = []
    for i, (label, v, iv) in enumerate(points):
        x = CHART_PAD + i * slot + slot * 0.15
        zero, at = y(0.0), y(v)
        low = None if not iv or iv[0] is None else y(float(iv[0]))
        high = None if not iv or iv[1] is None else y(float(iv[1]))
        bars.append(Bar(label, v, x, min(zero, at), slot * 0.7, abs(zero - at), low, high, x + slot * 0.35))
    return {"column": col, "key": keys[0], "bars": bars, "width": CHART_W, "height": CHART_H, "zero_y": y(0.0),
            "label_y": CHART_H - 8, "top": top, "top_y": y(top)}


def spending_chart(points: list[dict[str, Any]], total: float, *, bucket: str) -> dict[str, Any] | None:
    """An inline SVG's geometry for a dataset's cumulative ε (`Reads.spending_over_time`'s points, oldest
    first): a step line from 0 that rises at each UTC day with charges, placed by date (`bucket` "day"),
    or at each charge, one step apart ("entry"), the last at the right edge; the dataset's total as a
    horizontal line. None when nothing was spent."""
    if not points:
        return None
    if bucket == "day":
        first = date.fromisoformat(points[0]["at"])
        positions = [(date.fromisoformat(p["at"]) - first).days for p in points]
    else:
        positions = list(range(len(points)))
    slots = positions[-1] + 1  # one slot before the first step, so that it shows rising from 0
    spent = points[-1]["epsilon_cumulative"]
    top = max(total, spent) or 1.0
    inner_w, inner_h = CHART_W - 2 * CHART_PAD, CHART_H - 2 * CHART_PAD

    def y(v: float) -> float:
        return round(CHART_PAD + (top - v) / top * inner_h, 2)

    path, marks = [f"M {CHART_PAD} {y(0.0)}"], []
    for at, point in zip(positions, points, strict=True):
        x = round(CHART_PAD + (at + 1) / slots * inner_w, 2)
        path += [f"H {x}", f"V {y(point['epsilon_cumulative'])}"]
        marks.append({"x": x, "y": y(point["epsilon_cumulative"]), "at": point["at"][:19].replace("T", " "), "epsilon": point["epsilon"],
                      "cumulative": point["epsilon_cumulative"]})  # fmt: skip
    return {"width": CHART_W, "height": CHART_H, "path": " ".join(path), "points": marks, "total": total, "total_y": y(total),
            "zero_y": y(0.0), "top": top, "top_y": y(top), "left": CHART_PAD, "right": CHART_W - CHART_PAD, "bucket": bucket,
            "first": marks[0]["at"], "first_x": marks[0]["x"], "last": marks[-1]["at"], "label_y": CHART_H - 8, "spent": spent}  # fmt: skip
