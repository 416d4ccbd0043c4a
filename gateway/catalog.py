"""Dataset metadata: what an administrator declares about a private table, validated at registration.

The shape is DESIGN.md §4's: `{name, privacy_unit, budget:{epsilon, delta}, tables:{T:{source,
max_rows_per_unit, public?, image?, columns:{C:{type, lower?, upper?, categories?, nullable?}}}}}`.
`image` (`ImageMeta`) marks a table whose rows are images stored one pixel and channel per column.
`share_repeats` (`"organisation"`, the default, or `"all"`) says who gets a released answer again for
free: the asker's organisation only, or every analyst of the dataset (`DatasetMeta`).
Everything here is public: sensitivities and group domains derive from it alone, never from the data.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.errors import InvalidMetadata, UnknownDataset

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
MAX_CATEGORIES = 10_000


class ColumnType(str, Enum):
    ID = "id"
    INT = "int"
    FLOAT = "float"
    CATEGORY = "category"
    DATE = "date"
    BOOL = "bool"


def _check_identifier(name: str, what: str) -> str:
    if not IDENTIFIER.match(name):
        raise ValueError(f"{what} {name!r} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 characters)")
    return name


def parse_date(value: str | dt.date) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    return dt.datetime.fromisoformat(value)


class ColumnMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ColumnType
    lower: float | int | str | None = None
    upper: float | int | str | None = None
    categories: tuple[str | int | bool, ...] | None = None
    nullable: bool = False

    @field_validator("lower", "upper", mode="before")
    @classmethod
    def _no_bool_bounds(cls, v: object) -> object:
        if isinstance(v, bool):
            raise ValueError("a bound must be a number or an ISO date, not true/false")
        return v

    @model_validator(mode="after")
    def _check(self) -> ColumnMeta:
        t = self.type
        if t in (ColumnType.INT, ColumnType.FLOAT):
            for side in ("lower", "upper"):
                v = getattr(self, side)
                if v is None:
                    continue
                if isinstance(v, str) or isinstance(v, bool) or not math.isfinite(float(v)):
                    raise ValueError(f"{side} of a numeric column must be a finite number")
                if t == ColumnType.INT and float(v) != int(v):
                    raise ValueError(f"{side} of an int column must be an integer")
            if (self.lower is None) != (self.upper is None):
                raise ValueError("declare both lower and upper, or neither")
            if self.lower is not None and not float(self.lower) < float(self.upper):  # type: ignore[arg-type]
                raise ValueError("lower must be below upper")
            if self.categories is not None:
                raise ValueError("categories are only for category columns")
        elif t == ColumnType.DATE:
            if (self.lower is None) != (self.upper is None):
                raise ValueError("declare both lower and upper, or neither")
            if self.lower is not None:
                try:
                    lo, hi = parse_date(str(self.lower)), parse_date(str(self.upper))
                    ordered = lo < hi
                except ValueError as e:
                    raise ValueError(f"date bounds must be ISO dates: {e}") from None
                except TypeError:
                    raise ValueError("date bounds must both have a time-zone offset, or neither") from None
                if not ordered:
                    raise ValueError("lower must be before upper")
            if self.categories is not None:
                raise ValueError("categories are only for category columns")
        elif t == ColumnType.CATEGORY:
            if self.lower is not None or self.upper is not None:
                raise ValueError("a category column has no bounds")
            if self.categories is not None:
                if len(self.categories) == 0:
                    raise ValueError("categories, when given, must not be empty")
                if len(self.categories) > MAX_CATEGORIES:
                    raise ValueError(f"at most {MAX_CATEGORIES} categories")
                if len(set(map(str, self.categories))) != len(self.categories):
                    raise ValueError("categories must be distinct")
        else:
            if self.lower is not None or self.upper is not None or self.categories is not None:
                raise ValueError(f"a {t.value} column takes no bounds or categories")
        return self

    @property
    def bounds(self) -> tuple[float, float] | None:
        if self.type in (ColumnType.INT, ColumnType.FLOAT) and self.lower is not None:
            return float(self.lower), float(self.upper)  # type: ignore[arg-type]
        return None

    @property
    def date_bounds(self) -> tuple[dt.datetime, dt.datetime] | None:
        if self.type == ColumnType.DATE and self.lower is not None:
            return parse_date(str(self.lower)), parse_date(str(self.upper))
        return None

    @property
    def public_categories(self) -> tuple[str, ...] | None:
        if self.categories is None:
            return None
        return tuple(str(c) for c in self.categories)


class ImageMeta(BaseModel):
    """A table whose rows are images: pixel (i, j) of channel c is the float column
    ``{prefix}{i}_{j}_{c}`` (0 <= i, j < window), bounded by [-1, 1] (a GAF image's range). Training
    reads such a table as images ``[n, window, window, len(channels)]``, channels in this order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(ge=1, le=64, strict=True)
    channels: tuple[str, ...]
    prefix: str = "gaf_"

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("an image has at least one channel")
        if len({c.lower() for c in v}) != len(v):
            raise ValueError("channel names must be distinct, ignoring case")
        return v

    def column_names(self) -> list[str]:
        """The pixel columns in row-major (i, j, channel) order: reshaped, they give the images back."""
        w = self.window
        return [f"{self.prefix}{i}_{j}_{c}" for i in range(w) for j in range(w) for c in self.channels]


EngineName = Literal["duckdb", "postgres", "spark"]


class SyntheticMeta(BaseModel):
    """Where a synthetic table came from (`TableMeta.synthetic`): the private table it copies, the job
    that made it and what that job was charged. Public, shown with the schema."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str = Field(pattern=r"^[0-9a-f]{1,32}$")
    source_table: str
    method: str = "mst"
    epsilon: str
    delta: str
    rows: int = Field(ge=0)
    analyst: str | None = None
    created_at: str | None = None


class TableMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    engine: EngineName | None = None  # where this table lives, if not where its dataset does
    max_rows_per_unit: int = Field(ge=1, le=100_000, strict=True)
    public: bool = False
    bounding: Literal["registration", "per_query"] = "registration"
    image: ImageMeta | None = None
    # a private synthetic copy of another table (`gateway.synthetic_tables`): public by construction
    synthetic: SyntheticMeta | None = None
    columns: dict[str, ColumnMeta]

    @model_validator(mode="after")
    def _image_columns(self) -> TableMeta:
        if self.synthetic is not None and not self.public:
            raise ValueError("a synthetic table is public")
        if self.image is None:
            return self
        lowered = {name.lower(): meta for name, meta in self.columns.items()}
        missing, wrong = [], []
        for name in self.image.column_names():
            meta = lowered.get(name.lower())
            if meta is None:
                missing.append(name)
            elif meta.type != ColumnType.FLOAT or meta.bounds != (-1.0, 1.0) or meta.nullable:
                wrong.append(name)
        if missing:
            raise ValueError(f"image: {len(missing)} pixel column(s) are not declared, e.g. {missing[0]}")
        if wrong:
            raise ValueError(
                f"image: {len(wrong)} pixel column(s) are not non-nullable floats with bounds [-1, 1], e.g. {wrong[0]}"
            )
        return self

    @field_validator("columns")
    @classmethod
    def _names(cls, v: dict[str, ColumnMeta]) -> dict[str, ColumnMeta]:
        if not v:
            raise ValueError("a table declares at least one column")
        lowered = [name.lower() for name in v]
        if len(set(lowered)) != len(lowered):
            raise ValueError("column names must be distinct, ignoring case")
        for name in v:
            _check_identifier(name, "column")
        return v

    def column(self, name: str) -> ColumnMeta | None:
        for key, meta in self.columns.items():
            if key.lower() == name.lower():
                return meta
        return None

    def column_name(self, name: str) -> str | None:
        for key in self.columns:
            if key.lower() == name.lower():
                return key
        return None


class RenewMeta(BaseModel):
    """A dataset budget that renews every UTC calendar day, week or month; its total is then the cap."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every: Literal["day", "week", "month"]
    epsilon: float = Field(gt=0, allow_inf_nan=False)
    delta: float = Field(default=0.0, ge=0, lt=1, allow_inf_nan=False)


class BudgetMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float = Field(gt=0, allow_inf_nan=False)
    delta: float = Field(default=0.0, ge=0, lt=1, allow_inf_nan=False)
    renew: RenewMeta | None = None

    def renewal(self) -> Any:
        """The ledger's `Renewal` for this budget, or None."""
        from budget.windows import Renewal

        return None if self.renew is None else Renewal.of(self.renew.every, repr(self.renew.epsilon), repr(self.renew.delta))


class DatasetMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    privacy_unit: str | None
    budget: BudgetMeta
    tables: dict[str, TableMeta]
    engine: EngineName | None = None  # where the tables live: duckdb (embedded, the default), postgres, spark
    # Who gets a released answer again for free (the free-repeat store): "organisation" (the default)
    # shares a repeat only with analysts of the asker's organisation (an analyst without one is its own),
    # so that a `cached: true` never tells one organisation what another asked; "all" shares it with
    # every analyst of the dataset. Either way a repeat re-releases a released value (no privacy cost).
    share_repeats: Literal["organisation", "all"] = "organisation"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_identifier(v, "dataset name")

    @model_validator(mode="after")
    def _check(self) -> DatasetMeta:
        if not self.tables:
            raise ValueError("a dataset has at least one table")
        lowered = [t.lower() for t in self.tables]
        if len(set(lowered)) != len(lowered):
            raise ValueError("table names must be distinct, ignoring case")
        for tname, table in self.tables.items():
            _check_identifier(tname, "table")
            if table.public:
                continue
            if self.privacy_unit is None:
                if table.max_rows_per_unit != 1:
                    raise ValueError(
                        f"table {tname}: a dataset without a privacy unit is row-level; max_rows_per_unit must be 1"
                    )
                continue
            unit = table.column(self.privacy_unit)
            if unit is None:
                raise ValueError(f"table {tname} lacks the privacy-unit column {self.privacy_unit}")
            if unit.type != ColumnType.ID:
                raise ValueError(f"table {tname}: the privacy-unit column {self.privacy_unit} must have type id")
            if unit.nullable:
                raise ValueError(f"table {tname}: the privacy-unit column cannot be nullable")
        return self

    @property
    def row_level(self) -> bool:
        return self.privacy_unit is None

    def table(self, name: str) -> tuple[str, TableMeta] | None:
        for key, meta in self.tables.items():
            if key.lower() == name.lower():
                return key, meta
        return None

    def engine_of(self, table: str, default: str = "duckdb") -> str:
        """The engine a table lives in: its own, else its dataset's, else `default` (the settings')."""
        found = self.table(table)
        own = found[1].engine if found else None
        return own or self.engine or default

    def fingerprint(self) -> str:
        """A digest of the metadata: part of a dataset version. `share_repeats` is not: it says who may
        reuse an answer, not what the data or its bounds are (its two settings key their repeats apart).
        Nor are the synthetic tables: adding one (a public table, answered exactly) leaves the private
        tables' versions, and so their free repeats, as they were."""
        blob = json.dumps(self.without_synthetic().model_dump(mode="json", exclude={"share_repeats"}), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def synthetic_tables(self) -> list[str]:
        return [name for name, t in self.tables.items() if t.synthetic is not None]

    def without_synthetic(self) -> DatasetMeta:
        """The definition as registered: its synthetic tables (kept apart, under the data directory) left out."""
        if not self.synthetic_tables():
            return self
        return self.model_copy(update={"tables": {n: t for n, t in self.tables.items() if t.synthetic is None}})

    def with_tables(self, extra: dict[str, TableMeta]) -> DatasetMeta:
        """This definition with `extra` tables added (the synthetic ones); a name it already has is kept as it is."""
        have = {n.lower() for n in self.tables}
        added = {n: t for n, t in extra.items() if n.lower() not in have}
        if not added:
            return self
        return self.model_copy(update={"tables": {**self.tables, **added}})


def parse_dataset(raw: dict[str, Any]) -> DatasetMeta:
    """Validate a dataset declaration; raises InvalidMetadata naming every problem found."""
    try:
        return DatasetMeta.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'dataset'}: {err['msg']}" for err in e.errors()
        )
        raise InvalidMetadata(f"invalid dataset metadata: {problems}") from None


class Catalog:
    """The registered datasets, by name (case-insensitive)."""

    def __init__(self) -> None:
        self._datasets: dict[str, DatasetMeta] = {}

    def add(self, meta: DatasetMeta) -> None:
        self._datasets[meta.name.lower()] = meta

    def get(self, name: str) -> DatasetMeta:
        try:
            return self._datasets[name.lower()]
        except KeyError:
            raise UnknownDataset(name, f"unknown dataset {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._datasets

    def names(self) -> list[str]:
        return sorted(m.name for m in self._datasets.values())

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._datasets.values()))
