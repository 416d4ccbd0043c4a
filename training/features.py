"""Feature encoding from public metadata alone.

Every transformation here is fixed by the dataset's declared metadata before any row is read, so it is
the same function on neighbouring datasets (it adds no privacy cost and leaks nothing through its
parameters): numbers and dates are scaled to [0, 1] by their declared ``[lower, upper]`` and clamped —
never by the data's min, max or mean — and a date adds its day of the week (a timestamp, declared with
times in its bounds, also its time of day) as a point on a circle, ((sin + 1)/2, (cos + 1)/2);
categories are one-hot over their public list, and a value outside the list encodes as all zeros;
booleans are 0/1; a NULL encodes as 0, and a nullable column gets one more feature, its is-null
indicator (for a nullable category, NULL is part of its public domain and the indicator is its one-hot
bit).

The encoded rows lie in [0, 1]^d with at most one 1 per one-hot group, which bounds their L1 and L2 norms
by public constants (`FeatureSpec.max_l1`, `FeatureSpec.max_norm`): the classic models' sensitivities
rest on them. No category list, bound or class set is ever read from the rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from .errors import InvalidJob

__all__ = ["FeatureColumn", "FeatureSpec", "LabelSpec", "build_spec", "norm_key"]

NUMERIC = ("int", "float")
ENCODABLE = ("int", "float", "date", "bool", "category")


def norm_key(value: Any) -> str:
    """The key under which a category value is matched: the engine casts categories to VARCHAR, so
    ``36``, ``36.0`` and ``"36"`` are one category, and booleans read ``true``/``false``."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(value)


def _timestamp_seconds(value: Any, *, what: str) -> float:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise InvalidJob(f"{what} is not a date or timestamp", field=what) from None
    if ts is pd.NaT:
        raise InvalidJob(f"{what} is not a date or timestamp", field=what)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.value / 1e9


@dataclass(frozen=True)
class FeatureColumn:
    """One source column and how it encodes. `lower`/`upper` are seconds since the epoch for dates."""

    name: str
    type: str
    lower: float | None = None
    upper: float | None = None
    categories: tuple[str, ...] = ()
    nullable: bool = False
    cycles: tuple[str, ...] = ()  # dates: "hour" (timestamps), "weekday" — each as (sin, cos) in [0, 1]

    @property
    def width(self) -> int:
        base = len(self.categories) if self.type == "category" else 1 + 2 * len(self.cycles)
        return base + (1 if self.nullable else 0)

    def output_names(self) -> list[str]:
        if self.type == "category":
            names = [f"{self.name}={c}" for c in self.categories]
        else:
            names = [self.name] + [f"{self.name}:{c}_{f}" for c in self.cycles for f in ("sin", "cos")]
        if self.nullable:
            names.append(f"{self.name}:null")
        return names

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.type == "category":
            out["categories"] = list(self.categories)
        else:
            out["lower"], out["upper"] = self.lower, self.upper
        if self.cycles:
            out["cycles"] = list(self.cycles)
        return out

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> FeatureColumn:
        return FeatureColumn(
            name=d["name"],
            type=d["type"],
            lower=d.get("lower"),
            upper=d.get("upper"),
            categories=tuple(d.get("categories") or ()),
            nullable=bool(d.get("nullable", False)),
            cycles=tuple(d.get("cycles") or ()),
        )

    # -- encoding ----------------------------------------------------------------------------------------

    def encode_into(self, values: pd.Series, out: np.ndarray, offset: int) -> None:
        """Write this column's encoding of `values` into ``out[:, offset : offset + width]``."""
        null = values.isna().to_numpy(dtype=bool)
        if self.type in NUMERIC:
            x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            out[:, offset] = self._scale(x)
        elif self.type == "date":
            if values.dtype == object or pd.api.types.is_string_dtype(values):
                # text dates (prediction rows, or a reader that hands dates over as text): ISO 8601 only,
                # so that nothing is guessed from the data; anything else reads as NULL
                stamps = pd.to_datetime(values, errors="coerce", format="ISO8601")
            else:
                stamps = pd.to_datetime(values, errors="coerce")
            if getattr(stamps.dt, "tz", None) is not None:
                stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
            missing = stamps.isna().to_numpy()
            ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
            ns[missing] = np.nan
            out[:, offset] = self._scale(ns / 1e9)
            for i, cycle in enumerate(self.cycles):
                if cycle == "hour":
                    turn = (stamps.dt.hour + stamps.dt.minute / 60.0).to_numpy(dtype=np.float64, na_value=0.0) / 24
                else:  # weekday, Monday = 0
                    turn = stamps.dt.day_of_week.to_numpy(dtype=np.float64, na_value=0.0) / 7
                angle = 2 * np.pi * turn
                out[:, offset + 1 + 2 * i] = (np.sin(angle) + 1) / 2
                out[:, offset + 2 + 2 * i] = (np.cos(angle) + 1) / 2
                out[missing, offset + 1 + 2 * i : offset + 3 + 2 * i] = 0.0
        elif self.type == "bool":
            out[:, offset] = _truthy(values)
        elif self.type == "category":
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
            index = {c: i for i, c in enumerate(self.categories)}
            where = np.array([index.get(norm_key(u), -1) for u in uniques] + [-1], dtype=np.int64)
            cat = where[codes]  # code -1 (NULL) picks the trailing -1
            rows = np.nonzero(cat >= 0)[0]
            out[rows, offset + cat[rows]] = 1.0
        else:  # pragma: no cover - build_spec admits no other type
            raise AssertionError(self.type)
        if self.type != "category":
            # a value that fails to parse counts as NULL (as a failing cast does in the SQL path)
            null = null | np.isnan(out[:, offset]) if self.type in (*NUMERIC, "date") else null
            out[null, offset] = 0.0
        if self.nullable:
            out[:, offset + self.width - 1] = null

    def _scale(self, x: np.ndarray) -> np.ndarray:
        assert self.lower is not None and self.upper is not None
        with np.errstate(invalid="ignore"):
            return np.clip((x - self.lower) / (self.upper - self.lower), 0.0, 1.0)


