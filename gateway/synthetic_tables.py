"""Synthetic tables: the private synthetic copies that synthetic jobs make, kept as public tables.

A synthetic job (`training.synthetic_jobs`) releases a table of synthetic rows; everything in it is a
post-processing of charged measurements, so it may be queried exactly and downloaded at no further
cost. It is kept apart from the dataset's registered definition, under the data directory every
process shares::

    <data_dir>/synthetic/<dataset>/<table>.parquet   the rows
    <data_dir>/synthetic/<dataset>/<table>.json      its TableMeta: the source's declared columns, public,
                                                     engine duckdb, and `synthetic` (job, cost, rows)

Both are written under a temporary name and renamed into place, the data first, so a reader that
finds the JSON finds its rows whole. `Gateway.register` adds a dataset's synthetic tables to whatever
definition it registers (the config's, the demo's, an administrator's), so a new registration keeps
them; the dataset's fingerprint leaves them out (`DatasetMeta.fingerprint`), so adding one changes no
private table's version and no free repeat. Other replicas see a new one through `Refresher`, which
watches these JSON files as it watches the stored definitions.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from gateway.catalog import IDENTIFIER, TableMeta

__all__ = ["data_path", "publish", "publisher", "root", "stored_tables"]


def root(data_dir: Path | str) -> Path:
    return Path(data_dir) / "synthetic"


def _dir(data_dir: Path | str, dataset: str) -> Path:
    if not IDENTIFIER.match(dataset):
        raise ValueError(f"not a dataset name: {dataset!r}")
    return root(data_dir) / dataset.lower()


def data_path(data_dir: Path | str, dataset: str, table: str) -> Path:
    """The Parquet file of a synthetic table (which may not exist)."""
    if not IDENTIFIER.match(table):
        raise ValueError(f"not a table name: {table!r}")
    return _dir(data_dir, dataset) / f"{table.lower()}.parquet"


def stored_tables(data_dir: Path | str, dataset: str) -> dict[str, TableMeta]:
    """The dataset's synthetic tables, by name; a file that does not parse, or whose rows are gone, is skipped."""
    try:
        where = _dir(data_dir, dataset)
        entries = sorted(where.glob("*.json"))
    except (ValueError, OSError):
        return {}
    out: dict[str, TableMeta] = {}
    for path in entries:
        if path.name.startswith("."):
            continue
        try:
            raw = json.loads(path.read_text())
            name, meta = raw["name"], TableMeta.model_validate(raw["table"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if meta.synthetic is None or not IDENTIFIER.match(str(name)) or not Path(meta.source).is_file():
            continue
        out[str(name)] = meta
    return out


def _replace(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def publish(
    data_dir: Path | str,
    dataset: str,
    name: str,
    frame: pd.DataFrame,
    columns: dict[str, Any],
    provenance: dict[str, Any],
) -> TableMeta:
    """Write a synthetic table's rows and metadata (rows first); returns its TableMeta.

    `columns`: the declared metadata (§4 JSON) of the columns in `frame`, as the source table declares
    them: the synthetic values lie in their declared domains by construction."""
    path = data_path(data_dir, dataset, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = TableMeta.model_validate({
        "source": str(path.resolve()),
        "engine": "duckdb",
        "max_rows_per_unit": 1,
        "public": True,
        "synthetic": provenance,
        "columns": {c: columns[c] for c in frame.columns},
    })  # fmt: skip
    _replace(path, lambda tmp: frame.to_parquet(tmp, index=False))
    body = {"name": name, "table": meta.model_dump(mode="json")}
    _replace(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(body, indent=2)))
    return meta


def publisher(gateway: Any, data_dir: Path | str) -> Any:
    """The `publish` callback a `TrainingService` is given: write the table, then register its dataset
    again in `gateway` (this process's; other processes see it through `Refresher`)."""

    def _publish(dataset: str, name: str, frame: pd.DataFrame, columns: dict[str, Any], provenance: dict[str, Any]) -> None:
        publish(data_dir, dataset, name, frame, columns, provenance)
        meta = gateway.catalog.get(dataset)
        gateway.register(meta.without_synthetic())

    return _publish
