"""Per-customer questions: an inner query grouped by the privacy unit, an outer DP aggregate over it.

    SELECT AVG(total) FROM (SELECT customer_id, SUM(amount) AS total FROM transactions GROUP BY customer_id) t

The inner query groups by the privacy unit, so the relation it derives has one row per unit, and that
row is computed from the unit's own (bounded) rows alone. Removing a unit removes its one row and
changes no other: the outer query is planned as an ordinary query over a virtual table with
`max_rows_per_unit = 1` (`Derived`, a `Source`), whose columns have bounds that follow from the inner
aggregates and the inner tables' declared bounds alone. With at most k rows per unit (the inner
source's bound, enforced by its bounded form) and each value clamped to [lo, hi]:

* COUNT(*), COUNT(x), COUNT(DISTINCT x): whole numbers in [0, k];
* SUM(x): in [k * min(lo, 0), k * max(hi, 0)];
* AVG(x), MIN(x), MAX(x): in [lo, hi] (NULL where every x of the unit is NULL).

Enforce, don't infer: the inner aggregates read the bounded rows (at most k per unit, the inner
`Source` renders them), every value they aggregate is clamped in the engine query (the stored clamped
copy `_dpgate_c_<col>` of a bare column, or `enforce_clamp`), and the outer query clamps each derived
column to the bounds stated here again (`ColumnRef.clamped_sql`) before its own aggregate reads it.

Allowed in the inner query: FROM one table of the dataset or a join `Source` accepts (on the unit, or
with a public lookup table), WHERE, GROUP BY the privacy unit alone, and a select list of the unit
and aggregates COUNT, SUM, AVG, MIN, MAX named with AS. Everything else is refused with
`unsupported_sql`: HAVING, ORDER BY, LIMIT, DISTINCT, windows, other keys beside the unit, a subquery
inside the subquery, an inner query over public tables only (ask it directly), a join beside the
subquery in the outer query. The derived rows never leave the engine: only the outer aggregates do,
with noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlglot import exp

from gateway.catalog import IDENTIFIER, ColumnMeta, ColumnType, DatasetMeta, TableMeta
from gateway.errors import UnknownColumn, UnknownTable
from gateway.sql.parse import position, unsupported, whole_number
from gateway.sql.scalar import BOOL, ID, NULL, NUM, ColumnRef, ScalarCompiler, Typed, as_double, bounded, clamp_sql, enforce_clamp
from gateway.sql.source import Relations, Source, TableUse

#: the parts an inner SELECT may have; any other (HAVING, ORDER BY, LIMIT, DISTINCT, QUALIFY, WITH, ...) is refused
INNER_PARTS = frozenset({"expressions", "from", "from_", "joins", "where", "group"})
INNER_AGGREGATES = {exp.Count: "COUNT", exp.Sum: "SUM", exp.Avg: "AVG", exp.Min: "MIN", exp.Max: "MAX"}
DERIVED_ALIAS = "_dpgate_d"  # the derived relation's alias where the query gives none
UNIT_COLUMN = "_dpgate_unit"  # the unit column of the derived relation where the inner select does not name it
SHAPE = "SELECT ... FROM (SELECT unit, SUM(x) AS s, COUNT(*) AS n FROM t [WHERE ...] GROUP BY unit) d"


@dataclass(frozen=True)
class DerivedColumn:
    name: str
    sql: exp.Expression  # the inner aggregate as the engine computes it (over clamped values)
    meta: ColumnMeta


def _q(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _refuse(message: str, node: exp.Expression | None, construct: str) -> Exception:
    return unsupported(f"{message}; a subquery in FROM is allowed in the form {SHAPE}", node, construct)


class Derived(Source):
    """The relation an inner query grouped by the privacy unit derives, as the outer query's `Source`:
    one row per unit (`max_rows = 1`), its columns the inner aggregates with the bounds above."""

    def __init__(self, dataset: DatasetMeta, select: exp.Select, relations: Relations | Callable[[str], Relations]) -> None:
        self.dataset = dataset
        from_ = select.args.get("from_") or select.args.get("from")
        sub = from_.this
        if select.args.get("joins"):
            raise _refuse("a subquery in FROM cannot be joined with a table", select.args["joins"][0], "JOIN")
        for key, v in sub.args.items():
            if key not in ("this", "alias") and v:
                raise _refuse(f"{key.rstrip('_').upper()} on a subquery is not supported", sub, "subquery")
        alias_node = sub.args.get("alias")
        if alias_node is not None and alias_node.args.get("columns"):
            raise _refuse("column aliases on a subquery are not supported; name its columns with AS", sub, "subquery")
        inner = sub.this
        if isinstance(inner, (exp.Union, exp.Intersect, exp.Except)):
            raise _refuse("set operations are not supported", inner, "set operation")
        if not isinstance(inner, exp.Select):
            raise _refuse("the subquery must be a SELECT", inner, "subquery")
        if dataset.privacy_unit is None:
            raise _refuse("a subquery needs a privacy unit to group by; this dataset is row-level", sub, "subquery")
        self.unit = dataset.privacy_unit
        for key, v in inner.args.items():
            if key in INNER_PARTS or not v:
                continue
            name = {"with": "WITH", "with_": "WITH", "distinct": "SELECT DISTINCT", "qualify": "QUALIFY",
                    "having": "HAVING", "order": "ORDER BY", "limit": "LIMIT", "offset": "OFFSET"}.get(key, key.rstrip("_").upper())
            raise _refuse(f"{name} in the subquery is not supported", v if isinstance(v, exp.Expression) else inner, f"{name} in subquery")
        self.inner = Source(dataset, inner, relations)  # its tables, their bounds and joins, as for any query
        if self.inner.public:
            raise _refuse("the subquery reads only public tables: query them directly", sub, "subquery over a public table")
        self.engine = self.inner.engine
        self.relations = self.inner.relations
        dialect = self.relations.dialect
        self._rows = ScalarCompiler(self.inner.resolve, clamp=False, dialect=dialect)
        self._values = ScalarCompiler(self.inner.resolve, clamp=True, dialect=dialect)
        self.k_inner = self.inner.max_rows
        unit_sql = self._group_unit(inner)
        columns = self._columns(inner, unit_sql)
        where = None
        if inner.args.get("where") is not None:
            w = inner.args["where"].this
            if w.find(exp.AggFunc):
                raise _refuse("aggregates are not allowed in the subquery's WHERE", w.find(exp.AggFunc), "aggregate in WHERE")
            typed = self._rows(w)
            if typed.type not in (BOOL, NULL):
                raise _refuse("the subquery's WHERE needs a true/false condition", w, "WHERE")
            where = typed.sql
        items = [exp.alias_(c.sql, c.name, quoted=True) for c in columns]
        # the unit first, grouped by position (the portable GROUP BY)
        self.derived_sql = self.inner.render(exp.select(*items), where).group_by(exp.Literal.number(1))
        self.columns = {c.name: c for c in columns}
        alias = sub.alias or DERIVED_ALIAS
        meta = TableMeta(
            source="(subquery)", max_rows_per_unit=1, columns={c.name: c.meta for c in columns},
        )
        self.use = TableUse(alias, alias, meta)
        # the tables the query reads are the inner query's (what bounding and its diagnostics are about)
        self.tables = self.inner.tables
        self.join = None
        self.lookup = None
        self.using = set()
        self.rebound = False
        self.public = False
        self.per_query = False
        self.max_rows = 1  # one derived row per unit

    # the inner query
    def _group_unit(self, inner: exp.Select) -> exp.Expression:
        group = inner.args.get("group")
        if group is None:
            raise _refuse(f"the subquery must GROUP BY the privacy unit {self.unit}", inner, "subquery not grouped by the unit")
        if group.args.get("rollup") or group.args.get("cube") or group.args.get("grouping_sets"):
            raise _refuse("ROLLUP, CUBE and GROUPING SETS are not supported", group, "GROUP BY")
        if len(group.expressions) != 1:
            raise _refuse(
                f"the subquery groups by the privacy unit {self.unit} alone (one row per unit); other keys are not supported",
                group, "GROUP BY in subquery",
            )
        g = group.expressions[0]
        aliases = {i.alias.lower(): i.this for i in inner.expressions if isinstance(i, exp.Alias)}
        if isinstance(g, exp.Column) and not g.table and g.name.lower() in aliases and isinstance(aliases[g.name.lower()], exp.Column):
            g = aliases[g.name.lower()]  # GROUP BY the unit's alias
        if isinstance(g, exp.Literal) and not g.is_string:
            idx = (whole_number(g) or 0) - 1
            items = inner.expressions
            if not 0 <= idx < len(items):
                raise _refuse("GROUP BY position out of range", g, "GROUP BY")
            g = items[idx].this if isinstance(items[idx], exp.Alias) else items[idx]
        ref = self.inner.resolve(g) if isinstance(g, exp.Column) else None
        if ref is None or not ref.is_unit:
            raise _refuse(f"the subquery must GROUP BY the privacy unit {self.unit}", g, "subquery not grouped by the unit")
        return ref.sql

    def _columns(self, inner: exp.Select, unit_sql: exp.Expression) -> list[DerivedColumn]:
        k = self.k_inner
        unit_name: str | None = None
        out: list[DerivedColumn] = []
        names: set[str] = set()
        for item in inner.expressions:
            node = item.this if isinstance(item, exp.Alias) else item
            if isinstance(node, exp.Star) or (isinstance(node, exp.Column) and isinstance(node.this, exp.Star)):
                raise _refuse("SELECT * in the subquery is not supported; select the unit and aggregates", node, "*")
            if isinstance(node, exp.Column):
                ref = self.inner.resolve(node)
                if not ref.is_unit:
                    raise _refuse(
                        f"the subquery selects the privacy unit and aggregates; {node.name!r} is neither", node, "row-level SELECT",
                    )
                name = item.alias if isinstance(item, exp.Alias) else ref.name
                if unit_name is not None:
                    raise _refuse("the subquery selects the privacy unit once", node, "subquery")
                unit_name = self._name(name, names, node)
                continue
            if not isinstance(item, exp.Alias):
                raise _refuse("name each aggregate of the subquery with AS", node, "subquery column name")
            name = self._name(item.alias, names, item)
            out.append(DerivedColumn(name, *self._aggregate(node, k)))
        if not out:
            raise _refuse("the subquery selects at least one aggregate", inner, "subquery")
        unit = DerivedColumn(unit_name or UNIT_COLUMN, unit_sql.copy(), ColumnMeta(type=ColumnType.ID))
        return [unit, *out]

    def _name(self, name: str, names: set[str], node: exp.Expression) -> str:
        if not IDENTIFIER.match(name) or name.lower().startswith("_dpgate"):
            raise _refuse(f"the subquery's column name {name!r} must be a plain identifier", node, "subquery column name")
        if name.lower() in names:
            raise _refuse(f"the subquery names two columns {name!r}", node, "subquery column name")
        names.add(name.lower())
        return name

    def _aggregate(self, node: exp.Expression, k: int) -> tuple[exp.Expression, ColumnMeta]:
        """The engine aggregate of one inner column and its derived column's metadata (its bounds)."""
        func = INNER_AGGREGATES.get(type(node))
        if func is None:
            if node.find(exp.AggFunc) is not None:
                raise _refuse("the subquery's columns are single aggregates COUNT, SUM, AVG, MIN or MAX (no arithmetic on them)",
                              node, "subquery aggregate")
            raise _refuse("the subquery selects the privacy unit and aggregates COUNT, SUM, AVG, MIN, MAX", node, "row-level SELECT")
        arg = node.this
        if arg is not None and not isinstance(arg, exp.Star) and arg.find(exp.AggFunc) is not None:
            raise _refuse("aggregates cannot be nested", arg.find(exp.AggFunc), "nested aggregate")
        counts = ColumnMeta(type=ColumnType.INT, lower=0, upper=max(k, 1))
        if func == "COUNT":
            if isinstance(arg, exp.Star):
                return exp.Count(this=exp.Star()), counts
            if isinstance(arg, exp.Distinct):
                if len(arg.expressions) != 1:
                    raise _refuse("COUNT(DISTINCT ...) takes one expression", node, "COUNT DISTINCT")
                value = self._rows(arg.expressions[0]).sql
                return exp.Count(this=exp.Distinct(expressions=[value])), counts
            return exp.Count(this=self._rows(arg).sql), counts
        if node.args.get("distinct") or isinstance(arg, exp.Distinct):
            raise _refuse(f"{func}(DISTINCT ...) is not supported in the subquery", node, f"{func} DISTINCT")
        value, lo, hi, integer, nullable = self._bounded(arg, func)
        if func == "SUM":
            sql: exp.Expression = exp.Sum(this=value)
            lo, hi = k * min(lo, 0.0), k * max(hi, 0.0)
        elif func == "AVG":
            # SUM / COUNT of the clamped value (the portable aggregates), NULL where the unit has none
            total = exp.Sum(this=as_double(value))
            count = exp.Nullif(this=as_double(exp.Count(this=value.copy())), expression=exp.Literal.number(0))
            sql = exp.Paren(this=exp.Div(this=total, expression=count))
            integer = False
        else:
            sql = (exp.Min if func == "MIN" else exp.Max)(this=value)
        return sql, self._meta(lo, hi, integer=integer, nullable=nullable)

    def _bounded(self, arg: exp.Expression, func: str) -> tuple[exp.Expression, float, float, bool, bool]:
        """The value an inner SUM, AVG, MIN or MAX reads, clamped in the engine query to its bounds."""
        typed: Typed = self._values(arg)
        if typed.type == ID:
            raise _refuse(f"{func} of an id column is not allowed", arg, f"{func} of id")
        if typed.type == BOOL:
            return as_double(typed.sql), 0.0, 1.0, True, typed.nullable
        if typed.type != NUM:
            raise _refuse(f"{func} needs a numeric value, got {typed.type}", arg, func)
        iv = bounded(typed.interval)
        if iv is None:
            raise _refuse(
                f"{func} in the subquery needs a bounded value: declare the column's bounds, or clamp it with LEAST/GREATEST",
                arg, f"unbounded {func}",
            )
        lo, hi = iv
        value = typed.sql if typed.stored_clamp == (lo, hi) else enforce_clamp(typed.sql, lo, hi)
        return value, lo, hi, typed.integer, typed.nullable

    @staticmethod
    def _meta(lo: float, hi: float, *, integer: bool, nullable: bool) -> ColumnMeta:
        if hi <= lo:  # a degenerate range (SUM(LEAST(x, 0)) of x >= 0): widened, which costs accuracy only
            hi = lo + 1.0
        whole = integer and float(lo).is_integer() and float(hi).is_integer() and max(abs(lo), abs(hi)) < 2**53
        if whole:
            return ColumnMeta(type=ColumnType.INT, lower=int(lo), upper=int(hi), nullable=nullable)
        return ColumnMeta(type=ColumnType.FLOAT, lower=lo, upper=hi, nullable=nullable)

    # the outer query
    def resolve(self, node: exp.Column) -> ColumnRef:
        if node.args.get("db") or node.args.get("catalog"):
            raise unsupported("qualified column names are limited to table.column", node, "column")
        if isinstance(node.this, exp.Star):
            raise unsupported("SELECT * would release rows; select aggregates", node, "*")
        line, col_pos = position(node)
        if node.table and node.table.lower() != self.use.alias.lower():
            raise UnknownTable(f"unknown table or alias {node.table!r}", construct=node.table, line=line, col=col_pos)
        name = self.use.meta.column_name(node.name)
        if name is None:
            raise UnknownColumn(f"unknown column {node.name!r} of the subquery", construct=node.name, line=line, col=col_pos)
        meta = self.use.meta.columns[name]
        sql = self.column_sql(self.use.alias, name)
        if meta.type == ColumnType.FLOAT:
            # typed where an engine's dialect infers types from the tree (Spark's would take a clamp
            # CASE of integer literals and an untyped column for an integer, and sum it as one)
            sql = as_double(sql)
        b = meta.bounds
        return ColumnRef(
            alias=self.use.alias,
            name=name,
            meta=meta,
            sql=sql,
            is_unit=meta.type == ColumnType.ID,
            # the derived value clamped again to its stated bounds, in the outer query itself
            clamped_sql=clamp_sql(sql.copy(), *b) if b is not None else None,
        )

    def column_sql(self, alias: str, name: str) -> exp.Expression:
        return exp.Column(this=_q(name), table=_q(alias))

    def render(self, select: exp.Select, where: exp.Expression | None) -> exp.Select:
        out = select.from_(exp.Subquery(this=self.derived_sql.copy(), alias=exp.TableAlias(this=_q(self.use.alias))))
        return out.where(where) if where is not None else out

