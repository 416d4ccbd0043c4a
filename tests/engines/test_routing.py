"""Where each table lives: the dataset's engine, a table's own, the settings' default; one engine per query."""
from __future__ import annotations

import copy

import pytest

from gateway.core import Gateway
from gateway.engines.duckdb import DuckDBEngine
from gateway.errors import DatasetUnavailable, UnsupportedSQL
from gateway.settings import load_settings
from tests.conftest import BANK, bank_frames


class Elsewhere(DuckDBEngine):
    """A second engine under another name (an embedded stand-in for a remote one)."""

    name = "spark"


def _two_engines() -> tuple[Gateway, DuckDBEngine, Elsewhere]:
    home, away = DuckDBEngine(None, seed="k"), Elsewhere(None, seed="k")
    for name, frame in bank_frames().items():
        home.load_frame(name, frame)
        away.load_frame(name, frame)
    gw = Gateway(home)
    gw.engines["spark"] = away
    meta = copy.deepcopy(BANK)
    meta["tables"]["cust"]["engine"] = "spark"  # one table lives elsewhere
    gw.register(meta)
    return gw, home, away


def test_a_table_lives_where_it_says_and_a_query_runs_there() -> None:
    gw, home, away = _two_engines()
    meta = gw.catalog.get("bank")
    assert meta.engine == "duckdb"  # the default, stated in the registered metadata
    assert meta.engine_of("cust") == "spark" and meta.engine_of("tx") == "duckdb"
    assert away._exists("bnd__bank__cust") and not home._exists("bnd__bank__cust")
    assert home._exists("bnd__bank__tx") and not away._exists("bnd__bank__tx")
    assert gw.plan("bank", "SELECT COUNT(*) FROM cust", epsilon=1).engine == "spark"
    assert gw.plan("bank", "SELECT COUNT(*) FROM tx", epsilon=1).engine == "duckdb"
    answer = gw.query("bank", "SELECT AVG(age) AS a FROM cust", epsilon=5)
    assert 18 <= answer.rows[0][0] <= 100


def test_a_join_across_engines_is_refused_before_any_data_is_read() -> None:
    gw, _, _ = _two_engines()
    with pytest.raises(UnsupportedSQL) as info:
        gw.plan("bank", "SELECT COUNT(*) FROM tx JOIN cust USING (cid)", epsilon=1)
    assert "different engines" in info.value.message and info.value.construct == "JOIN"


def test_the_engine_is_part_of_the_version() -> None:
    """The same metadata placed on another engine is another dataset version (no free repeats across)."""
    gw, _, _ = _two_engines()
    v1 = gw.version("bank")
    meta = copy.deepcopy(BANK)
    gw.register(meta)  # every table back on the default engine
    assert gw.version("bank") != v1


def test_an_engine_without_settings_or_client_is_unavailable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gw = Gateway(DuckDBEngine(None, seed="k"))
    meta = copy.deepcopy(BANK)
    meta["engine"] = "postgres"
    with pytest.raises(DatasetUnavailable):
        gw.register(meta)  # this gateway has no settings to connect one
    assert "bank" not in gw.catalog


def test_settings_choose_the_default_engine(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path, engine="duckdb")
    gw = Gateway(settings=settings)
    assert gw.engine.name == "duckdb" and gw.engine.path == str(tmp_path / "engine.duckdb")
