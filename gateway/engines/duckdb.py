"""The embedded engine: a DuckDB file under the data directory.

Registration loads a table's source (CSV, Parquet, or a table already in the engine) with its declared
types and materialises the portable bounded form of `gateway.engines.bounding` (the row identity, the
clamped copies, each unit's rows cut at `max_rows_per_unit`), the same SELECTs every engine runs. Where
no unit exceeds the bound, the bounded form is a view.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from gateway.catalog import ColumnType, DatasetMeta, TableMeta
from gateway.engines import bounding
from gateway.engines.base import EngineError, QueryTimeout, check_read_only, register_engine
from gateway.errors import InvalidMetadata
from gateway.sql.semantics import DUCKDB

LAYOUT = 3  # the shape of the engine's relations; a new layout reloads every table (3: portable MD5 row identity)
SQL_TYPES = bounding.SQL_TYPES


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckDBEngine:
    name = "duckdb"
    dialect = DUCKDB

    def __init__(self, path: Path | str | None, *, seed: str, threads: int | None = None) -> None:
        self.path = str(path) if path is not None else ":memory:"
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._seed = seed
        self.query_timeout_s: float | None = None  # set from the settings by the app
        config: dict[str, Any] = {}
        if threads:
            config["threads"] = threads
        self._con = duckdb.connect(self.path, config=config)
        self._lock = threading.RLock()
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS _dpgate_tables (name VARCHAR PRIMARY KEY, version VARCHAR, bounded BOOLEAN)"
        )

    def close(self) -> None:
        self._con.close()

    # planner protocol
    @staticmethod
    def relation_name(dataset: str, table: str, *, bounded: bool) -> str:
        return f"{'bnd' if bounded else 'src'}__{dataset.lower()}__{table.lower()}"

    def relation(self, dataset: str, table: str, *, bounded: bool) -> exp.Table:
        return exp.Table(this=exp.to_identifier(self.relation_name(dataset, table, bounded=bounded), quoted=True))

    # registration
    def register(self, ds: DatasetMeta, tables: list[str] | None = None) -> str:
        """Load and bound the named tables of `ds` (default: all); returns their version (metadata + sources)."""
        names = list(ds.tables) if tables is None else tables
        versions = []
        for name in names:
            versions.append(self._register_table(ds, name, ds.tables[name]))
        self._check_unit_types(ds, names)
        return hashlib.sha256(json.dumps([ds.fingerprint(), *versions]).encode()).hexdigest()[:16]

    def _source_version(self, ds: DatasetMeta, table: TableMeta) -> str:
        src = table.source
        parts: list[Any] = [LAYOUT, ds.fingerprint(), src, self._seed_digest()]
        if _is_file(src):
            p = Path(src)
            if not p.exists():
                raise InvalidMetadata(f"source file of a table is missing: {src}")
            st = p.stat()
            parts += [st.st_size, st.st_mtime_ns]
        else:
            if self._exists(src):
                cols = ", ".join(_q(c) for c in self._columns_of(_q(src)))
                parts.append(self._one(f"SELECT count(*), bit_xor(hash({cols})) FROM {_q(src)}"))
            else:
                parts.append(None)
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]

    def _seed_digest(self) -> str:
        return hashlib.sha256(self._seed.encode()).hexdigest()[:8]

    def _register_table(self, ds: DatasetMeta, name: str, table: TableMeta) -> str:
        src_rel = self.relation_name(ds.name, name, bounded=False)
        bnd_rel = self.relation_name(ds.name, name, bounded=True)
        version = self._source_version(ds, table)
        with self._lock:
            row = self._one("SELECT version FROM _dpgate_tables WHERE name = ?", [src_rel])
        if row is not None and row[0] == version and self._exists(bnd_rel):
            return version
        reader = self._reader(table)
        present = {c.lower(): c for c in self._columns_of(reader)}
        for col in table.columns:
            if col.lower() not in present:
                raise InvalidMetadata(f"table {name}: column {col} is declared but not in the source")
        # The portable loaded form (gateway.engines.bounding): declared types, clamped copies and the
        # keyed row identity, as every engine builds it.
        source = sqlglot.parse_one(f"SELECT * FROM {reader}", read="duckdb").args["from_"].this
        select = bounding.load_select(ds, table, source, present, self._seed)
        sql = f"CREATE OR REPLACE TABLE {_q(src_rel)} AS {self.dialect.render(select)}"
        with self._lock:
            self._con.execute("BEGIN")
            try:
                self._con.execute(sql)
            except duckdb.Error:
                self._con.execute("ROLLBACK")
                # Which column failed is found without quoting any value: the admin sees the column, not the row.
                bad = self._failing_column(reader, table, present)
                raise InvalidMetadata(
                    f"table {name}: the source cannot be read with the declared types"
                    + (f" (column {bad} is not {table.columns[bad].type.value})" if bad else "")
                ) from None
            try:
                self._check_not_null(name, src_rel, table, ds)
                self._bound(ds, table, src_rel, bnd_rel)
                self._con.execute("INSERT OR REPLACE INTO _dpgate_tables VALUES (?, ?, ?)", [src_rel, version, True])
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
        return version

    def _check_unit_types(self, ds: DatasetMeta, names: list[str]) -> None:
        def type_of(name: str, col: str) -> str | None:
            row = self._one("SELECT data_type FROM information_schema.columns WHERE table_name = ? AND column_name = ?",
                            [self.relation_name(ds.name, name, bounded=False), col])
            return row[0] if row else None

        bounding.check_unit_types(ds, names, type_of)

    def _check_not_null(self, name: str, rel: str, table: TableMeta, ds: DatasetMeta) -> None:
        unit = ds.privacy_unit
        if unit and not table.public:
            col = table.column_name(unit)
            nulls = self._one(f"SELECT count(*) FROM {_q(rel)} WHERE {_q(col or unit)} IS NULL")
            if nulls and nulls[0]:
                raise InvalidMetadata(f"table {name}: the privacy-unit column {unit} has NULLs")

    def _bound(self, ds: DatasetMeta, table: TableMeta, src_rel: str, bnd_rel: str) -> None:
        loaded = exp.Table(this=exp.to_identifier(src_rel, quoted=True))
        cut = bounding.needs_cut(ds, table)
        if cut:
            most = self._one(self.dialect.render(bounding.most_rows_select(ds, table, loaded)))
            cut = most is not None and most[0] > table.max_rows_per_unit
        self._drop(bnd_rel)
        kind = "TABLE" if cut else "VIEW"
        self._con.execute(f"CREATE {kind} {_q(bnd_rel)} AS {self.dialect.render(bounding.bound_select(ds, table, loaded, cut=cut))}")

    def _drop(self, rel: str) -> None:
        row = self._one("SELECT table_type FROM information_schema.tables WHERE table_name = ?", [rel])
        if row is not None:
            self._con.execute(f"DROP {'VIEW' if row[0] == 'VIEW' else 'TABLE'} {_q(rel)}")

    def _reader(self, table: TableMeta) -> str:
        src = table.source
        low = src.lower()
        if low.endswith(".parquet"):
            return f"read_parquet({_lit(src)})"
        if low.endswith(".csv") or low.endswith(".csv.gz"):
            # Declared types for the columns the file has (a category stays text even if it looks
            # boolean or numeric); a declared column the file lacks is named by the caller.
            header = {c.lower(): c for c in self._columns_of(f"read_csv({_lit(src)}, header = true, all_varchar = true)")}
            types = {
                header[c.lower()]: SQL_TYPES[m.type] for c, m in table.columns.items() if m.type in SQL_TYPES and c.lower() in header
            }
            spec = "{" + ", ".join(f"{_lit(c)}: {_lit(t)}" for c, t in types.items()) + "}"
            return f"read_csv({_lit(src)}, header = true, types = {spec})"
        if not _is_file(src) and self._exists(src):
            return _q(src)
        raise InvalidMetadata(f"unknown source {src!r}: give a .csv or .parquet path, or a table in the engine")

    def _columns_of(self, reader: str) -> list[str]:
        with self._lock:
            try:
                return [d[0] for d in self._con.execute(f"SELECT * FROM {reader} LIMIT 0").description]
            except duckdb.Error:
                raise InvalidMetadata("the source of a table cannot be read") from None

    def _failing_column(self, reader: str, table: TableMeta, present: dict[str, str]) -> str | None:
        for col, meta in table.columns.items():
            if meta.type in (ColumnType.ID,):
                continue
            cast = "VARCHAR" if meta.type == ColumnType.CATEGORY else SQL_TYPES[meta.type]
            try:
                self._con.execute(f"SELECT count(CAST({_q(present[col.lower()])} AS {cast})) FROM {reader}").fetchall()
            except duckdb.Error:
                return col
        return None

    def _exists(self, name: str) -> bool:
        row = self._one("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name])
        return bool(row and row[0])

    def _one(self, sql: str, params: list[Any] | None = None) -> tuple | None:
        """The first row of `sql` (results are read to the end: DuckDB wants that before the next call)."""
        rows = self._con.execute(sql, params or []).fetchall()
        return rows[0] if rows else None

    # queries
    def execute(self, select: exp.Expression) -> list[tuple]:
        """Run SQL that the planner generated; any failure is an engine bug and says nothing about data."""
        check_read_only(select)
        sql = self.dialect.render(select)
        cur = self._con.cursor()
        timer = None
        if self.query_timeout_s is not None:
            # interrupt() stops only this cursor's query; the engine and other queries carry on
            timer = threading.Timer(self.query_timeout_s, _interrupt, (cur,))
            timer.daemon = True
            timer.start()
        try:
            return cur.execute(sql).fetchall()
        except duckdb.InterruptException:
            raise QueryTimeout(f"the query ran longer than {self.query_timeout_s:g} s and was stopped") from None
        except duckdb.Error as e:
            raise EngineError(type(e).__name__) from None
        finally:
            if timer is not None:
                timer.cancel()
            cur.close()

    def read_bounded(self, dataset: str, table: str, columns: list[str]) -> Any:
        """The bounded rows of a table (at most max_rows_per_unit per unit), for training inside the
        gateway: these rows never leave it."""
        rel = self.relation_name(dataset, table, bounded=True)
        cols = ", ".join(_q(c) for c in columns)
        cur = self._con.cursor()
        try:
            return cur.execute(f"SELECT {cols} FROM {_q(rel)} ORDER BY {bounding.ROW_ID}").df()
        except duckdb.Error as e:
            raise EngineError(type(e).__name__) from None
        finally:
            cur.close()

    def load_frame(self, name: str, frame: Any) -> str:
        """Put a DataFrame into the engine as a table (used by tests and the demo loader); returns the
        `source` that names it in a dataset's metadata."""
        with self._lock:
            self._con.register("_dpgate_frame", frame)
            self._con.execute(f"CREATE OR REPLACE TABLE {_q(name)} AS SELECT * FROM _dpgate_frame")
            self._con.unregister("_dpgate_frame")
        return name


def _interrupt(cur: duckdb.DuckDBPyConnection) -> None:
    try:
        cur.interrupt()
    except duckdb.Error:  # the query ended and its cursor closed meanwhile
        pass


def _is_file(src: str) -> bool:
    low = src.lower()
    return low.endswith((".csv", ".csv.gz", ".parquet")) or os.sep in src


@register_engine("duckdb")
def _from_settings(settings: Any) -> DuckDBEngine:
    return DuckDBEngine(settings.engine_path, seed=settings.secret_seed(), threads=settings.engine_threads)