def _truthy(values: pd.Series) -> np.ndarray:
    def one(v: Any) -> float:
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            return 0.0
        if isinstance(v, str):
            return 1.0 if v.strip().lower() in ("true", "t", "1", "yes") else 0.0
        return 1.0 if bool(v) else 0.0

    if values.dtype == bool:
        return values.to_numpy(dtype=np.float64)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.array([one(u) for u in uniques] + [0.0])
    return table[codes]


@dataclass(frozen=True)
class LabelSpec:
    """The label column. Binary: `positive` is the value that counts as positive (`classes` empty).
    Multi-class: `classes` is the label's public category list, in order; `positive` is None."""

    name: str
    type: str
    positive: Any
    negative: Any = None
    classes: tuple[str, ...] = ()

    @property
    def multiclass(self) -> bool:
        return bool(self.classes)

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes else 2

    def positives(self, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """``(y, known)``: 1.0 where the label is the positive value; `known` is False on NULL labels."""
        if self.multiclass:
            raise ValueError("a multi-class label has no positive value: use codes()")
        known = ~values.isna().to_numpy(dtype=bool)
        if self.type == "bool":
            y = _truthy(values) == (1.0 if self.positive else 0.0)
        else:
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
            hit = np.array([norm_key(u) == norm_key(self.positive) for u in uniques] + [False])
            y = hit[codes]
        return y.astype(np.float32), known

    def codes(self, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """``(y, known)``: int64 class indices (binary: 1 = positive); `known` is False on NULL labels
        and, multi-class, on values outside the public list (a stable, per-row filter)."""
        if not self.multiclass:
            y, known = self.positives(values)
            return y.astype(np.int64), known
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        index = {c: i for i, c in enumerate(self.classes)}
        where = np.array([index.get(norm_key(u), -1) for u in uniques] + [-1], dtype=np.int64)
        y = where[codes]
        return np.where(y >= 0, y, 0), y >= 0

    def label_of(self, positive: bool) -> Any:
        return self.positive if positive else self.negative

    def class_name(self, index: int) -> Any:
        """The label value of class `index` (binary: 1 is the positive value)."""
        if self.multiclass:
            return self.classes[int(index)]
        return self.label_of(bool(index))

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "type": self.type, "positive": self.positive, "negative": self.negative}
        if self.classes:
            out["classes"] = list(self.classes)
        return out

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> LabelSpec:
        return LabelSpec(d["name"], d["type"], d["positive"], d.get("negative"), tuple(d.get("classes") or ()))


@dataclass(frozen=True)
class FeatureSpec:
    """The ordered feature columns of a model, its label, and the privacy unit it was trained under."""

    columns: tuple[FeatureColumn, ...]
    label: LabelSpec
    unit: str | None
    skipped: tuple[str, ...] = field(default=())

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    @property
    def max_l1(self) -> int:
        """A public bound on the L1 norm of an encoded row (and on the number of its non-zero entries):
        every entry is in [0, 1], a one-hot group has one 1 at most, and a NULL indicator is 1 only where
        the value's entries are 0 — so each column contributes at most its number of value entries."""
        return sum(1 if c.type == "category" else 1 + 2 * len(c.cycles) for c in self.columns)

    @property
    def max_norm(self) -> float:
        """A public bound on the L2 norm of an encoded row: sqrt(`max_l1`), as every entry is in [0, 1]
        and at most `max_l1` of them are non-zero."""
        return math.sqrt(self.max_l1)

    def output_names(self) -> list[str]:
        return [n for c in self.columns for n in c.output_names()]

    @property
    def source_columns(self) -> list[str]:
        return [c.name for c in self.columns]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """``[len(frame), width]`` float32 in [0, 1]; the frame must hold every feature column."""
        out = np.zeros((len(frame), self.width), dtype=np.float64)
        offset = 0
        for c in self.columns:
            c.encode_into(frame[c.name], out, offset)
            offset += c.width
        return out.astype(np.float32)

    def encode_rows(self, rows: Any) -> np.ndarray:
        """Encode prediction rows (dicts of feature name to value), checking each first.

        Raises InvalidJob naming the row index and the field — never the value — for a row that is not
        an object, an unknown feature name, a missing non-nullable feature, or a value of the wrong type.
        """
        if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)):
            raise InvalidJob("rows must be a list of objects", field="rows")
        if not rows:
            raise InvalidJob("rows must not be empty", field="rows")
        if len(rows) > MAX_PREDICT_ROWS:
            raise InvalidJob(f"at most {MAX_PREDICT_ROWS} rows per request", field="rows")
        known = {c.name: c for c in self.columns}
        table: dict[str, list[Any]] = {c.name: [] for c in self.columns}
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise InvalidJob(f"row {i} is not an object", field=f"rows[{i}]", row=i)
            for key in row:
                if key not in known:
                    name = key if isinstance(key, str) and len(key) <= 64 else "?"
                    raise InvalidJob(
                        f"row {i}: unknown feature {name!r}", field=f"rows[{i}].{name}", row=i
                    )
            for c in self.columns:
                table[c.name].append(_checked_value(c, row.get(c.name), i))
        frame = pd.DataFrame({name: pd.Series(vals, dtype=object) for name, vals in table.items()})
        return self.encode(frame)

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": [c.to_json() for c in self.columns],
            "label": self.label.to_json(),
            "unit": self.unit,
            "skipped": list(self.skipped),
            "encoded": self.output_names(),
        }

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> FeatureSpec:
        return FeatureSpec(
            columns=tuple(FeatureColumn.from_json(c) for c in d["columns"]),
            label=LabelSpec.from_json(d["label"]),
            unit=d.get("unit"),
            skipped=tuple(d.get("skipped") or ()),
        )


