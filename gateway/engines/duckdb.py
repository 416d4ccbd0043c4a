"""The embedded engine: a DuckDB file under the data directory.

Registration loads a table's source (CSV, Parquet, or a table already in the engine) with its declared
types, gives each row an identity (`_dpgate_row`, a keyed hash of the secret seed and the row's content)
and materialises the bounded form: each unit's rows ranked by that hash (ties, which only identical rows
can have, broken by content) and cut at `max_rows_per_unit`. Adding or removing a unit changes only
that unit's kept rows (a stable transformation), so queries on the bounded form have the sensitivity the
planner states, at the exact engine's speed. Where no unit exceeds the bound, the bounded form is a view.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from gateway.catalog import ColumnType, DatasetMeta, TableMeta
from gateway.errors import DpgateError, InvalidMetadata
from gateway.sql.scalar import clamp_sql
from gateway.sql.source import CLAMPED, ROW_ID, clamped_columns

LAYOUT = 2  # the shape of the engine's relations; a new layout reloads every table

SQL_TYPES = {
    ColumnType.INT: "BIGINT",
    ColumnType.FLOAT: "DOUBLE",
    ColumnType.CATEGORY: "VARCHAR",
    ColumnType.DATE: "TIMESTAMP",
    ColumnType.BOOL: "BOOLEAN",
}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class EngineError(RuntimeError):
    """The engine failed on SQL the planner generated: a bug, never the caller's fault."""


class QueryTimeout(DpgateError, TimeoutError):
    """An engine query ran past `query_timeout_s` and was interrupted: nothing is released or charged."""

    code = "query_timeout"
    status = 504


