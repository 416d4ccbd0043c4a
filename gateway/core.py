"""The gateway's core: a catalog of datasets over an engine, answering private SQL. No HTTP here."""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

from gateway.catalog import Catalog, DatasetMeta, parse_dataset
from gateway.engines import base
from gateway.engines.base import Engine
from gateway.errors import DatasetUnavailable, InvalidRequest
from gateway.settings import Settings
from gateway.sql.plan import Plan, Planner
from gateway.sql.release import Accuracy, Answer, expected_accuracy, release
from mechanisms import threshold
from mechanisms.cost import Cost, to_fraction

MAX_EPSILON = Fraction(100)
# The ledger counts ε in units of 1e-12 (budget.units); below that, a count's noise scale is so large
# that OpenDP's discrete Laplace sampler runs for minutes (ε = 1e-22: 3 s; 1e-25: never returns).
MIN_EPSILON = Fraction(1, 10**12)


def privacy_parameters(epsilon: Any, delta: Any = 0) -> tuple[Fraction, Fraction]:
    """Exact ε and δ from a request, or InvalidRequest (costs nothing)."""
    try:
        eps = to_fraction(epsilon, name="epsilon")
        dlt = to_fraction(delta if delta is not None else 0, name="delta")
    except (ValueError, TypeError) as e:
        raise InvalidRequest(str(e)) from None
    if not MIN_EPSILON <= eps <= MAX_EPSILON:
        raise InvalidRequest(f"epsilon must be in [1e-12, {MAX_EPSILON}]")
    if not 0 <= dlt < Fraction(1, 1000):
        raise InvalidRequest("delta must be in [0, 0.001)")
    return eps, dlt