MAX_PREDICT_ROWS = 10_000


def _checked_value(c: FeatureColumn, v: Any, i: int) -> Any:
    where = f"rows[{i}].{c.name}"
    if v is None:
        if not c.nullable:
            raise InvalidJob(f"row {i}: missing required feature {c.name!r}", field=where, row=i)
        return None
    wrong = InvalidJob(f"row {i}: feature {c.name!r} must be {_TYPE_WORDS[c.type]}", field=where, row=i)
    if c.type in NUMERIC:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise wrong
        if not math.isfinite(float(v)):
            raise InvalidJob(f"row {i}: feature {c.name!r} must be finite", field=where, row=i)
        return float(v)
    if c.type == "bool":
        if not isinstance(v, bool):
            raise wrong
        return v
    if c.type == "date":
        if isinstance(v, (datetime, date)):
            return pd.Timestamp(v)
        if not isinstance(v, str):
            raise wrong
        try:
            ts = pd.Timestamp(v)
        except (TypeError, ValueError):
            raise wrong from None
        if ts is pd.NaT:
            raise wrong
        return ts
    # category: any scalar; a value outside the public list encodes as all zeros, like in training
    if not isinstance(v, (str, int, float)):
        raise wrong
    return v


_TYPE_WORDS = {
    "int": "a number",
    "float": "a number",
    "bool": "true or false",
    "date": "an ISO date or timestamp string",
    "category": "a string or number",
}


# -- building a spec from a table's public metadata -------------------------------------------------------


