"""The bounded form of a table, as one portable SELECT that every engine materialises the same way.

Registration reads a table's source with its declared types, gives each row an identity
(`_dpgate_row`: the MD5, as hex text, of the secret bounding key and a canonical text of the row's
content) and keeps each unit's rows ranked by that identity up to `max_rows_per_unit`. Adding or
removing a unit changes only that unit's kept rows (a stable transformation), so queries on the bounded
form have the sensitivity the planner states.

The identity is engine-portable: DuckDB's `hash()` and Spark's differ, MD5 of the same text agrees
everywhere, and the canonical text of a value is built so that DuckDB, PostgreSQL and Spark write it
the same way (integers as integers, floats as their whole number of millionths, timestamps and
booleans as SQL prints them, each field length-prefixed, NULL apart from every text; a float beyond
1e12, NaN or inf is written as the engine's dialect writes it, which may differ on Spark). The same key
therefore keeps the same rows on every engine (tests/engines check it). Two rows whose texts agree are
the same row to within a millionth in their float columns: ties are broken by content, in an order
every engine shares.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from gateway.catalog import ColumnType, DatasetMeta, TableMeta
from gateway.errors import InvalidMetadata
from gateway.sql.scalar import clamp_sql
from gateway.sql.source import CLAMPED, ROW_ID, clamped_columns

SQL_TYPES = {
    ColumnType.INT: "BIGINT",
    ColumnType.FLOAT: "DOUBLE",
    ColumnType.CATEGORY: "VARCHAR",
    ColumnType.DATE: "TIMESTAMP",
    ColumnType.BOOL: "BOOLEAN",
}


def q(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.Column(this=q(name), table=q(table) if table else None)


def text(e: exp.Expression) -> exp.Expression:
    return exp.Cast(this=e, to=exp.DataType.build("VARCHAR"))


def typed_column(source_column: str, meta_type: ColumnType) -> exp.Expression:
    """A source column in its declared type (an id keeps the source's type)."""
    c = col(source_column)
    if meta_type == ColumnType.ID:
        return c
    return exp.Cast(this=c, to=exp.DataType.build(SQL_TYPES[meta_type]))


def canonical_text(e: exp.Expression, meta_type: ColumnType) -> exp.Expression:
    """The text of one typed value that DuckDB, PostgreSQL and Spark write the same way."""
    if meta_type == ColumnType.FLOAT:
        # shortest-digits printing differs between engines (1.0 / 1 / 1.0E20); a whole number of
        # millionths does not, for |x| < 1e12 (beyond that, and NaN or inf, each engine's own text)
        small = exp.LT(this=exp.Anonymous(this="ABS", expressions=[e.copy()]), expression=exp.Literal.number("1e12"))
        micros = exp.Cast(
            this=exp.Anonymous(this="FLOOR", expressions=[exp.Mul(this=e.copy(), expression=exp.Literal.number(1000000))]),
            to=exp.DataType.build("BIGINT"),
        )
        return exp.Case(ifs=[exp.If(this=small, true=text(micros))], default=text(e.copy()))
    if meta_type == ColumnType.CATEGORY:
        return e
    return text(e)


def _field(e: exp.Expression) -> exp.Expression:
    """'v' || length || ':' || text for a value, 'n' for NULL: injective when joined."""
    t = exp.Paren(this=e)
    body = exp.DPipe(
        this=exp.DPipe(this=exp.Literal.string("v"), expression=text(exp.Length(this=t.copy()))),
        expression=exp.DPipe(this=exp.Literal.string(":"), expression=t.copy()),
    )
    return exp.Coalesce(this=body, expressions=[exp.Literal.string("n")])


def row_identity(key: str, values: list[tuple[exp.Expression, ColumnType]]) -> exp.Expression:
    """MD5 (lowercase hex text) of the bounding key and the canonical text of each value."""
    out: exp.Expression = exp.Literal.string(key + "|")
    for e, t in values:
        out = exp.DPipe(this=out, expression=_field(canonical_text(e, t)))
    return exp.MD5(this=out)


def load_select(ds: DatasetMeta, table: TableMeta, reader: exp.Expression, present: dict[str, str], key: str) -> exp.Select:
    """The loaded form of a table: declared columns in their declared types, a clamped copy of each
    bounded number (`_dpgate_c_<col>`, "bound once"), and the row identity. `present` maps a lower-cased
    column name to the source's spelling (the caller checks that every declared column is there)."""
    items: list[exp.Expression] = []
    typed: list[tuple[exp.Expression, ColumnType]] = []
    for name, meta in table.columns.items():
        e = typed_column(present[name.lower()], meta.type)
        items.append(exp.alias_(e, name, quoted=True))
        typed.append((e.copy(), meta.type))
    for name in clamped_columns(table):
        meta = table.columns[name]
        e = exp.Cast(this=col(present[name.lower()]), to=exp.DataType.build(SQL_TYPES[meta.type]))
        items.append(exp.alias_(clamp_sql(e, *meta.bounds), CLAMPED + name, quoted=True))  # type: ignore[misc]
    items.append(exp.alias_(row_identity(key, typed), ROW_ID, quoted=True))
    return exp.select(*items).from_(reader)


def stored_columns(table: TableMeta) -> list[str]:
    """The columns of the loaded and bounded forms, in order."""
    return [*table.columns, *(CLAMPED + n for n in clamped_columns(table)), ROW_ID]


def needs_cut(ds: DatasetMeta, table: TableMeta) -> bool:
    return ds.privacy_unit is not None and not table.public


def most_rows_select(ds: DatasetMeta, table: TableMeta, loaded: exp.Table) -> exp.Select:
    """The largest number of rows one unit has (where it is at most k, the bounded form is a view)."""
    unit = col(table.column_name(ds.privacy_unit) or ds.privacy_unit)  # type: ignore[arg-type]
    per_unit = exp.select(exp.alias_(exp.Count(this=exp.Star()), "n", quoted=True)).from_(loaded.copy()).group_by(unit)
    n = exp.Max(this=col("n"))
    return exp.select(exp.Coalesce(this=n, expressions=[exp.Literal.number(0)])).from_(
        exp.Subquery(this=per_unit, alias=exp.TableAlias(this=q("_u")))
    )


def bound_select(ds: DatasetMeta, table: TableMeta, loaded: exp.Table, *, cut: bool) -> exp.Select:
    """The bounded form: every stored column; with `cut`, each unit's first k rows by row identity
    (ties, rows whose canonical texts agree, broken by content)."""
    cols = [col(c) for c in stored_columns(table)]
    select = exp.select(*cols).from_(loaded.copy())
    if not cut:
        return select
    unit = col(table.column_name(ds.privacy_unit) or ds.privacy_unit)  # type: ignore[arg-type]
    order = [exp.Ordered(this=col(ROW_ID), nulls_first=False)]
    order += [exp.Ordered(this=col(c), nulls_first=False) for c, m in table.columns.items() if m.type != ColumnType.CATEGORY and m.type != ColumnType.ID]
    rank = exp.Window(this=exp.RowNumber(), partition_by=[unit], order=exp.Order(expressions=order))
    return select.qualify(exp.LTE(this=rank, expression=exp.Literal.number(int(table.max_rows_per_unit))))


def check_unit_types(ds: DatasetMeta, names: list[str], type_of: Callable[[str, str], str | None]) -> None:
    """Joins compare privacy units across tables: their engine types must agree, or a join could fail on
    some values (and a failure must never depend on the data). `type_of(table, column)` is the engine's
    type of a loaded table's column (None if it has none)."""
    if ds.privacy_unit is None:
        return
    types = {name: type_of(name, ds.tables[name].column_name(ds.privacy_unit) or ds.privacy_unit)
             for name in names if not ds.tables[name].public}
    if len(set(types.values())) > 1:
        found = ", ".join(f"{t}: {ty}" for t, ty in types.items())
        raise InvalidMetadata(f"the privacy-unit column {ds.privacy_unit} has different types across tables ({found})")