class DuckDBEngine:
    dialect = "duckdb"

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

    def relation(self, dataset: str, table: str, *, bounded: bool) -> str:
        return self.relation_name(dataset, table, bounded=bounded)

    def hash_key(self) -> exp.Expression:
        return exp.Literal.string(self._seed)

    # registration
    def register(self, ds: DatasetMeta) -> str:
        """Load and bound every table of `ds`; returns the dataset's version (metadata + sources)."""
        versions = []
        for name, table in ds.tables.items():
            versions.append(self._register_table(ds, name, table))
        self._check_unit_types(ds)
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
        selects = []
        for col, meta in table.columns.items():
            actual = present.get(col.lower())
            if actual is None:
                raise InvalidMetadata(f"table {name}: column {col} is declared but not in the source")
            if meta.type == ColumnType.ID:
                selects.append(f"{_q(actual)} AS {_q(col)}")
            elif meta.type == ColumnType.CATEGORY:
                selects.append(f"CAST({_q(actual)} AS VARCHAR) AS {_q(col)}")
            else:
                selects.append(f"CAST({_q(actual)} AS {SQL_TYPES[meta.type]}) AS {_q(col)}")
        # A row's identity is a keyed hash of its content, not its position: adding a unit's rows
        # anywhere in the source must not change which rows of the other units are kept.
        content = ", ".join(_q(present[c.lower()]) for c in table.columns)
        # Bound once: numeric columns are also stored clamped to their declared bounds, so that
        # aggregates read a column instead of clamping every row of every query.
        clamps = []
        for col in clamped_columns(table):
            typed = exp.Cast(this=exp.column(present[col.lower()], quoted=True), to=exp.DataType.build(SQL_TYPES[table.columns[col].type]))
            clamps.append(f"{clamp_sql(typed, *table.columns[col].bounds).sql(dialect='duckdb')} AS {_q(CLAMPED + col)}")  # type: ignore[misc]
        sql = (
            f"CREATE OR REPLACE TABLE {_q(src_rel)} AS SELECT {', '.join(selects + clamps)}, "
            f"hash({_lit(self._seed)}, {content}) AS {ROW_ID} FROM {reader}"
        )
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

    def _check_unit_types(self, ds: DatasetMeta) -> None:
        """Joins compare privacy units across tables: their engine types must agree, or a join could
        fail on some values (and a failure must never depend on the data)."""
        if ds.privacy_unit is None:
            return
        types = {}
        for name, table in ds.tables.items():
            if table.public:
                continue
            col = table.column_name(ds.privacy_unit)
            row = self._con.execute(
                "SELECT data_type FROM information_schema.columns WHERE table_name = ? AND column_name = ?",
                [self.relation_name(ds.name, name, bounded=False), col],
            ).fetchall()
            types[name] = row[0][0] if row else None
        if len(set(types.values())) > 1:
            found = ", ".join(f"{t}: {ty}" for t, ty in types.items())
            raise InvalidMetadata(f"the privacy-unit column {ds.privacy_unit} has different types across tables ({found})")

    def _check_not_null(self, name: str, rel: str, table: TableMeta, ds: DatasetMeta) -> None:
        unit = ds.privacy_unit
        if unit and not table.public:
            col = table.column_name(unit)
            nulls = self._one(f"SELECT count(*) FROM {_q(rel)} WHERE {_q(col or unit)} IS NULL")
            if nulls and nulls[0]:
                raise InvalidMetadata(f"table {name}: the privacy-unit column {unit} has NULLs")

    def _bound(self, ds: DatasetMeta, table: TableMeta, src_rel: str, bnd_rel: str) -> None:
        unit = ds.privacy_unit
        k = table.max_rows_per_unit
        cols = ", ".join(_q(c) for c in [*table.columns, *(CLAMPED + n for n in clamped_columns(table))]) + f", {ROW_ID}"
        if unit is None or table.public:
            self._con.execute(f"CREATE OR REPLACE VIEW {_q(bnd_rel)} AS SELECT {cols} FROM {_q(src_rel)}")
            return
        u = _q(table.column_name(unit) or unit)
        most = self._one(f"SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM {_q(src_rel)} GROUP BY {u})")
        self._drop(bnd_rel)
        if most is not None and most[0] <= k:
            self._con.execute(f"CREATE VIEW {_q(bnd_rel)} AS SELECT {cols} FROM {_q(src_rel)}")
            return
        self._con.execute(
            f"CREATE TABLE {_q(bnd_rel)} AS SELECT {cols} FROM {_q(src_rel)} "
            f"QUALIFY row_number() OVER (PARTITION BY {u} ORDER BY {ROW_ID}, {', '.join(_q(c) for c in table.columns)}) <= {int(k)}"
        )

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
        """Run SQL that the planner generated; any failure is an engine bug and says nothing about data.

        Read-only by construction: only a SELECT tree without a statement that writes, attaches, loads or
        sets anything is run (the planner builds nothing else; this guards against a planner bug)."""
        if not isinstance(select, exp.Select) or any(select.find_all(*_WRITES)):
            raise EngineError("the engine runs SELECTs only")
        sql = select.sql(dialect=self.dialect)
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
            return cur.execute(f"SELECT {cols} FROM {_q(rel)} ORDER BY {ROW_ID}").df()
        except duckdb.Error as e:
            raise EngineError(type(e).__name__) from None
        finally:
            cur.close()

    def load_frame(self, name: str, frame: Any) -> None:
        """Put a DataFrame into the engine as a table (used by tests and the demo loader)."""
        with self._lock:
            self._con.register("_dpgate_frame", frame)
            self._con.execute(f"CREATE OR REPLACE TABLE {_q(name)} AS SELECT * FROM _dpgate_frame")
            self._con.unregister("_dpgate_frame")


def _interrupt(cur: duckdb.DuckDBPyConnection) -> None:
    try:
        cur.interrupt()
    except duckdb.Error:  # the query ended and its cursor closed meanwhile
        pass


#: statements the query path never runs (`execute` refuses a tree holding one)
_WRITES: tuple[type[exp.Expression], ...] = (
    exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Alter, exp.Command, exp.Merge, exp.Set,
    exp.Pragma, exp.Copy, exp.Attach, exp.Detach, exp.Use, exp.Transaction, exp.Commit, exp.Rollback,
)  # fmt: skip


def _is_file(src: str) -> bool:
    low = src.lower()
    return low.endswith((".csv", ".csv.gz", ".parquet")) or os.sep in src
