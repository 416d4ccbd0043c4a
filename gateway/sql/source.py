"""Pass 2: resolve FROM and JOIN against the catalog, and say how many rows one unit can contribute.

A `Source` knows the relations the engine holds for each table (the bounded form materialised at
registration, or the raw one for per-query bounding), renders the FROM clause of the rewritten query,
and turns a column of the caller's query into the engine's column. Two private tables join only on
the privacy unit, so that the joined rows of a unit depend on that unit's rows alone (a stable
transformation); when both sides have more than one row per unit the joined rows are cut again to
max(k1, k2) per unit with the same keyed-hash ranking.

A private table may also join a public lookup table on any key (INNER, or LEFT with the private table
on the left). The public side is read deduplicated per join key in the engine query (one row per key,
picked by row identity: the same row on every engine and every run), so that a private row matches at
most one public row: the join adds public attributes to private rows and never multiplies them, and
the private table's bounds hold for the joined rows as they are. A query whose FROM is a subquery
grouped by the privacy unit is `gateway.sql.nested`'s (`Source.of` chooses).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from sqlglot import exp

from gateway.catalog import ColumnType, DatasetMeta, TableMeta
from gateway.errors import UnknownColumn, UnknownTable
from gateway.sql.parse import position, unsupported
from gateway.sql.scalar import ColumnRef, ScalarCompiler
from gateway.sql.semantics import Dialect

ROW_ID = "_dpgate_row"
CLAMPED = "_dpgate_c_"  # prefix of a numeric column stored clamped to its declared bounds ("bound once")
#: the column types a lookup join may compare, by the class they compare in: text (a category or an id,
#: compared as text), whole numbers, booleans, timestamps. Floats are refused: the engine's `=` and its
#: PARTITION BY need not agree on them (-0.0 and 0.0, NaN), and then one key could keep two rows.
LOOKUP_KEY_CLASS = {
    ColumnType.CATEGORY: "text", ColumnType.ID: "text", ColumnType.INT: "whole number",
    ColumnType.BOOL: "bool", ColumnType.DATE: "date",
}


def clamped_columns(meta: TableMeta) -> list[str]:
    """The columns the engine also stores clamped: numbers with declared bounds."""
    return [c for c, m in meta.columns.items() if m.bounds is not None]


class Relations(Protocol):
    """What the planner needs from the engine a table lives in: its relations and its dialect."""

    dialect: Dialect

    def relation(self, dataset: str, table: str, *, bounded: bool) -> exp.Table: ...


@dataclass(frozen=True)
class TableUse:
    alias: str
    name: str
    meta: TableMeta


def _q(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _rank(unit: exp.Expression, rows: list[exp.Expression]) -> exp.Expression:
    """Rows of a unit in the order of their keyed identities (`_dpgate_row`, MD5 hex of the bounding key
    and the row; for joined rows, MD5 of both identities): the same order on every engine."""
    order = rows[0] if len(rows) == 1 else exp.MD5(this=exp.DPipe(this=rows[0], expression=rows[1]))
    return exp.Window(
        this=exp.RowNumber(),
        partition_by=[unit],
        order=exp.Order(expressions=[exp.Ordered(this=order, nulls_first=False)]),
    )


class Source:
    def __init__(self, dataset: DatasetMeta, select: exp.Select, relations: Relations | Callable[[str], Relations]) -> None:
        """`relations`: the engine every table lives in, or a function from an engine name to it (the
        gateway's engines; a table lives where `DatasetMeta.engine_of` says)."""
        self.dataset = dataset
        from_ = select.args.get("from_") or select.args.get("from")
        if from_ is None:
            raise unsupported("a query reads from a table of the dataset", select, "SELECT without FROM")
        joins = select.args.get("joins") or []
        if len(joins) > 1:
            raise unsupported("at most one JOIN per query", joins[1], "JOIN")
        self.tables = [self._table(from_.this)]
        self.join: exp.Join | None = None
        if joins:
            self.join = joins[0]
            self.tables.append(self._table(self.join.this))
            if self.tables[0].alias.lower() == self.tables[1].alias.lower():
                raise unsupported("the two tables of a JOIN need distinct aliases", self.join, "JOIN")
        engines = {dataset.engine_of(t.name) for t in self.tables}
        if len(engines) > 1:
            raise unsupported(f"the two tables live in different engines ({', '.join(sorted(engines))}) and cannot be joined", self.join, "JOIN")
        self.engine = engines.pop()
        self.relations: Relations = relations if hasattr(relations, "relation") else relations(self.engine)  # type: ignore[operator,assignment]
        if hasattr(relations, "relation"):
            self.engine = getattr(relations, "name", self.engine)
        publics = [t.meta.public for t in self.tables]
        # a private table joined with a public one: the public side is a lookup (`_check_lookup`)
        self.lookup: TableUse | None = self.tables[publics.index(True)] if len(set(publics)) > 1 else None
        self.lookup_on: exp.Expression | None = None  # the join condition, compiled
        self.lookup_keys: list[exp.Expression] = []  # the public side of each key, as compared
        self.using: set[str] = set()  # USING columns: unqualified, they name the private table's column
        ks = [t.meta.max_rows_per_unit for t in self.tables if not t.meta.public] or [1]
        self.rebound = len(ks) == 2 and min(ks) > 1  # joined rows per unit k1*k2 > max(k1, k2)
        if self.lookup is not None:
            self._check_lookup(self.join)  # type: ignore[arg-type]
        elif self.join is not None:
            self._check_join(self.join)
        self.public = all(publics)
        self.per_query = len(self.tables) == 1 and self.tables[0].meta.bounding == "per_query" and not self.public
        self.max_rows = 1 if self.public else (max(ks) if len(ks) == 2 else ks[0])

    @classmethod
    def of(cls, dataset: DatasetMeta, select: exp.Select, relations: Relations | Callable[[str], Relations]) -> Source:
        """The source of a query: its tables, or (FROM a subquery) the relation the subquery derives."""
        from_ = select.args.get("from_") or select.args.get("from")
        if from_ is not None and isinstance(from_.this, exp.Subquery):
            from gateway.sql.nested import Derived  # nested builds on this module

            return Derived(dataset, select, relations)
        return cls(dataset, select, relations)

    # resolution
    def _table(self, node: exp.Expression) -> TableUse:
        if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
            raise unsupported(
                "read from tables of the dataset; a subquery is allowed only as the whole FROM, grouped by the privacy unit",
                node, "subquery" if isinstance(node, exp.Subquery) else "FROM",
            )
        if node.args.get("db") or node.args.get("catalog"):
            line, col = position(node)
            raise UnknownTable("qualified table names are not supported; name a table of the dataset", line=line, col=col)
        # a table is a name and an alias: TABLESAMPLE, PIVOT, AT (VERSION ...), hints and column
        # aliases are refused, not silently dropped
        for key, v in node.args.items():
            if key not in ("this", "alias", "db", "catalog") and v:
                raise unsupported(f"{key.rstrip('_').upper()} on a table is not supported", node, "FROM")
        alias_node = node.args.get("alias")
        if alias_node is not None and alias_node.args.get("columns"):
            raise unsupported("column aliases on a table are not supported", node, "FROM")
        found = self.dataset.table(node.name)
        if found is None:
            line, col = position(node)
            raise UnknownTable(
                f"unknown table {node.name!r} in dataset {self.dataset.name!r}", construct=node.name, line=line, col=col
            )
        name, meta = found
        alias = node.alias or name
        return TableUse(alias, name, meta)

    def _check_join(self, join: exp.Join) -> None:
        for key, v in join.args.items():
            if key not in ("this", "on", "using", "side", "kind") and v:
                raise unsupported("only INNER and LEFT joins on the privacy unit", join, f"{str(v).upper()} JOIN" if key == "method" else "JOIN")
        side = (join.side or "").upper()
        kind = (join.kind or "").upper()
        if kind not in ("", "INNER") or side not in ("", "LEFT"):
            raise unsupported("only INNER and LEFT joins on the privacy unit", join, f"{side or kind} JOIN".strip())
        unit = self.dataset.privacy_unit
        if unit is None:
            raise unsupported("joins need a privacy unit; this dataset is row-level", join, "JOIN")
        using = join.args.get("using")
        if using:
            names = [u.name.lower() for u in using]
            if names != [unit.lower()]:
                raise unsupported(f"joins are allowed on the privacy unit {unit} only", join, "JOIN")
            return
        on = join.args.get("on")
        if not isinstance(on, exp.EQ):
            raise unsupported(f"joins are allowed on the privacy unit {unit} only: ON a.{unit} = b.{unit}", join, "JOIN")
        sides = []
        for c in (on.this, on.expression):
            if not isinstance(c, exp.Column):
                raise unsupported(f"joins are allowed on the privacy unit {unit} only", join, "JOIN")
            ref = self.resolve(c)
            sides.append(ref)
        if not all(r.is_unit for r in sides) or sides[0].alias == sides[1].alias:
            raise unsupported(f"joins are allowed on the privacy unit {unit} only: ON a.{unit} = b.{unit}", join, "JOIN")

    def _check_lookup(self, join: exp.Join) -> None:
        """A private table joined with a public lookup table: INNER (either order) or LEFT with the
        private table on the left, ON equalities of one private and one public column each (AND-ed),
        or USING. The public side is deduplicated per key as compared (`_lookup_relation`)."""
        for key, v in join.args.items():
            if key not in ("this", "on", "using", "side", "kind") and v:
                name = f"{str(v).upper()} JOIN" if key == "method" else "JOIN"
                raise unsupported("a public table joins a private one with INNER or LEFT JOIN ... ON or USING", join, name)
        side = (join.side or "").upper()
        kind = (join.kind or "").upper()
        if kind not in ("", "INNER") or side not in ("", "LEFT"):
            raise unsupported("a public table joins a private one with INNER or LEFT JOIN only", join, f"{side or kind} JOIN".strip())
        private = next(t for t in self.tables if t is not self.lookup)
        if side == "LEFT" and self.tables[0] is self.lookup:
            raise unsupported(
                "in a LEFT JOIN with a public table the private table comes first (private LEFT JOIN public): "
                "unmatched public rows are not private rows", join, "LEFT JOIN",
            )
        assert self.lookup is not None
        pairs: list[exp.EQ] = []
        using = join.args.get("using")
        if using:
            for u in using:
                for use in (private, self.lookup):
                    if use.meta.column_name(u.name) is None:
                        line, col = position(u)
                        raise UnknownColumn(f"unknown column {u.name!r} in USING", construct=u.name, line=line, col=col)
                pairs.append(exp.EQ(this=exp.column(u.name, table=private.alias), expression=exp.column(u.name, table=self.lookup.alias)))
                self.using.add(u.name.lower())
        else:
            on = join.args.get("on")
            on = on.unnest() if on is not None else None
            parts = [p.unnest() for p in on.flatten()] if isinstance(on, exp.And) else [on]
            for p in parts:
                if not isinstance(p, exp.EQ) or not isinstance(p.this, exp.Column) or not isinstance(p.expression, exp.Column):
                    raise unsupported(
                        "a join with a public table is ON equalities of columns, one of each table (a.x = b.y AND ...)",
                        p if isinstance(p, exp.Expression) else join, "JOIN",
                    )
                pairs.append(p)
        compiler = ScalarCompiler(self.resolve, clamp=False, dialect=self.relations.dialect)
        conditions = []
        for eq in pairs:
            refs = [self.resolve(eq.this), self.resolve(eq.expression)]
            if {r.alias.lower() for r in refs} != {private.alias.lower(), self.lookup.alias.lower()}:
                raise unsupported("each join condition compares a column of each table", eq, "JOIN")
            classes = [LOOKUP_KEY_CLASS.get(r.meta.type) for r in refs]
            if None in classes or classes[0] != classes[1]:
                kinds = " and ".join(r.meta.type.value for r in refs)
                raise unsupported(
                    f"a join key with a public table compares text (category or id), whole numbers, booleans or dates "
                    f"of one kind; here {kinds}", eq, "JOIN key",
                )
            typed = compiler(eq)
            pub_first = refs[0].alias.lower() == self.lookup.alias.lower()
            self.lookup_keys.append((typed.sql.this if pub_first else typed.sql.expression).copy())
            conditions.append(typed.sql)
        self.lookup_on = exp.and_(*conditions) if len(conditions) > 1 else conditions[0]

    def resolve(self, node: exp.Column) -> ColumnRef:
        if node.args.get("db") or node.args.get("catalog"):
            raise unsupported("qualified column names are limited to table.column", node, "column")
        if isinstance(node.this, exp.Star):
            raise unsupported("SELECT * would release rows; select aggregates", node, "*")
        name = node.name
        qualifier = node.table
        candidates = []
        for use in self.tables:
            if qualifier and qualifier.lower() != use.alias.lower():
                continue
            col = use.meta.column_name(name)
            if col is not None:
                candidates.append((use, col))
        line, col_pos = position(node)
        if qualifier and not any(qualifier.lower() == u.alias.lower() for u in self.tables):
            raise UnknownTable(f"unknown table or alias {qualifier!r}", construct=qualifier, line=line, col=col_pos)
        if not candidates:
            raise UnknownColumn(f"unknown column {name!r}", construct=name, line=line, col=col_pos)
        unit = self.dataset.privacy_unit
        if len(candidates) > 1 and name.lower() in self.using:
            candidates = [c for c in candidates if not c[0].meta.public]  # USING's column is the private one
        if len(candidates) > 1 and not (unit and candidates[0][1].lower() == unit.lower()):
            raise unsupported(f"column {name!r} is ambiguous; qualify it with a table alias", node, "column")
        use, col_name = candidates[0]
        meta = use.meta.columns[col_name]
        if self.join is not None and (self.join.side or "").upper() == "LEFT" and use is self.tables[1] and not meta.nullable:
            meta = meta.model_copy(update={"nullable": True})  # NULL where a left row has no match
        return ColumnRef(
            alias=use.alias,
            name=col_name,
            meta=meta,
            sql=self.column_sql(use.alias, col_name),
            is_unit=unit is not None and col_name.lower() == unit.lower() and not use.meta.public,
            clamped_sql=self.column_sql(use.alias, CLAMPED + col_name) if meta.bounds is not None else None,
        )

    # rendering
    def column_sql(self, alias: str, name: str) -> exp.Expression:
        if self.rebound:
            return exp.Column(this=_q(f"{alias}__{name}"), table=_q("_j"))
        return exp.Column(this=_q(name), table=_q(alias))

    def _relation(self, use: TableUse, *, bounded: bool) -> exp.Table:
        rel = self.relations.relation(self.dataset.name, use.name, bounded=bounded).copy()
        rel.set("alias", exp.TableAlias(this=_q(use.alias)))
        return rel

    def _unit(self, use: TableUse) -> exp.Expression:
        assert self.dataset.privacy_unit is not None
        return exp.Column(this=_q(use.meta.column_name(self.dataset.privacy_unit) or ""), table=_q(use.alias))

    def rows_per_unit(self, use: TableUse) -> exp.Select:
        """Rows per unit of one table as loaded (before the per-unit cap and any WHERE), as `_n`: what
        the diagnostics count units past the cap from."""
        return (
            exp.select(exp.alias_(exp.Count(this=exp.Star()), "_n", quoted=True))
            .from_(self._relation(use, bounded=False))
            .group_by(self._unit(use))
        )

    def render(self, select: exp.Select, where: exp.Expression | None) -> exp.Select:
        """Attach FROM (and the WHERE, placed where the bounding needs it) to `select`."""
        if self.per_query:
            use = self.tables[0]
            unit = self.dataset.privacy_unit
            inner = exp.select(exp.Column(this=exp.Star(), table=_q(use.alias))).from_(
                self._relation(use, bounded=False)
            )
            if where is not None:
                inner = inner.where(where)
            rank = _rank(self._unit(use), [exp.Column(this=_q(ROW_ID), table=_q(use.alias))]) if unit else None
            if rank is not None:
                inner = inner.qualify(exp.LTE(this=rank, expression=exp.Literal.number(use.meta.max_rows_per_unit)))
            return select.from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=_q(use.alias))))
        if self.rebound:
            a, b = self.tables
            cols = [
                exp.alias_(exp.Column(this=_q(c), table=_q(t.alias)), f"{t.alias}__{c}", quoted=True)
                for t in (a, b)
                for c in [*t.meta.columns, *(CLAMPED + n for n in clamped_columns(t.meta))]
            ]
            inner = exp.select(*cols).from_(self._relation(a, bounded=True))
            inner = inner.join(self._join_clause(b))
            rows = [exp.Column(this=_q(ROW_ID), table=_q(t.alias)) for t in (a, b)]
            rank = _rank(self._unit(a), rows)
            inner = inner.qualify(exp.LTE(this=rank, expression=exp.Literal.number(self.max_rows)))
            out = select.from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=_q("_j"))))
            return out.where(where) if where is not None else out
        out = select.from_(self._read(self.tables[0]))
        if len(self.tables) == 2:
            out = out.join(self._join_clause(self.tables[1]))
        return out.where(where) if where is not None else out

    def _read(self, use: TableUse) -> exp.Expression:
        if use is self.lookup:
            return self._lookup_relation(use)
        return self._relation(use, bounded=not self.public)

    def _lookup_relation(self, use: TableUse) -> exp.Subquery:
        """The public table with one row per join key (as compared): the first by row identity, then
        by content (rows whose identities agree are the same row to within a millionth of a float).
        Enforced in the engine query, not assumed of the data: a private row matches at most one row."""
        alias = _q(use.alias)
        order = [exp.Ordered(this=exp.Column(this=_q(ROW_ID), table=alias.copy()), nulls_first=False)]
        order += [
            exp.Ordered(this=exp.Column(this=_q(c), table=alias.copy()), nulls_first=False)
            for c, m in use.meta.columns.items() if m.type not in (ColumnType.CATEGORY, ColumnType.ID)
        ]
        rank = exp.Window(
            this=exp.RowNumber(),
            partition_by=[k.copy() for k in self.lookup_keys],
            order=exp.Order(expressions=order),
        )
        inner = exp.select(exp.Column(this=exp.Star(), table=alias.copy())).from_(self._relation(use, bounded=False))
        inner = inner.qualify(exp.LTE(this=rank, expression=exp.Literal.number(1)))
        return exp.Subquery(this=inner, alias=exp.TableAlias(this=alias.copy()))

    def _join_clause(self, use: TableUse) -> exp.Join:
        assert self.join is not None
        if self.lookup is not None:
            on = self.lookup_on.copy()  # type: ignore[union-attr]
        else:
            on = exp.EQ(this=self._unit(self.tables[0]), expression=self._unit(use))
        side = (self.join.side or "").upper() or None
        return exp.Join(this=self._read(use), on=on, side=side)
