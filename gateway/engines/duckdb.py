"""The embedded engine: DuckDB, in a directory of immutable version files under the data directory.

Registration loads a table's source (CSV, Parquet, or a table already in the engine) with its declared
types and materialises the portable bounded form of `gateway.engines.bounding` (the row identity, the
clamped copies, each unit's rows cut at `max_rows_per_unit`), the same SELECTs every engine runs. Where
no unit exceeds the bound, the bounded form is a view.

Several processes serve one data directory (`gateway.replicas`), and DuckDB lets a file be open either
read-write in one process or read-only in many. So no process keeps a file open for writing: each
registered table version is written once, by the process that registers it, to a file of its own,
`<store>/<dataset>__<table>__<version>.duckdb` (tables `src`, the loaded form, and `bnd`, the bounded
form), under a temporary name that is renamed into place when complete. The version names the content
(metadata, source, layout, bounding key), so a file, once there, never changes, and the processes that
register the same version agree on its name and find it written. Each process queries through an
in-memory DuckDB that ATTACHes those files READ_ONLY and names them with views
(`src__<dataset>__<table>`, `bnd__<dataset>__<table>`), which a new version replaces; the query path
cannot write a file. `DuckDBEngine(None)` keeps everything in memory (tests, one process).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import uuid
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
_WRITING = "_dpgate_w"  # the catalog a version file is attached as while it is written
_LEGACY = "_dpgate_engine"  # an engine file of earlier releases, attached READ_ONLY for its tables as sources


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _in(catalog: str | None, name: str) -> exp.Table:
    """`name` (in `catalog`'s main schema where one is given) as a table of a sqlglot tree."""
    if catalog is None:
        return exp.Table(this=exp.to_identifier(name, quoted=True))
    return exp.Table(this=exp.to_identifier(name, quoted=True), db=exp.to_identifier("main", quoted=True),
                     catalog=exp.to_identifier(catalog, quoted=True))  # fmt: skip


def _stem(dataset: str, table: str) -> str:
    """A file-name-safe stem for a table's version files (names that are not plain identifiers are hashed)."""
    text = f"{dataset.lower()}__{table.lower()}"
    if re.fullmatch(r"[a-z0-9_]{1,120}", text):
        return text
    return "t_" + hashlib.sha256(text.encode()).hexdigest()[:24]


class DuckDBEngine:
    name = "duckdb"
    dialect = DUCKDB

    def __init__(self, path: Path | str | None, *, seed: str, threads: int | None = None, store: Path | str | None = None) -> None:
        """`path` None: everything in memory. Otherwise the version files live in `store` (default: a
        `duckdb` directory beside `path`); an engine file at `path` from an earlier release is only
        read, for tables named as sources."""
        self.path = str(path) if path is not None else ":memory:"
        self.store: Path | None = None
        if path is not None:
            self.store = Path(store) if store is not None else Path(path).parent / "duckdb"
            self.store.mkdir(parents=True, exist_ok=True)
        self._seed = seed
        self.query_timeout_s: float | None = None  # set from the settings by the app
        config: dict[str, Any] = {}
        if threads:
            config["threads"] = threads
        self._con = duckdb.connect(":memory:", config=config)
        self._lock = threading.RLock()
        # relation of a table's loaded form -> (version, catalog of its attached file); file mode
        self._attached: dict[str, tuple[str, str]] = {}
        self._legacy = False
        if self.store is None:
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS _dpgate_tables (name VARCHAR PRIMARY KEY, version VARCHAR, bounded BOOLEAN)"
            )
        elif Path(self.path).is_file():
            try:
                self._con.execute(f"ATTACH {_lit(self.path)} AS {_q(_LEGACY)} (READ_ONLY)")
                self._legacy = True
            except duckdb.Error:  # held read-write by an older process, or not a DuckDB file: not a source
                pass

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
        if table.synthetic is not None:  # not in the dataset's fingerprint: its own metadata names it
            parts.append(table.model_dump(mode="json"))
        if _is_file(src):
            p = Path(src)
            if not p.exists():
                raise InvalidMetadata(f"source file of a table is missing: {src}")
            st = p.stat()
            parts += [st.st_size, st.st_mtime_ns]
        else:
            ref = self._engine_table(src)
            if ref is not None:
                cols = ", ".join(_q(c) for c in self._columns_of(ref))
                parts.append(self._one(f"SELECT count(*), bit_xor(hash({cols})) FROM {ref}"))
            else:
                parts.append(None)
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]

    def _seed_digest(self) -> str:
        return hashlib.sha256(self._seed.encode()).hexdigest()[:8]

    def _register_table(self, ds: DatasetMeta, name: str, table: TableMeta) -> str:
        version = self._source_version(ds, table)
        if self.store is None:
            return self._register_in_memory(ds, name, table, version)
        return self._register_file(ds, name, table, version)

    def _register_in_memory(self, ds: DatasetMeta, name: str, table: TableMeta, version: str) -> str:
        src_rel = self.relation_name(ds.name, name, bounded=False)
        bnd_rel = self.relation_name(ds.name, name, bounded=True)
        with self._lock:
            row = self._one("SELECT version FROM _dpgate_tables WHERE name = ?", [src_rel])
        if row is not None and row[0] == version and self._exists(bnd_rel):
            return version
        with self._lock:
            self._con.execute("BEGIN")
            try:
                self._drop(bnd_rel)
                self._build(ds, name, table, _in(None, src_rel), _in(None, bnd_rel), _in(None, src_rel), transaction=True)
                self._con.execute("INSERT OR REPLACE INTO _dpgate_tables VALUES (?, ?, ?)", [src_rel, version, True])
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
        return version

    def _register_file(self, ds: DatasetMeta, name: str, table: TableMeta, version: str) -> str:
        """Attach the table's version file (written first, if no process has written it yet) and point
        the table's views at it."""
        from gateway.replicas import register_lock

        assert self.store is not None
        src_rel = self.relation_name(ds.name, name, bounded=False)
        bnd_rel = self.relation_name(ds.name, name, bounded=True)
        with self._lock:
            if self._attached.get(src_rel, ("", ""))[0] == version:
                return version
        path = self.store / f"{_stem(ds.name, name)}__{version}.duckdb"
        catalog = "v_" + hashlib.sha256(path.name.encode()).hexdigest()[:16]
        with register_lock(self.store), self._lock:
            attached = {r[0] for r in self._con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
            if catalog not in attached:
                if not path.exists():
                    self._write_version(ds, name, table, path)
                try:
                    self._con.execute(f"ATTACH {_lit(str(path))} AS {_q(catalog)} (READ_ONLY)")
                except duckdb.Error:
                    # not a whole version file (a disk that filled, a hand-copied file): write it again
                    path.unlink(missing_ok=True)
                    self._write_version(ds, name, table, path)
                    self._con.execute(f"ATTACH {_lit(str(path))} AS {_q(catalog)} (READ_ONLY)")
            self._con.execute(f"CREATE OR REPLACE VIEW {_q(src_rel)} AS SELECT * FROM {_in(catalog, 'src').sql('duckdb')}")
            self._con.execute(f"CREATE OR REPLACE VIEW {_q(bnd_rel)} AS SELECT * FROM {_in(catalog, 'bnd').sql('duckdb')}")
            self._attached[src_rel] = (version, catalog)
        return version

    def _write_version(self, ds: DatasetMeta, name: str, table: TableMeta, path: Path) -> None:
        """Write a table version's file: built under a temporary name, renamed into place when whole."""
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        self._con.execute(f"ATTACH {_lit(str(tmp))} AS {_q(_WRITING)}")
        attached = True
        try:
            # the view `bnd` names `src` unqualified: it reads its own file's table under any alias
            self._build(ds, name, table, _in(_WRITING, "src"), _in(_WRITING, "bnd"), _in(None, "src"))
            self._con.execute(f"DETACH {_q(_WRITING)}")  # checkpoints: the file is whole
            attached = False
            os.replace(tmp, path)
        finally:
            if attached:
                self._con.execute(f"DETACH {_q(_WRITING)}")
            for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                leftover.unlink(missing_ok=True)

    def _build(self, ds: DatasetMeta, name: str, table: TableMeta, src: exp.Table, bnd: exp.Table, view_src: exp.Table,
               *, transaction: bool = False) -> None:
        """Create the loaded form `src` and the bounded form `bnd` (a view over `view_src` where no unit
        has more than k rows); the caller holds the lock and a `transaction` or a file of its own."""
        reader = self._reader(table)
        present = {c.lower(): c for c in self._columns_of(reader)}
        for col in table.columns:
            if col.lower() not in present:
                raise InvalidMetadata(f"table {name}: column {col} is declared but not in the source")
        # The portable loaded form (gateway.engines.bounding): declared types, clamped copies and the
        # keyed row identity, as every engine builds it.
        source = sqlglot.parse_one(f"SELECT * FROM {reader}", read="duckdb").args["from_"].this
        select = bounding.load_select(ds, table, source, present, self._seed)
        try:
            self._con.execute(f"CREATE OR REPLACE TABLE {src.sql('duckdb')} AS {self.dialect.render(select)}")
        except duckdb.Error:
            if transaction:  # the failed transaction reads nothing more: find the column outside it
                self._con.execute("ROLLBACK")
            # Which column failed is found without quoting any value: the admin sees the column, not the row.
            bad = self._failing_column(reader, table, present)
            if transaction:
                self._con.execute("BEGIN")  # the caller rolls back
            raise InvalidMetadata(
                f"table {name}: the source cannot be read with the declared types"
                + (f" (column {bad} is not {table.columns[bad].type.value})" if bad else "")
            ) from None
        self._check_not_null(name, src.sql("duckdb"), table, ds)
        self._bound(ds, table, src, bnd, view_src)

    def _check_unit_types(self, ds: DatasetMeta, names: list[str]) -> None:
        def type_of(name: str, col: str) -> str | None:
            row = self._one("SELECT data_type FROM information_schema.columns WHERE table_catalog = current_database() "
                            "AND table_name = ? AND column_name = ?", [self.relation_name(ds.name, name, bounded=False), col])  # fmt: skip
            return row[0] if row else None

        bounding.check_unit_types(ds, names, type_of)

    def _check_not_null(self, name: str, rel: str, table: TableMeta, ds: DatasetMeta) -> None:
        """`rel`: the loaded form, as SQL."""
        unit = ds.privacy_unit
        if unit and not table.public:
            col = table.column_name(unit)
            nulls = self._one(f"SELECT count(*) FROM {rel} WHERE {_q(col or unit)} IS NULL")
            if nulls and nulls[0]:
                raise InvalidMetadata(f"table {name}: the privacy-unit column {unit} has NULLs")

    def _bound(self, ds: DatasetMeta, table: TableMeta, loaded: exp.Table, bnd: exp.Table, view_src: exp.Table) -> None:
        cut = bounding.needs_cut(ds, table)
        if cut:
            most = self._one(self.dialect.render(bounding.most_rows_select(ds, table, loaded)))
            cut = most is not None and most[0] > table.max_rows_per_unit
        kind = "TABLE" if cut else "VIEW"
        body = bounding.bound_select(ds, table, loaded if cut else view_src, cut=cut)
        self._con.execute(f"CREATE {kind} {bnd.sql('duckdb')} AS {self.dialect.render(body)}")

    def _drop(self, rel: str) -> None:
        row = self._one("SELECT table_type FROM information_schema.tables WHERE table_catalog = current_database() AND table_name = ?", [rel])
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
        ref = self._engine_table(src)
        if ref is not None:
            return ref
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
        row = self._one("SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() AND table_name = ?", [name])
        return bool(row and row[0])

    def _engine_table(self, src: str) -> str | None:
        """The relation (as SQL) of a source that names a table already in the engine: one of this
        process (`load_frame`), else one of an earlier release's engine file; None if there is none."""
        if _is_file(src):
            return None
        if self._exists(src):
            return _q(src)
        if self._legacy:
            row = self._one("SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? AND table_schema = 'main' "
                            "AND table_name = ?", [_LEGACY, src])  # fmt: skip
            if row and row[0]:
                return f"{_q(_LEGACY)}.main.{_q(src)}"
        return None

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
    return DuckDBEngine(settings.engine_path, seed=settings.secret_seed(), threads=settings.engine_threads,
                        store=settings.data_dir / "duckdb")