def interval_level(alpha: Any) -> float:
    """The stated intervals' miss probability: a number in [1e-6, 0.5] (0.05: 95% intervals)."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise InvalidRequest("alpha must be a number in [1e-6, 0.5]") from None
    if not 1e-6 <= a <= 0.5:
        raise InvalidRequest("alpha must be a number in [1e-6, 0.5]")
    return a


class Gateway:
    """The catalog over the engines its datasets live in (one per engine name, connected on first use).

    `Gateway(engine)` serves every dataset from that one engine (tests, benchmarks); `from_settings`
    connects engines as the settings say, the embedded DuckDB file by default."""

    def __init__(self, engine: Engine | None = None, *, settings: Settings | None = None) -> None:
        self._settings = settings
        # where synthetic tables are kept (`gateway.synthetic_tables`); the app sets it for a gateway built without settings
        self.data_dir: Path | None = settings.data_dir if settings is not None else None
        self.engines: dict[str, Engine] = {}
        if engine is not None:
            self.engines[engine.name] = engine
        self.default_engine = settings.engine if settings is not None else (engine.name if engine is not None else "duckdb")
        self.query_timeout_s: float | None = settings.query_timeout_s if settings is not None else None
        self.catalog = Catalog()
        self.versions: dict[str, str] = {}
        # datasets named in the settings whose engine or data could not be reached at start (name -> why)
        self.unavailable: dict[str, str] = {}

    @property
    def engine(self) -> Engine:
        """The default engine (the embedded DuckDB unless the settings say otherwise)."""
        return self.engine_named(self.default_engine)

    @engine.setter
    def engine(self, engine: Engine) -> None:
        """Serve the default engine's datasets through `engine` (tests wrap it to inject faults)."""
        self.engines[self.default_engine] = engine

    def engine_named(self, name: str) -> Engine:
        found = self.engines.get(name)
        if found is None:
            if self._settings is None:
                raise DatasetUnavailable(f"engine {name!r} is not configured in this gateway")
            found = base.create(name, self._settings)  # EngineUnavailable if it cannot be reached
            found.query_timeout_s = self.query_timeout_s
            self.engines[name] = found
        return found

    def set_query_timeout(self, seconds: float | None) -> None:
        self.query_timeout_s = seconds
        for engine in self.engines.values():
            engine.query_timeout_s = seconds

    @classmethod
    def from_settings(cls, settings: Settings, *, demo: bool | None = None) -> Gateway:
        threshold.configure(max_candidates=settings.threshold_max_groups)  # process-wide, public
        gw = cls(settings=settings)
        with gw._registering():  # replicas starting together: one writes the demo's files, the others read them
            if settings.demo.enabled if demo is None else demo:
                from gateway.demo_data import demo_datasets

                for raw in demo_datasets(settings.data_dir, transactions_rows=settings.demo.transactions_rows):
                    gw.register({"engine": "duckdb", **raw})  # the demo's files live in the embedded engine
            for raw in settings.datasets:
                try:
                    gw.register(raw)
                except DatasetUnavailable as exc:  # its engine is down: the other datasets are served
                    gw.unavailable[str(raw.get("name", "")).lower()] = str(exc)
        return gw

    def _registering(self) -> AbstractContextManager[None]:
        """The data directory's registration lock (`gateway.replicas`) where the gateway has settings:
        processes sharing it register one at a time."""
        if self._settings is None:
            return nullcontext()
        from gateway.replicas import register_lock

        return register_lock(self._settings.data_dir)

    def _placed(self, meta: DatasetMeta) -> DatasetMeta:
        """The metadata with its engine stated (the settings' default where it names none), so that
        where a dataset lives is part of its fingerprint and of the audit log."""
        if meta.engine is None:
            return meta.model_copy(update={"engine": self.default_engine})
        return meta

    def register(self, raw: dict[str, Any] | DatasetMeta) -> DatasetMeta:
        """Register a dataset (again): load and bound its tables and add it to the catalog. Its synthetic
        tables (`gateway.synthetic_tables`, under the data directory) are added to the definition; the
        version is the other tables' (a synthetic table changes no private table's version)."""
        meta = self._placed(raw if isinstance(raw, DatasetMeta) else parse_dataset(raw))
        if self.data_dir is not None:
            from gateway.synthetic_tables import stored_tables

            meta = meta.with_tables(stored_tables(self.data_dir, meta.name))
        synthetic = set(meta.synthetic_tables())
        by_engine: dict[str, list[str]] = {}
        for name in meta.tables:
            if name not in synthetic:
                by_engine.setdefault(meta.engine_of(name), []).append(name)
        versions = []
        with self._registering():
            for name, tables in sorted(by_engine.items()):
                versions.append([name, self.engine_named(name).register(meta, tables)])
            if synthetic:
                self.engine_named("duckdb").register(meta, sorted(synthetic))
        self.versions[meta.name.lower()] = versions[0][1] if len(versions) == 1 else _digest(versions)
        self.catalog.add(meta)
        return meta

    def version(self, dataset: str) -> str:
        return self.versions[self.catalog.get(dataset).name.lower()]

    def plan(self, dataset: str, sql: str, *, epsilon: Any, delta: Any = 0, alpha: float = 0.05, diagnostics: bool = False) -> Plan:
        """`alpha`: the stated intervals cover with probability 1 - alpha; `diagnostics`: also release
        (charged) noisy counts of what bounding did (values clamped, rows cut by the per-unit cap)."""
        eps, dlt = privacy_parameters(epsilon, delta)
        level = interval_level(alpha)
        return Planner(self.catalog.get(dataset), self.engine_named).plan(sql, epsilon=eps, delta=dlt, alpha=level, diagnostics=bool(diagnostics))

    def engine_for(self, plan: Plan) -> Engine:
        """The engine a plan's tables live in."""
        return self.engine_named(plan.engine)

    def read_bounded(self, dataset: str, table: str, columns: list[str]) -> Any:
        """A table's bounded rows, from the engine it lives in (training inside the gateway)."""
        meta = self.catalog.get(dataset)
        found = meta.table(table)
        name = found[0] if found else table
        return self.engine_named(meta.engine_of(name)).read_bounded(meta.name, name, columns)

    def preview(self, dataset: str, sql: str, *, epsilon: Any, delta: Any = 0, alpha: float = 0.05, diagnostics: bool = False) -> tuple[Cost, dict[str, Accuracy]]:
        return expected_accuracy(self.plan(dataset, sql, epsilon=epsilon, delta=delta, alpha=alpha, diagnostics=diagnostics))

    def query(self, dataset: str, sql: str, *, epsilon: Any, delta: Any = 0, alpha: float = 0.05, diagnostics: bool = False) -> Answer:
        plan = self.plan(dataset, sql, epsilon=epsilon, delta=delta, alpha=alpha, diagnostics=diagnostics)
        return release(plan, self.engine_for(plan))


def _digest(parts: Any) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