def build_spec(
    table_meta: Mapping[str, Any],
    *,
    unit: str | None,
    label: str,
    positive: Any,
    features: Sequence[str] | None,
) -> FeatureSpec:
    """The feature spec of a job, from the table's metadata (DESIGN.md §4 shape) only.

    `features` None means every column except ids, the privacy unit and the label; among those, a column
    that cannot be encoded from public metadata (a number or date without bounds, a category without a
    list) is skipped and listed in `skipped`. Named explicitly, such a column is refused.
    """
    columns = table_meta.get("columns") or {}
    if not isinstance(columns, Mapping):
        raise InvalidJob("the table's metadata has no columns", field="table")
    label_spec = _label_spec(columns, label, positive)
    chosen: list[FeatureColumn] = []
    skipped: list[str] = []
    if features is None:
        for name, meta in columns.items():
            if name == label or name == unit or (meta or {}).get("type") == "id":
                continue
            try:
                chosen.append(_feature_column(name, meta))
            except InvalidJob:
                skipped.append(name)
    else:
        if isinstance(features, (str, bytes)) or not isinstance(features, Sequence):
            raise InvalidJob("features must be a list of column names", field="features")
        seen: set[str] = set()
        for name in features:
            if not isinstance(name, str) or name not in columns:
                shown = name if isinstance(name, str) and len(name) <= 64 else "?"
                raise InvalidJob(f"unknown feature column {shown!r}", field="features")
            if name in seen:
                raise InvalidJob(f"feature {name!r} is listed twice", field="features")
            seen.add(name)
            if name == label:
                raise InvalidJob(f"the label {name!r} cannot be a feature", field="features")
            if name == unit or (columns[name] or {}).get("type") == "id":
                raise InvalidJob(f"{name!r} is an id column and cannot be a feature", field="features")
            chosen.append(_feature_column(name, columns[name]))
    if not chosen:
        raise InvalidJob("no encodable feature columns", field="features")
    return FeatureSpec(tuple(chosen), label_spec, unit, tuple(skipped))


def _feature_column(name: str, meta: Any) -> FeatureColumn:
    if not isinstance(meta, Mapping):
        raise InvalidJob(f"column {name!r} has no metadata", field="features")
    kind = meta.get("type")
    nullable = bool(meta.get("nullable", False))
    if kind in NUMERIC or kind == "date":
        lo, hi = meta.get("lower"), meta.get("upper")
        if lo is None or hi is None:
            what = "date" if kind == "date" else "numeric"
            raise InvalidJob(
                f"{what} column {name!r} has no declared [lower, upper] bounds: it cannot be a feature "
                "(scaling by the data's own range would leak it)",
                field="features",
            )
        if kind == "date":
            lower = _timestamp_seconds(lo, what=f"{name}.lower")
            upper = _timestamp_seconds(hi, what=f"{name}.upper")
        else:
            try:
                lower, upper = float(lo), float(hi)
            except (TypeError, ValueError):
                raise InvalidJob(f"column {name!r} has non-numeric bounds", field="features") from None
        if not (math.isfinite(lower) and math.isfinite(upper) and lower < upper):
            raise InvalidJob(f"column {name!r} needs finite bounds with lower < upper", field="features")
        cycles: tuple[str, ...] = ()
        if kind == "date":
            # the time of day and the day of the week, on circles: fixed maps of the value, no data involved
            timestamp = any(isinstance(b, str) and ":" in b for b in (lo, hi))
            cycles = ("hour", "weekday") if timestamp else ("weekday",)
        return FeatureColumn(name, kind, lower, upper, (), nullable, cycles)
    if kind == "bool":
        return FeatureColumn(name, kind, None, None, (), nullable)
    if kind == "category":
        cats = meta.get("categories")
        if not cats:
            raise InvalidJob(
                f"category column {name!r} has no public category list: it cannot be one-hot encoded",
                field="features",
            )
        keys = tuple(dict.fromkeys(norm_key(c) for c in cats))
        return FeatureColumn(name, kind, None, None, keys, nullable)
    raise InvalidJob(f"column {name!r} of type {kind!r} cannot be a feature", field="features")


def _label_spec(columns: Mapping[str, Any], label: Any, positive: Any) -> LabelSpec:
    if not isinstance(label, str) or label not in columns:
        shown = label if isinstance(label, str) and len(label) <= 64 else "?"
        raise InvalidJob(f"unknown label column {shown!r}", field="label")
    meta = columns[label] or {}
    kind = meta.get("type")
    if kind == "bool":
        if positive is None:
            positive = True
        if not isinstance(positive, bool):
            raise InvalidJob("positive must be true or false for a boolean label", field="positive")
        return LabelSpec(label, kind, positive, not positive)
    if kind in ("category", "int"):
        if positive is None:
            cats = meta.get("categories") or []
            if kind == "category" and len(cats) >= 2:  # multi-class over the public list
                return LabelSpec(label, kind, None, None, tuple(dict.fromkeys(norm_key(c) for c in cats)))
            raise InvalidJob(f"label {label!r} needs `positive`, the value that counts as positive", field="positive")
        if isinstance(positive, (dict, list)):
            raise InvalidJob("positive must be a string, number or boolean", field="positive")
        cats = [c for c in (meta.get("categories") or [])]
        negative = None
        if cats:
            keys = [norm_key(c) for c in cats]
            if norm_key(positive) not in keys:
                raise InvalidJob("positive is not in the label's public category list", field="positive")
            others = [c for c in cats if norm_key(c) != norm_key(positive)]
            negative = others[0] if len(others) == 1 else None
        if negative is None:
            negative = f"not {positive}"
        return LabelSpec(label, kind, positive, negative)
    raise InvalidJob(f"label {label!r} must be a bool, category or int column", field="label")
