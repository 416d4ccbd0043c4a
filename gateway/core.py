"""The gateway's core: a catalog of datasets over an engine, answering private SQL. No HTTP here."""
from __future__ import annotations

from fractions import Fraction
from typing import Any

from gateway.catalog import Catalog, DatasetMeta, parse_dataset
from gateway.engines.duckdb import DuckDBEngine
from gateway.errors import InvalidRequest
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


class Gateway:
    def __init__(self, engine: DuckDBEngine) -> None:
        self.engine = engine
        self.catalog = Catalog()
        self.versions: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, demo: bool | None = None) -> Gateway:
        threshold.configure(max_candidates=settings.threshold_max_groups)  # process-wide, public
        engine = DuckDBEngine(settings.engine_path, seed=settings.secret_seed(), threads=settings.engine_threads)
        gw = cls(engine)
        if settings.demo.enabled if demo is None else demo:
            from gateway.demo_data import demo_datasets

            for raw in demo_datasets(settings.data_dir, transactions_rows=settings.demo.transactions_rows):
                gw.register(raw)
        for raw in settings.datasets:
            gw.register(raw)
        return gw

    def register(self, raw: dict[str, Any] | DatasetMeta) -> DatasetMeta:
        meta = raw if isinstance(raw, DatasetMeta) else parse_dataset(raw)
        self.versions[meta.name.lower()] = self.engine.register(meta)
        self.catalog.add(meta)
        return meta

    def version(self, dataset: str) -> str:
        return self.versions[self.catalog.get(dataset).name.lower()]

    def plan(self, dataset: str, sql: str, *, epsilon: Any, delta: Any = 0) -> Plan:
        eps, dlt = privacy_parameters(epsilon, delta)
        return Planner(self.catalog.get(dataset), self.engine).plan(sql, epsilon=eps, delta=dlt)

    def preview(self, dataset: str, sql: str, *, epsilon: Any, delta: Any = 0) -> tuple[Cost, dict[str, Accuracy]]:
        return expected_accuracy(self.plan(dataset, sql, epsilon=epsilon, delta=delta))

    def query(self, dataset: str, sql: str, *, epsilon: Any, delta: Any = 0) -> Answer:
        return release(self.plan(dataset, sql, epsilon=epsilon, delta=delta), self.engine)
