"""Synthetic jobs: a private synthetic copy of a table (`training.synthetic`, MST), charged before it runs.

A body: ``{dataset, table, columns?, epsilon, delta?, rows?}``. Everything that decides what a job costs,
which columns it synthesises, the name of the table it makes and whether it runs is public: the body,
the table's declared metadata and the job id. The cost is exactly the (ε, δ) asked (`plan_cost`: ρ-zCDP
converted by OpenDP's CKS20 map, checked to be ≤ ε), charged to the ledger (kind ``synthetic``, detail
``{job_id, method: "mst"}``) before the job is recorded and queued, by the training jobs' own machinery
(`TrainingService`: the thread pool in-process, or `dpgate worker`s on the job queue).

The job's result is a **public** table of the same dataset, named ``<table>_synth_<12 hex of the job
id>`` (`output_table`), written and registered by the gateway's `publish` callback
(`gateway.synthetic_tables`): every analyst of the dataset may query it at cost 0, and its owner may
download its rows as CSV or Parquet. The privacy-unit column and id columns are never synthesised.
Columns: ``columns`` as given (each must have a public domain: declared categories or bounds), or by
default every declared column that has one (the others are listed in the plan as ``skipped``).
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from mechanisms.cost import Cost, to_fraction

from .errors import InvalidJob

__all__ = ["DEFAULT_DELTA", "MAX_ROWS", "METHOD", "SyntheticSpec", "output_table", "parse_synthetic", "plan_synthetic"]

METHOD = "synthetic"  # the job store's `method` of a synthetic job (its algorithm is in the plan: "mst")
DEFAULT_DELTA = Fraction(1, 10**6)
MAX_ROWS = 1_000_000
MAX_COLUMNS = 64
MAX_EPSILON = Fraction(100)
_KEYS = {"dataset", "table", "columns", "epsilon", "delta", "rows"}


class SyntheticSpec:
    """A validated synthetic job body."""

    __slots__ = ("columns", "dataset", "delta", "epsilon", "rows", "table")

    def __init__(self, dataset: str, table: str, columns: tuple[str, ...] | None, epsilon: Fraction, delta: Fraction,
                 rows: int | None) -> None:  # fmt: skip
        self.dataset, self.table, self.columns = dataset, table, columns
        self.epsilon, self.delta, self.rows = epsilon, delta, rows

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "table": self.table, "columns": None if self.columns is None else list(self.columns),
                "epsilon": str(self.epsilon), "delta": str(self.delta), "rows": self.rows}  # fmt: skip

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> SyntheticSpec:
        cols = d.get("columns")
        return SyntheticSpec(d["dataset"], d["table"], None if cols is None else tuple(cols), Fraction(d["epsilon"]),
                             Fraction(d["delta"]), d.get("rows"))  # fmt: skip


def parse_synthetic(body: Any) -> SyntheticSpec:
    """Validate a body; raises InvalidJob naming the field. Reads no data."""
    if not isinstance(body, Mapping):
        raise InvalidJob("the job must be a JSON object", field="body")
    unknown = sorted(str(k)[:64] for k in body if k not in _KEYS)
    if unknown:
        raise InvalidJob(f"unknown members: {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})", field=unknown[0])
    for name in ("dataset", "table"):
        given = body.get(name)
        if not isinstance(given, str) or not given or len(given) > 200:
            raise InvalidJob(f"{name} is required (a name)", field=name)
    columns = body.get("columns")
    if columns is not None:
        if (not isinstance(columns, list) or not columns or len(columns) > MAX_COLUMNS
                or not all(isinstance(c, str) and 0 < len(c) <= 200 for c in columns)):  # fmt: skip
            raise InvalidJob(f"columns must be a non-empty list of at most {MAX_COLUMNS} column names", field="columns")
        if len({c.lower() for c in columns}) != len(columns):
            raise InvalidJob("columns must be distinct", field="columns")
    epsilon = _amount(body.get("epsilon"), "epsilon")
    if not 0 < epsilon <= MAX_EPSILON:
        raise InvalidJob(f"epsilon must be in (0, {MAX_EPSILON}]", field="epsilon")
    delta = DEFAULT_DELTA if body.get("delta") is None else _amount(body.get("delta"), "delta")
    if not 0 < delta < Fraction(1, 1000):
        raise InvalidJob("delta must be in (0, 0.001): the synthesiser's Gaussian measurements need δ > 0", field="delta")
    rows = body.get("rows")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= MAX_ROWS):
        raise InvalidJob(f"rows must be an integer in [1, {MAX_ROWS}] (leave it out for a noisy count of the table)", field="rows")
    return SyntheticSpec(body["dataset"], body["table"], None if columns is None else tuple(columns), epsilon, delta, rows)


def _amount(value: Any, name: str) -> Fraction:
    if value is None:
        raise InvalidJob(f"{name} is required", field=name)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidJob(f"{name} must be a number", field=name)
    try:
        return to_fraction(value, name=name)
    except ValueError:
        raise InvalidJob(f"{name} must be a finite number", field=name) from None


def output_table(table: str, job_id: str) -> str:
    """The synthetic table's name: public (the source's name and the job id)."""
    return f"{table[:40]}_synth_{job_id[:12]}"


def plan_synthetic(
    spec: SyntheticSpec, meta: Mapping[str, Any], *, job_id: str
) -> tuple[dict[str, Any], Cost, dict[str, Any]]:
    """The job's plan (stored with it), its exact cost and the synthesised columns' declared metadata,
    from the body, the dataset's public metadata (§4 JSON) and the job id only."""
    from .synthetic import column_domains, plan_cost

    tables = meta.get("tables") or {}
    found = next((name for name in tables if name.lower() == spec.table.lower()), None)
    if found is None:
        raise InvalidJob(f"dataset {spec.dataset!r} has no table {spec.table!r}", field="table")
    table = tables[found] or {}
    if table.get("public"):
        raise InvalidJob("the table is public: query it directly (exact, at no cost)", field="table")
    if table.get("image") is not None:
        raise InvalidJob("image tables are not synthesised (one column per pixel); train on them instead", field="table")
    unit = meta.get("privacy_unit")
    k = table.get("max_rows_per_unit", 1)
    declared: dict[str, Any] = table.get("columns") or {}
    by_lower = {c.lower(): c for c in declared}
    skipped: dict[str, str] = {}
    if spec.columns is not None:
        chosen = []
        for c in spec.columns:
            name = by_lower.get(c.lower())
            if name is None:
                raise InvalidJob(f"table {found!r} has no column {c!r}", field="columns")
            if (unit is not None and name.lower() == unit.lower()) or (declared[name] or {}).get("type") == "id":
                raise InvalidJob(f"column {name!r} is the privacy unit or an id: it is never synthesised", field="columns")
            column_domains({name: declared[name]})  # InvalidJob naming it if it has no public domain
            chosen.append(name)
    else:
        chosen = []
        for name, col in declared.items():
            if (unit is not None and name.lower() == unit.lower()) or (col or {}).get("type") == "id":
                continue
            try:
                column_domains({name: col})
            except InvalidJob as exc:
                skipped[name] = exc.message
                continue
            chosen.append(name)
        if not chosen:
            raise InvalidJob("no column of the table has a public domain (declared categories or bounds)", field="columns")
        if len(chosen) > MAX_COLUMNS:
            raise InvalidJob(f"the table has {len(chosen)} columns to synthesise; name at most {MAX_COLUMNS} in columns", field="columns")
    columns = {c: declared[c] for c in chosen}
    synthesis = plan_cost(columns, epsilon=spec.epsilon, delta=spec.delta, max_rows_per_unit=k, unit=unit)
    cost = synthesis.cost
    assert cost.fits_within(Cost(spec.epsilon, spec.delta))
    plan = {
        "method": "mst",
        "source_table": found,
        "output_table": output_table(found, job_id),
        "unit": unit,
        "k": k,
        "columns": chosen,
        "skipped": skipped,
        "rows": spec.rows if spec.rows is not None else "noisy count",
        "synthesis": synthesis.to_json(),
    }
    return plan, cost, columns
