"""Pass 3: validate a SELECT against the allow-list and freeze the plan of its measurements.

The plan says, before any data is read: which exact aggregates the engine computes (each a
`Measure`, with its sensitivity derived from the declared bounds and `max_rows_per_unit` alone), how
the query's ε is split among them (equal shares; the shares add up to exactly the ε asked), the public
domain of every GROUP BY cell or the private selection that replaces it, and the post-processing SQL
that turns noisy aggregates into the answer's columns (AVG = SUM/COUNT, HAVING, ORDER BY, LIMIT).

Neighbouring datasets differ in all rows of one privacy unit (at most k = max_rows_per_unit rows
after bounding). Sensitivities below are for the whole vector of GROUP BY cells: one unit's k rows
change the counts of all cells together by at most k in L1.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction

from sqlglot import exp

from gateway.catalog import ColumnMeta, ColumnType, DatasetMeta
from gateway.errors import InvalidRequest
from gateway.sql.parse import parse, unsupported, whole_number
from gateway.sql.scalar import BOOL, DATE, ID, NUM, STR, ColumnRef, ScalarCompiler, Typed, as_double, bounded, enforce_clamp, lit_num
from gateway.sql.source import Relations, Source
from mechanisms.allocation import NoiseItem, NoisePlan, choose_noise, split_epsilon
from mechanisms.cost import Cost

MAX_CELLS = 100_000
MAX_LIMIT = 100_000
SELECT_PARTS = frozenset({"expressions", "from", "from_", "joins", "where", "group", "having", "order", "limit", "offset"})


@dataclass(frozen=True)
class Measure:
    """One exact aggregate the engine computes per cell, released with its own noise."""

    id: str
    kind: str  # count | count_distinct | sum | quantile
    sql: exp.Expression | None  # the aggregate (count/sum) or the clamped value (quantile)
    sensitivity: float
    integer: bool
    lower: float = 0.0  # quantile range
    upper: float = 0.0
    alpha: Fraction = Fraction(1, 2)
    value_integer: bool = False
    # A centred sum is derived, not scanned: exact = base - center * count (the engine sums once)
    base: str | None = None
    count: str | None = None
    center: float = 0.0
    # The value reads no column (SUM(0)): the same on every dataset, the one case released without noise
    constant: bool = False


@dataclass(frozen=True)
class Aggregate:
    """One aggregate call of the query and the measures it is derived from."""

    id: str
    func: str  # count | sum | avg | var | stddev | quantile
    measures: tuple[str, ...]
    lower: float = 0.0
    upper: float = 0.0
    sample: bool = True
    nonnegative: bool = False


@dataclass(frozen=True)
class GroupKey:
    id: str
    sql: exp.Expression
    type: str
    domain: tuple | None


@dataclass(frozen=True)
class OutputColumn:
    name: str
    source: str | None  # the _a or _k id when the column is exactly an aggregate or a key


@dataclass(frozen=True)
class Plan:
    dataset: str
    sql: str
    normalized_sql: str
    source: Source = field(repr=False, compare=False)
    where: exp.Expression | None
    keys: tuple[GroupKey, ...]
    measures: tuple[Measure, ...]
    aggregates: tuple[Aggregate, ...]
    released: tuple[str, ...]  # ids of the measures that get noise of their own
    selection: str  # none | public (domain cells) | threshold | top_k | data (a public table's own groups)
    top_k: int
    count_measure: str | None  # the COUNT(*) measure selection uses
    post: exp.Select
    columns: tuple[OutputColumn, ...]
    epsilon: Fraction
    delta: Fraction
    share: Fraction  # ε of the selection, if any (each measurement's is in `shares`)
    public: bool
    max_rows: int
    engine: str = "duckdb"  # where the tables live (one engine per query); the plan is the same on every engine
    alpha: float = 0.05  # the stated intervals cover with probability 1 - alpha
    diagnostics: bool = False  # also release noisy counts of what bounding did (charged)
    shares: dict[str, Fraction] = field(default_factory=dict, compare=False)  # ε of each released measure
    checks: tuple[tuple[str, str, str], ...] = ()  # diagnostics: (aggregate id, what, measure id)

    #: where δ > 0 and Gaussian noise states tighter intervals: each measurement's ρ and the (ε, δ) the
    #: total ρ converts to (`mechanisms.allocation.choose_noise`); None: Laplace with `shares`
    gaussian: NoisePlan | None = field(default=None, compare=False)

    @property
    def cost(self) -> Cost:
        if self.public:
            return Cost(Fraction(0))
        if self.gaussian is not None:
            selection = Cost(self.share) if self.selection == "top_k" else Cost(Fraction(0))
            return selection + self.gaussian.cost
        return Cost(self.epsilon, self.delta if self.selection == "threshold" else Fraction(0))

    @property
    def cells(self) -> list[tuple] | None:
        if self.selection not in ("public", "top_k", "none"):
            return None
        if not self.keys:
            return [()]
        return list(itertools.product(*(k.domain for k in self.keys)))  # type: ignore[arg-type]


AGG_FUNCS = {
    exp.Count: "count",
    exp.Sum: "sum",
    exp.Avg: "avg",
    exp.Variance: "var",
    exp.VariancePop: "var_pop",
    exp.Stddev: "stddev",
    exp.StddevSamp: "stddev",
    exp.StddevPop: "stddev_pop",
    exp.Median: "median",
    exp.PercentileCont: "quantile",
    exp.PercentileDisc: "quantile",
    exp.Min: "min",
    exp.Max: "max",
}


#: the least per-row bound a sum over private rows is noised for. Its value is clamped to [lo, hi] in the
#: engine query, so a degenerate interval (lo = hi: SUM(LEAST(x, 0)) with x >= 0) has sensitivity 0 in
#: truth; it is still noised, as if a row could move it by this much, in case the analysis is wrong.
MIN_ROW_BOUND = 1.0


def _value_node(node: exp.Expression) -> exp.Expression | None:
    """The value an aggregate call reads (None for COUNT(*) and COUNT(DISTINCT ...))."""
    if isinstance(node, exp.WithinGroup):
        order = node.expression
        return order.expressions[0].this if isinstance(order, exp.Order) and order.expressions else None
    arg = node.this
    return None if isinstance(arg, (exp.Star, exp.Distinct)) or arg is None else arg


def _post_meta(t: str) -> ColumnMeta:
    kind = {NUM: ColumnType.FLOAT, STR: ColumnType.CATEGORY, BOOL: ColumnType.BOOL, DATE: ColumnType.DATE}.get(
        t, ColumnType.FLOAT
    )
    return ColumnMeta(type=kind, nullable=True)


class Planner:
    def __init__(self, dataset: DatasetMeta, relations: Relations) -> None:
        self.dataset = dataset
        self.relations = relations

    def plan(self, sql: str, *, epsilon: Fraction, delta: Fraction = Fraction(0), alpha: float = 0.05, diagnostics: bool = False) -> Plan:
        if epsilon <= 0:
            raise InvalidRequest("epsilon must be positive")
        if not 0 <= delta < 1:
            raise InvalidRequest("delta must be in [0, 1)")
        tree = parse(sql)
        return _Build(self, tree, sql, epsilon, delta, diagnostics=diagnostics).plan(alpha)


class _Build:
    def __init__(self, planner: Planner, tree: exp.Select, sql: str, epsilon: Fraction, delta: Fraction, *, diagnostics: bool = False) -> None:
        self.ds = planner.dataset
        self.diagnostics = diagnostics
        self.tree = tree
        self.sql = sql
        self.epsilon = epsilon
        self.delta = delta
        self._reject_modifiers(tree)
        self.source = Source.of(self.ds, tree, planner.relations)  # FROM a subquery: gateway.sql.nested
        self.k = self.source.max_rows
        dialect = self.source.relations.dialect  # the engine's semantics: what its SQL really does
        self.rows_scalar = ScalarCompiler(self._resolve, clamp=False, dialect=dialect)
        self.agg_scalar = ScalarCompiler(self._resolve, clamp=True, dialect=dialect)
        self.measures: dict[str, Measure] = {}
        self.measure_keys: dict[str, str] = {}
        self.aggregates: dict[str, Aggregate] = {}
        self.agg_keys: dict[str, str] = {}
        self._agg_nodes: dict[str, exp.Expression | None] = {}  # the value each aggregate reads
        self.keys: list[GroupKey] = []
        self.key_nodes: list[str] = []  # normalised SQL of each GROUP BY expression

    def _resolve(self, node: exp.Column) -> ColumnRef:
        return self.source.resolve(node)

    def _reject_modifiers(self, tree: exp.Select) -> None:
        # An allow-list of the SELECT's parts: any other (WITH, DISTINCT, QUALIFY, hints, SETTINGS,
        # FOR ..., a future sqlglot's new clause) is refused, never silently dropped.
        for key, v in tree.args.items():
            if key in SELECT_PARTS or not v:
                continue
            name = {"with": "WITH", "with_": "WITH", "distinct": "SELECT DISTINCT", "qualify": "QUALIFY"}.get(key, key.rstrip("_").upper())
            raise unsupported(f"{name} is not supported", v if isinstance(v, exp.Expression) else tree, name)
        # One subquery is allowed: the whole FROM, whose parts gateway.sql.nested checks (`Source.of`).
        from_ = tree.args.get("from_") or tree.args.get("from")
        derived = from_.this if from_ is not None and isinstance(from_.this, exp.Subquery) else None
        allowed = {id(derived), id(derived.this)} if derived is not None else set()
        for node in tree.walk():
            if isinstance(node, exp.Window):
                raise unsupported("window functions are not supported", node, "window function")
            if (isinstance(node, exp.Subquery) or (isinstance(node, exp.Select) and node is not tree)) and id(node) not in allowed:
                raise unsupported(
                    "subqueries are supported only as the whole FROM, one level deep and grouped by the privacy unit: "
                    "SELECT AVG(s) FROM (SELECT unit, SUM(x) AS s FROM t GROUP BY unit) d", node, "subquery",
                )
            if isinstance(node, exp.Placeholder) or isinstance(node, exp.Parameter):
                raise unsupported("parameters are not supported", node, "parameter")

    # main
    def plan(self, alpha: float = 0.05) -> Plan:
        tree = self.tree
        items = list(tree.expressions)
        if any(isinstance(i, exp.Star) for i in items):
            raise unsupported("SELECT * would release rows; select aggregates", tree, "*")
        where = None
        if tree.args.get("where") is not None:
            w = tree.args["where"].this
            if w.find(exp.AggFunc):
                raise unsupported("aggregates are not allowed in WHERE; use HAVING", w.find(exp.AggFunc), "aggregate in WHERE")
            typed = self.rows_scalar(w)
            if typed.type not in (BOOL, "null"):
                raise unsupported("WHERE needs a true/false condition", w, "WHERE")
            where = typed.sql
        self._group_keys(items)
        # select list: aggregates replaced by _a ids, keys by _k ids
        post_items = []
        columns = []
        substituted: list[exp.Expression] = []
        names_seen: dict[str, int] = {}
        for item in items:
            node = item.this if isinstance(item, exp.Alias) else item
            name = item.alias if isinstance(item, exp.Alias) else (node.name if isinstance(node, exp.Column) else node.sql(dialect="duckdb", comments=False).lower())
            name = name[:64] or "column"
            if name in names_seen:
                # the next free suffix: `n, n_1, n` must not name two columns `n_1`
                while f"{name}_{names_seen[name] + 1}" in names_seen:
                    names_seen[name] += 1
                names_seen[name] += 1
                name = f"{name}_{names_seen[name]}"
            names_seen.setdefault(name, 0)
            tree_, src = self._substitute(node)
            columns.append(OutputColumn(name, src))
            substituted.append(tree_)
            post_items.append(exp.alias_(self._compile_post(tree_, src), name, quoted=True))
        if not self.aggregates and not self.keys:
            raise unsupported("row-level SELECT is not allowed: select aggregates (COUNT, SUM, AVG, ...)", tree, "row-level SELECT")
        aliases = {c.name.lower(): t for c, t in zip(columns, substituted)}
        having = None
        if tree.args.get("having") is not None:
            having = self._post_expr(tree.args["having"].this, aliases)[0]
        limit = self._int_clause(tree.args.get("limit"), "LIMIT")
        offset = self._int_clause(tree.args.get("offset"), "OFFSET")
        top = self._top_k_pattern(tree, limit, offset)
        orders = []
        order = tree.args.get("order")
        if order is not None and top is None:
            for o in order.expressions:
                target = o.this
                if isinstance(target, exp.Literal) and not target.is_string:
                    idx = (whole_number(target) or 0) - 1
                    if not 0 <= idx < len(post_items):
                        raise unsupported("ORDER BY position out of range", target, "ORDER BY")
                    expr = post_items[idx].this.copy()
                else:
                    expr = self._post_expr(target, aliases)[0]
                orders.append(exp.Ordered(this=expr, desc=bool(o.args.get("desc")), nulls_first=o.args.get("nulls_first")))
        selection, top_k, count_id = self._selection(tree, top)
        post = exp.select(*post_items).from_(exp.to_identifier("noisy"))
        if having is not None:
            post = post.where(having)
        if selection == "top_k":
            post = post.order_by(exp.Ordered(this=exp.column("_rank")))
        elif orders:
            post = post.order_by(*orders)
        if limit is not None and selection != "top_k":
            post = post.limit(limit)
        if offset is not None and selection != "top_k":
            post = post.offset(offset)

        used = {m for a in self.aggregates.values() for m in a.measures}
        diagnostics = self._diagnostics() if self.diagnostics and not self.source.public else ()
        used |= {mid for _, _, mid in diagnostics}
        # Measures released with noise of their own. The selection's counts are not among them: top-k
        # and threshold selection use them only to select; a selected cell's COUNT(*) is measured again
        # with fresh noise (a count released with the noise that selected it is biased upwards: the
        # winner's curse), from its own share of ε.
        released = tuple(m for m in self.measures if m in used)
        if selection == "threshold" and self.delta <= 0:
            raise unsupported(
                "GROUP BY on a key without a public list of values needs delta > 0 (threshold partition selection)",
                tree.args.get("group"),
                "GROUP BY",
            )
        share, shares, gaussian = self._split(released, selection)
        return Plan(
            dataset=self.ds.name,
            sql=self.sql,
            normalized_sql=self.tree.sql(dialect="duckdb", normalize=True),
            source=self.source,
            where=where,
            keys=tuple(self.keys),
            measures=tuple(self.measures.values()),
            released=released,
            aggregates=tuple(self.aggregates.values()),
            selection=selection,
            top_k=top_k,
            count_measure=count_id,
            post=post,
            columns=tuple(columns),
            epsilon=self.epsilon,
            delta=self.delta,
            share=share,
            public=self.source.public,
            max_rows=self.k,
            engine=self.source.engine,
            alpha=alpha,
            diagnostics=self.diagnostics,
            shares=shares,
            checks=diagnostics,
            gaussian=gaussian,
        )

    def _split(self, released: tuple[str, ...], selection: str) -> tuple[Fraction, dict[str, Fraction], NoisePlan | None]:
        """ε of the selection (if any), of each released measure, and the Gaussian plan if it wins.

        The selection (threshold or top-k) takes one share as if it were one more measurement:
        ε / (measurements + 1). The measurements split the rest by `split_epsilon`, which minimises
        the sum of the answer columns' stated half-widths (each relative to its width under an equal
        split) given the public weights of `_weights`; with independent measures it is the equal split.
        Where δ > 0 is asked and not used by threshold selection, and every measurement adds noise (no
        quantile), `choose_noise` also weighs Gaussian noise under zCDP composition and takes it when
        its stated half-widths are tighter: the plan then charges the (ε, δ) its total ρ converts to.
        Laplace shares add up to exactly ε.
        """
        n_sel = 1 if selection in ("threshold", "top_k") else 0
        total = len(released) + n_sel
        if total == 0:
            return self.epsilon, {}, None
        sel = self.epsilon / total if n_sel else Fraction(0)
        rest = self.epsilon - sel
        if not released:
            return sel, {}, None
        weights = self._weights(released)
        measures = [self.measures[m] for m in released]
        additive = all(m.kind in ("count", "count_distinct", "sum") and m.sensitivity > 0 for m in measures)
        if self.delta > 0 and selection != "threshold" and additive:
            items = [
                NoiseItem(m.id, l1_sensitivity=int(m.sensitivity) if m.integer else m.sensitivity, integer=m.integer,
                          weight=weights[m.id] / m.sensitivity)
                for m in measures
            ]
            noise = choose_noise(items, rest, self.delta)
            if noise.mechanism == "gaussian":
                return (sel if n_sel else self.epsilon), {}, noise
        return (sel if n_sel else self.epsilon / total), split_epsilon(weights, rest), None

    def _weights(self, released: tuple[str, ...]) -> dict[str, float]:
        """Per released measure, how much its noise weighs in the answer's stated half-widths.

        A column's half-width is linear in each of its measures' noise scales, 1/ε_i: a COUNT or SUM
        column is its one measure's (weight 1); AVG = mid + S/N moves by dS/N + (S/N)·dN/N, with
        |S/N| <= half the range and assumed half of that (the typical case; public): the centred sum
        weighs 1, the count 0.5 in units of the column's own width; VAR/STDDEV: all three
        weigh 1 (measured on the loans by bench/split.py: no unequal split of them won on every form). Each column counts once: its weights are scaled by its own
        width, so that no column dominates by its units. Diagnostics' counts weigh 0.25."""
        weights = dict.fromkeys(released, 0.0)
        per_agg = {
            "avg": (0.5, 1.0),
            "var": (1.0, 1.0, 1.0),
            "stddev": (1.0, 1.0, 1.0),
        }
        for agg in self.aggregates.values():
            parts = per_agg.get(agg.func, (1.0,) * len(agg.measures))
            for mid, w in zip(agg.measures, parts):
                if mid in weights:
                    weights[mid] += w / sum(parts)
        for mid in weights:
            if weights[mid] == 0.0:
                weights[mid] = 0.25
        return weights

    def _diagnostics(self) -> tuple[tuple[str, str, str], ...]:
        """(column, what, measure id) of the noisy counts `diagnostics: true` asks for: per bounded
        value aggregated, the rows whose value lay outside its bounds (clamped); per table, the rows
        past the per-unit cap are counted by the release (see release.cap_checks)."""
        out = []
        for agg in self.aggregates.values():
            node = self._agg_nodes.get(agg.id)
            if node is None or agg.func == "count":
                continue
            typed = self.rows_scalar(node)
            if typed.type != NUM:
                continue
            raw = typed.sql
            outside = exp.or_(
                exp.LT(this=raw.copy(), expression=lit_num(agg.lower)),
                exp.GT(this=raw.copy(), expression=lit_num(agg.upper)),
            )
            flag = exp.Case(ifs=[exp.If(this=outside, true=exp.Literal.number(1))], default=exp.Literal.number(0))
            mid = self._measure(f"diag:clamped:{self._norm(node)}", "count", exp.Sum(this=flag), self.k, True)
            out.append((agg.id, "clamped", mid))
        if self.ds.privacy_unit is not None:
            for use in self.source.tables:
                if use.meta.public:
                    continue
                cap = use.meta.max_rows_per_unit
                units = self._measure(f"diag:units:{use.name}", "count", None, 1, True)
                rows = self._measure(f"diag:rows:{use.name}", "count", None, cap, True)
                out += [(use.name, "units_capped", units), (use.name, "rows_cut", rows)]
        return tuple(out)

    def _int_clause(self, node: exp.Expression | None, what: str) -> int | None:
        if node is None:
            return None
        if isinstance(node, exp.Limit):
            options = node.args.get("limit_options")
            percent = options is not None and (options.args.get("percent") or options.args.get("with_ties"))
            if percent or node.args.get("offset") is not None or node.args.get("expressions"):
                raise unsupported(f"{what} takes a non-negative integer literal", node, what)
        value = node.expression if isinstance(node, (exp.Limit, exp.Offset)) else node
        if not isinstance(value, exp.Literal) or value.is_string or not value.this.isdigit():
            raise unsupported(f"{what} takes a non-negative integer literal", node, what)
        n = int(value.this)
        if n > MAX_LIMIT:
            raise unsupported(f"{what} is at most {MAX_LIMIT}", node, what)
        return n

    # GROUP BY
    def _group_keys(self, items: list[exp.Expression]) -> None:
        group = self.tree.args.get("group")
        if group is None:
            return
        if group.args.get("rollup") or group.args.get("cube") or group.args.get("grouping_sets"):
            raise unsupported("ROLLUP, CUBE and GROUPING SETS are not supported", group, "GROUP BY")
        aliases = {i.alias.lower(): i.this for i in items if isinstance(i, exp.Alias)}
        for g in group.expressions:
            node = g
            if isinstance(g, exp.Literal) and not g.is_string:
                idx = (whole_number(g) or 0) - 1
                if not 0 <= idx < len(items):
                    raise unsupported("GROUP BY position out of range", g, "GROUP BY")
                node = items[idx].this if isinstance(items[idx], exp.Alias) else items[idx]
            elif isinstance(g, exp.Column) and not g.table and g.name.lower() in aliases:
                try:
                    self.source.resolve(g)
                except Exception:
                    node = aliases[g.name.lower()]
            if node.find(exp.AggFunc):
                raise unsupported("aggregates cannot be GROUP BY keys", node, "GROUP BY")
            typed = self.rows_scalar(node)
            if self._touches_unit(node):
                raise unsupported("grouping by the privacy unit would release each unit's values", node, "GROUP BY privacy unit")
            if typed.type == ID:
                raise unsupported("id columns cannot be GROUP BY keys", node, "GROUP BY id")
            kid = f"_k{len(self.keys)}"
            self.keys.append(GroupKey(kid, typed.sql, typed.type, typed.domain))
            self.key_nodes.append(self._norm(node))
        if len(self.keys) > 8:
            raise unsupported("at most 8 GROUP BY keys", group, "GROUP BY")

    def _touches_unit(self, node: exp.Expression) -> bool:
        for c in node.find_all(exp.Column):
            if self.source.resolve(c).is_unit:
                return True
        return False

    def _norm(self, node: exp.Expression) -> str:
        """A canonical text of an expression with its columns resolved, to match keys in SELECT."""
        copy = node.copy()
        for c in list(copy.find_all(exp.Column)):
            try:
                ref = self.source.resolve(c)
            except Exception:
                continue
            c.replace(exp.column(ref.name.lower(), table=ref.alias.lower()))
        return copy.sql(dialect="duckdb", normalize=True, comments=False)  # a comment changes no meaning

    def _selection(self, tree: exp.Select, top: int | None) -> tuple[str, int, str | None]:
        if self.source.public:
            if not self.keys:
                return "none", 0, None
            self._count_star()  # a public table groups like plain SQL: the groups found in the data
            return "data", 0, None
        if not self.keys:
            return "none", 0, None
        public = all(k.domain is not None for k in self.keys)
        if public:
            cells = math.prod(len(k.domain) for k in self.keys)  # type: ignore[arg-type]
            if cells > MAX_CELLS:
                raise unsupported(
                    f"the GROUP BY keys have {cells} public cells; at most {MAX_CELLS}", tree.args.get("group"), "GROUP BY"
                )
            if top is not None:
                return "top_k", top, self._count_star()
            return "public", 0, None
        count_id = self._find_count_star()
        return "threshold", 0, count_id if count_id is not None else self._count_star()

    def _top_k_pattern(self, tree: exp.Select, limit: int | None, offset: int | None) -> int | None:
        """GROUP BY key ORDER BY COUNT(*) DESC LIMIT k: the k most frequent by report-noisy-max."""
        order = tree.args.get("order")
        if len(self.keys) != 1 or not limit or offset or order is None or len(order.expressions) != 1:
            return None  # LIMIT 0 selects nothing: no selection to make (report-noisy-max needs k >= 1)
        domain = self.keys[0].domain
        if self.source.public or domain is None or limit >= len(domain):
            return None  # a LIMIT that covers every cell selects nothing: order the noisy counts
        if tree.args.get("having") is not None:
            return None
        o = order.expressions[0]
        if not o.args.get("desc"):
            return None
        target = o.this
        if isinstance(target, exp.Column) and not target.table:
            for item in tree.expressions:
                if isinstance(item, exp.Alias) and item.alias.lower() == target.name.lower():
                    target = item.this
        if isinstance(target, exp.Count) and isinstance(target.this, exp.Star):
            return limit
        return None

    def _find_count_star(self) -> str | None:
        return self.measure_keys.get("count:*")

    def _count_star(self) -> str:
        return self._measure("count:*", "count", exp.Count(this=exp.Star()), self.k, True)

    # aggregates
    def _post_expr(self, node: exp.Expression, aliases: dict[str, exp.Expression] | None = None) -> tuple[exp.Expression, str | None]:
        """An expression over aggregates and keys, compiled over the noisy frame's columns."""
        tree, src = self._substitute(node, aliases)
        return self._compile_post(tree, src), src

    def _compile_post(self, tree: exp.Expression, src: str | None) -> exp.Expression:
        if src is not None:
            return exp.column(src, quoted=True)

        def resolve(c: exp.Column) -> ColumnRef:
            kid = c.name
            meta = _post_meta(self.keys[int(kid[2:])].type) if kid.startswith("_k") and kid[2:].isdigit() else _post_meta(NUM)
            return ColumnRef(alias="noisy", name=kid, meta=meta, sql=exp.column(kid, quoted=True), is_unit=False)

        return ScalarCompiler(resolve, clamp=False)(tree).sql

    def _substitute(self, node: exp.Expression, aliases: dict[str, exp.Expression] | None = None) -> tuple[exp.Expression, str | None]:
        """The caller's expression with each aggregate and GROUP BY key replaced by its column of the
        noisy frame (`_aN`, `_kN`), and select aliases by their expressions; not yet compiled."""
        norm = self._norm(node) if not node.find(exp.AggFunc) else None
        if norm is not None and norm in self.key_nodes:
            kid = self.keys[self.key_nodes.index(norm)].id
            return exp.column(kid, quoted=True), kid
        if isinstance(node, tuple(AGG_FUNCS)) or (isinstance(node, exp.WithinGroup) and isinstance(node.this, tuple(AGG_FUNCS))):
            aid = self._aggregate(node)
            return exp.column(aid, quoted=True), aid
        if isinstance(node, exp.AggFunc) or (isinstance(node, exp.Anonymous) and str(node.this).upper() in ("QUANTILE", "QUANTILE_CONT", "APPROX_QUANTILE", "MODE", "FIRST", "LIST", "STRING_AGG")):
            raise unsupported("this aggregate is not supported", node)
        if isinstance(node, exp.Column) and aliases is not None and not node.table and node.name.lower() in aliases:
            try:
                self.source.resolve(node)
            except Exception:
                return aliases[node.name.lower()].copy(), None
        if isinstance(node, exp.Column):
            raise unsupported(
                f"column {node.name!r} must be inside an aggregate or in GROUP BY (row-level values are never released)",
                node,
                "row-level SELECT",
            )
        copy = node.copy()
        for child in list(copy.iter_expressions()):
            new, _ = self._substitute(child, aliases)
            child.replace(new)
        return copy, None

    def _measure(self, key: str, kind: str, sql: exp.Expression | None, sensitivity: float, integer: bool, **extra: object) -> str:
        if key in self.measure_keys:
            return self.measure_keys[key]
        mid = f"_m{len(self.measures)}"
        self.measures[mid] = Measure(mid, kind, sql, sensitivity, integer, **extra)  # type: ignore[arg-type]
        self.measure_keys[key] = mid
        return mid

    def _aggregate(self, node: exp.Expression) -> str:
        key = self._norm(node)
        if key in self.agg_keys:
            return self.agg_keys[key]
        agg = self._build_aggregate(node)
        self.aggregates[agg.id] = agg
        self._agg_nodes[agg.id] = _value_node(node)
        self.agg_keys[key] = agg.id
        return agg.id

    def _value(self, node: exp.Expression, func: str) -> tuple[Typed, bool]:
        if node.find(exp.AggFunc):
            raise unsupported("aggregates cannot be nested", node.find(exp.AggFunc), "nested aggregate")
        typed = self.agg_scalar(node)
        # A value declared never NULL is counted by COUNT(*), shared with the query's other counts. The
        # engine does not enforce the declaration, so a NULL row may still be counted: it then acts as
        # the value 0 in AVG's centred sum SUM(x) - mid * COUNT(*), which stays within its sensitivity
        # only if 0 lies inside the value's bounds. Otherwise the value is counted with COUNT(value)
        # (found by the privacy auditor: AVG(amount + 5000) moved 11x beyond its sensitivity).
        iv = typed.interval
        zero_inside = iv is not None and iv[0] <= 0 <= iv[1]
        return typed, not typed.nullable and zero_inside

    def _bounded_value(self, node: exp.Expression, func: str) -> tuple[exp.Expression, float, float, bool, bool]:
        typed, bare_nonnull = self._value(node, func)
        if typed.type == ID:
            raise unsupported(f"{func.upper()} of an id column is not allowed", node, f"{func.upper()} of id")
        if typed.type == BOOL:
            sql = exp.Cast(this=typed.sql, to=exp.DataType.build("DOUBLE"))
            return sql, 0.0, 1.0, bare_nonnull, True
        if typed.type != NUM:
            raise unsupported(f"{func.upper()} needs a numeric value, got {typed.type}", node, func.upper())
        iv = bounded(typed.interval)
        if iv is None:
            raise unsupported(
                f"{func.upper()} needs a bounded value: declare the column's lower and upper bounds, or clamp it with LEAST/GREATEST",
                node,
                f"unbounded {func.upper()}",
            )
        lo, hi = iv
        # Enforce, don't infer: every value that reaches the aggregate is clamped in the engine query
        # to the bounds its sensitivity is computed from (NULL stays NULL, NaN goes to the upper
        # bound), whatever the analysis above concluded. A wrong interval then costs accuracy only.
        # A bare column read from the copy the engine stored clamped to exactly these bounds is that
        # clamp already (the copy is rebuilt whenever the metadata change); anything computed is not.
        if typed.stored_clamp == (lo, hi):
            return typed.sql, lo, hi, bare_nonnull, typed.integer
        return enforce_clamp(typed.sql, lo, hi), lo, hi, bare_nonnull, typed.integer

    def _build_aggregate(self, node: exp.Expression) -> Aggregate:
        aid = f"_a{len(self.aggregates)}"
        k = self.k
        if isinstance(node, exp.WithinGroup):
            return self._within_group(aid, node)
        func = AGG_FUNCS[type(node)]
        if func == "count":
            arg = node.this
            if isinstance(arg, exp.Star):
                return Aggregate(aid, "count", (self._count_star(),), nonnegative=True)
            if isinstance(arg, exp.Distinct):
                if len(arg.expressions) != 1:
                    raise unsupported("COUNT(DISTINCT ...) takes one expression", node, "COUNT DISTINCT")
                inner = arg.expressions[0]
                typed, _ = self._value(inner, "count")
                if typed.column and self.source.resolve(exp.column(typed.column[1], table=typed.column[0])).is_unit:
                    sens = min(k, self._cells_bound())  # one unit counts once per cell
                else:
                    sens = k
                m = self._measure(f"countd:{self._norm(inner)}", "count_distinct", exp.Count(this=exp.Distinct(expressions=[self.rows_scalar(inner).sql])), sens, True)
                return Aggregate(aid, "count", (m,), nonnegative=True)
            typed, bare_nonnull = self._value(arg, "count")
            if bare_nonnull:
                return Aggregate(aid, "count", (self._count_star(),), nonnegative=True)
            if typed.type == BOOL or (typed.type == NUM and bounded(typed.interval) is not None):
                # the count AVG(x) and VARIANCE(x) use too: of the clamped value, one measure under one
                # key (the raw value's NULLs can differ: TRY_CAST of a raw value out of range)
                value = self._bounded_value(arg, "count")[0]
                m = self._measure(f"count:{self._norm(arg)}", "count", exp.Count(this=value), k, True)
            else:
                m = self._measure(f"count:raw:{self._norm(arg)}", "count", exp.Count(this=self.rows_scalar(arg).sql), k, True)
            return Aggregate(aid, "count", (m,), nonnegative=True)
        if node.args.get("distinct") or isinstance(node.this, exp.Distinct):
            raise unsupported(f"{func.upper()}(DISTINCT ...) is not supported", node, f"{func.upper()} DISTINCT")
        if func in ("median", "min", "max"):
            alpha = {"median": Fraction(1, 2), "min": Fraction(0), "max": Fraction(1)}[func]
            return self._quantile(aid, node.this, alpha)
        if func == "quantile":  # quantile_cont(x, p)
            return self._quantile(aid, node.this, self._alpha(node.expression))
        value, lo, hi, bare_nonnull, integer = self._bounded_value(node.this, func)
        norm = self._norm(node.this)
        constant = value.find(exp.Column) is None

        def sens(bound: float) -> float:
            # Nothing data-dependent leaves without noise: a sum over columns is noised even where its
            # clamp makes it the same on every dataset; only a literal of the query is exempt.
            return bound if constant or bound > 0 else k * MIN_ROW_BOUND
        if func == "sum":
            m = self._measure(f"sum:{norm}", "sum", exp.Sum(this=value), sens(k * max(abs(lo), abs(hi))), False, constant=constant)
            return Aggregate(aid, "sum", (m,), lo, hi, nonnegative=lo >= 0)
        count = self._count_star() if bare_nonnull else self._measure(
            f"count:{norm}", "count", exp.Count(this=value), k, True
        )
        mid = (lo + hi) / 2
        half = (hi - lo) / 2
        centered = exp.Sub(this=as_double(value), expression=lit_num(mid))  # DOUBLE: an int column squared overflows BIGINT
        total = self._measure(f"sum:{norm}", "sum", exp.Sum(this=value.copy()), sens(k * max(abs(lo), abs(hi))), False, constant=constant)
        s = self._measure(f"csum:{norm}", "sum", None, sens(k * half), False, base=total, count=count, center=mid, constant=constant)
        if func == "avg":
            return Aggregate(aid, "avg", (count, s), lo, hi)
        square = exp.Mul(this=exp.Paren(this=centered.copy()), expression=exp.Paren(this=centered.copy()))
        q = self._measure(f"csq:{norm}", "sum", exp.Sum(this=square), sens(k * half * half), False, constant=constant)
        kind = "var" if func.startswith("var") else "stddev"
        return Aggregate(aid, kind, (count, s, q), lo, hi, sample=not func.endswith("_pop"))

    def _cells_bound(self) -> int:
        if self.keys and all(key.domain is not None for key in self.keys):
            return math.prod(len(key.domain) for key in self.keys)  # type: ignore[arg-type]
        return 1 if not self.tree.args.get("group") else self.k

    def _alpha(self, node: exp.Expression | None) -> Fraction:
        if not isinstance(node, exp.Literal) or node.is_string:
            raise unsupported("the percentile must be a numeric literal in [0, 1]", node, "PERCENTILE")
        try:
            alpha = Fraction(node.this).limit_denominator(10_000)
        except ValueError:
            raise unsupported("the percentile must be a numeric literal in [0, 1]", node, "PERCENTILE") from None
        if not 0 <= alpha <= 1:
            raise unsupported("the percentile must be in [0, 1]", node, "PERCENTILE")
        return alpha

    def _within_group(self, aid: str, node: exp.WithinGroup) -> Aggregate:
        func = node.this
        if not isinstance(func, (exp.PercentileCont, exp.PercentileDisc)):
            raise unsupported("WITHIN GROUP is supported for PERCENTILE_CONT and PERCENTILE_DISC", node, "WITHIN GROUP")
        order = node.expression
        if not isinstance(order, exp.Order) or len(order.expressions) != 1:
            raise unsupported("WITHIN GROUP (ORDER BY one expression)", node, "WITHIN GROUP")
        ordered = order.expressions[0]
        alpha = self._alpha(func.this)
        if ordered.args.get("desc"):
            alpha = 1 - alpha
        return self._quantile(aid, ordered.this, alpha)

    def _quantile(self, aid: str, node: exp.Expression, alpha: Fraction) -> Aggregate:
        value, lo, hi, _, integer = self._bounded_value(node, "quantile")
        m = self._measure(
            f"q:{alpha}:{self._norm(node)}", "quantile", value, float(self.k), False,
            lower=lo, upper=hi, alpha=alpha, value_integer=integer,
        )
        return Aggregate(aid, "quantile", (m,), lo, hi)
