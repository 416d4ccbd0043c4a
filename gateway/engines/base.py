"""The engine seam: what the gateway needs from wherever a dataset's rows live.

An engine registers a table version and materialises its bounded form (`gateway.engines.bounding`
builds the SQL, the same for every engine), runs a SELECT that the planner generated under a timeout
(cancelling it past the timeout), and reports a content version. Everything that differs between
engines in SQL lives in the engine's `Dialect` (`gateway.sql.semantics`): the planner builds one
portable sqlglot tree from the plan and the dialect lowers and renders it. Engines are found by name
in `ENGINES`; `create` builds one from the settings.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlglot import exp

from gateway.errors import DatasetUnavailable, DpgateError

if TYPE_CHECKING:
    from gateway.catalog import DatasetMeta
    from gateway.settings import Settings
    from gateway.sql.semantics import Dialect


class EngineError(RuntimeError):
    """The engine failed on SQL the planner generated: a bug, never the caller's fault (500, generic)."""


class QueryTimeout(DpgateError, TimeoutError):
    """An engine query ran past `query_timeout_s` and was interrupted: nothing is released or charged."""

    code = "query_timeout"
    status = 504


class EngineUnavailable(DatasetUnavailable):
    """The engine a dataset lives in cannot be reached (connection refused, cluster down): that dataset
    is answered with 503 `dataset_unavailable`, the others as usual. Nothing is charged."""


@runtime_checkable
class Engine(Protocol):
    #: the registry name ("duckdb", "postgres", "spark")
    name: str
    #: NULL and range semantics, the total cast, the keyed hash, date parts: how the portable tree runs here
    dialect: Dialect
    #: an engine query running longer is cancelled (QueryTimeout); set from the settings
    query_timeout_s: float | None

    def register(self, ds: DatasetMeta, tables: list[str]) -> str:
        """Load and bound the named tables of `ds` (the ones living in this engine); returns their
        content version (metadata, sources, layout, bounding key): equal versions, equal data."""
        ...

    def relation(self, dataset: str, table: str, *, bounded: bool) -> exp.Table:
        """The engine relation holding a table's bounded form (or its loaded, unbounded rows)."""
        ...

    def execute(self, select: exp.Select) -> list[tuple]:
        """Run a SELECT the planner generated (portable tree; lowered by the dialect), read-only, under
        the timeout. Engine failures raise EngineError, timeouts QueryTimeout, a lost connection
        EngineUnavailable; the message never depends on the data."""
        ...

    def read_bounded(self, dataset: str, table: str, columns: list[str]) -> Any:
        """The bounded rows of a table as a pandas DataFrame ordered by row identity, for training
        inside the gateway (these rows never leave it)."""
        ...

    def close(self) -> None: ...


#: name -> factory(settings) building the engine (engines register themselves on import)
ENGINES: dict[str, Callable[[Settings], Engine]] = {}


def register_engine(name: str) -> Callable[[Callable[[Settings], Engine]], Callable[[Settings], Engine]]:
    def deco(factory: Callable[[Settings], Engine]) -> Callable[[Settings], Engine]:
        ENGINES[name] = factory
        return factory

    return deco


#: the engines that ship with dpgate, by the module that registers each
BUILTIN = {"duckdb": "gateway.engines.duckdb", "postgres": "gateway.engines.postgres", "spark": "gateway.engines.spark"}


def create(name: str, settings: Settings) -> Engine:
    """The engine `name`, connected as the settings say; EngineUnavailable if it cannot be reached."""
    if name not in ENGINES and name in BUILTIN:
        import importlib

        try:
            importlib.import_module(BUILTIN[name])  # registers itself
        except ImportError as e:  # its client library (pyspark, psycopg) is not installed
            raise EngineUnavailable(f"engine {name!r} cannot be loaded: {e.name or 'a module'} is not installed") from None
    factory = ENGINES.get(name)
    if factory is None:
        raise EngineUnavailable(f"engine {name!r} is not available in this installation")
    return factory(settings)


#: statements the query path never runs (`execute` refuses a tree holding one)
WRITES: tuple[type[exp.Expression], ...] = (
    exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Alter, exp.Command, exp.Merge, exp.Set,
    exp.Pragma, exp.Copy, exp.Attach, exp.Detach, exp.Use, exp.Transaction, exp.Commit, exp.Rollback,
)  # fmt: skip


def check_read_only(select: exp.Expression) -> None:
    """Read-only by construction: only a SELECT tree without a statement that writes, attaches, loads or
    sets anything is run (the planner builds nothing else; this guards against a planner bug)."""
    if not isinstance(select, exp.Select) or any(select.find_all(*WRITES)):
        raise EngineError("the engine runs SELECTs only")
