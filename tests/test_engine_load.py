"""Registration on the DuckDB engine: loading CSV and Parquet sources with their declared types, the
errors a bad source gets, and the bounded form materialised at registration (DESIGN.md §1).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gateway.core import Gateway
from gateway.engines.duckdb import DuckDBEngine
from gateway.errors import InvalidMetadata

SEED = "load-seed"


def dataset(source: str | Path, columns: dict[str, Any], *, k: int = 2, name: str = "d", table: str = "t") -> dict[str, Any]:
    return {
        "name": name,
        "privacy_unit": "uid",
        "budget": {"epsilon": 5},
        "tables": {table: {"source": str(source), "max_rows_per_unit": k, "columns": columns}},
    }


def gateway() -> Gateway:
    return Gateway(DuckDBEngine(None, seed=SEED))


def rows(gw: Gateway, sql: str) -> list[tuple]:
    return gw.engine._con.execute(sql).fetchall()


def column_types(gw: Gateway, rel: str) -> dict[str, str]:
    return {r[0]: r[1] for r in rows(gw, f'DESCRIBE "{rel}"')}


def relation_kind(gw: Gateway, rel: str) -> str | None:
    found = rows(gw, f"SELECT table_type FROM information_schema.tables WHERE table_name = '{rel}'")
    return found[0][0] if found else None


TYPED_COLUMNS = {
    "uid": {"type": "id"},
    "yn": {"type": "category", "categories": ["Yes", "No"]},
    "tf": {"type": "category"},
    "code": {"type": "category"},
    "n": {"type": "int", "lower": 0, "upper": 10},
    "amt": {"type": "float", "lower": 0, "upper": 10},
    "day": {"type": "date"},
    "ok": {"type": "bool"},
}
TYPED_CSV = (
    "uid,yn,tf,code,n,amt,day,ok\n"
    "1,Yes,true,007,3,1.5,2025-01-02,true\n"
    "1,No,false,1.50,4,2,2025-02-03,false\n"
    "2,Yes,TRUE,10,5,3.25,2025-03-04,true\n"
)


def check_typed(gw: Gateway) -> None:
    types = column_types(gw, "src__d__t")
    assert types["yn"] == types["tf"] == types["code"] == "VARCHAR"
    assert types["n"] == "BIGINT"
    assert types["amt"] == "DOUBLE"
    assert types["day"] == "TIMESTAMP"
    assert types["ok"] == "BOOLEAN"
    got = rows(gw, 'SELECT yn, tf, code, n, amt, CAST(day AS DATE)::VARCHAR, ok FROM "src__d__t" ORDER BY n')
    assert got == [
        ("Yes", "true", "007", 3, 1.5, "2025-01-02", True),
        ("No", "false", "1.50", 4, 2.0, "2025-02-03", False),
        ("Yes", "TRUE", "10", 5, 3.25, "2025-03-04", True),
    ]
    # the declared categories match the text as written, through the whole gateway
    answer = gw.query("d", "SELECT yn, COUNT(*) AS n FROM t WHERE code = '007' OR tf = 'TRUE' GROUP BY yn", epsilon=1)
    assert [r[0] for r in answer.rows] == ["Yes", "No"]


# --- declared types -----------------------------------------------------------------------------


def test_csv_is_read_with_the_declared_types(tmp_path: Path) -> None:
    src = tmp_path / "typed.csv"
    src.write_text(TYPED_CSV)
    gw = gateway()
    gw.register(dataset(src, TYPED_COLUMNS))
    check_typed(gw)


def test_parquet_is_read_with_the_declared_types(tmp_path: Path) -> None:
    src = tmp_path / "typed.parquet"
    pd.DataFrame(
        {
            "uid": [1, 1, 2],
            "yn": ["Yes", "No", "Yes"],
            "tf": ["true", "false", "TRUE"],
            "code": ["007", "1.50", "10"],
            "n": ["3", "4", "5"],  # text in the file, declared int
            "amt": [1.5, 2.0, 3.25],
            "day": ["2025-01-02", "2025-02-03", "2025-03-04"],  # text in the file, declared date
            "ok": [True, False, True],
        }
    ).to_parquet(src)
    gw = gateway()
    gw.register(dataset(src, TYPED_COLUMNS))
    check_typed(gw)


def test_declared_int_from_csv_and_category_of_numbers(tmp_path: Path) -> None:
    src = tmp_path / "ints.csv"
    src.write_text("uid,n,zip\n1,7,01234\n2,-3,98000\n3,,00000\n")
    cols = {"uid": {"type": "id"}, "n": {"type": "int", "nullable": True}, "zip": {"type": "category"}}
    gw = gateway()
    gw.register(dataset(src, cols))
    assert column_types(gw, "src__d__t")["n"] == "BIGINT"
    assert rows(gw, 'SELECT uid, n, zip FROM "src__d__t" ORDER BY uid') == [(1, 7, "01234"), (2, -3, "98000"), (3, None, "00000")]


def test_csv_header_case_differs_from_the_declaration(tmp_path: Path) -> None:
    src = tmp_path / "case.csv"
    src.write_text("UID,Amt\n1,2.5\n2,3\n")
    gw = gateway()
    gw.register(dataset(src, {"uid": {"type": "id"}, "amt": {"type": "float", "lower": 0, "upper": 10}}))
    assert rows(gw, 'SELECT uid, amt FROM "src__d__t" ORDER BY uid') == [(1, 2.5), (2, 3.0)]


def test_unicode_values_survive_loading(tmp_path: Path) -> None:
    src = tmp_path / "u.csv"
    src.write_text("uid,cat\n1,café ☕\n2,日本\n3,Ωmega\n", encoding="utf-8")
    gw = gateway()
    gw.register(dataset(src, {"uid": {"type": "id"}, "cat": {"type": "category", "categories": ["café ☕", "日本", "Ωmega"]}}))
    assert sorted(r[0] for r in rows(gw, 'SELECT cat FROM "src__d__t"')) == sorted(["café ☕", "日本", "Ωmega"])


# --- bad sources ------------------------------------------------------------------------------


def test_missing_id_column_is_named(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text(TYPED_CSV)
    with pytest.raises(InvalidMetadata) as info:
        gateway().register(dataset(src, {**TYPED_COLUMNS, "other_id": {"type": "id"}}))
    assert "other_id" in info.value.message and info.value.code == "invalid_request"


def test_missing_column_in_parquet_is_named(tmp_path: Path) -> None:
    src = tmp_path / "a.parquet"
    pd.DataFrame({"uid": [1, 2], "amt": [1.0, 2.0]}).to_parquet(src)
    with pytest.raises(InvalidMetadata) as info:
        gateway().register(dataset(src, {"uid": {"type": "id"}, "amt": {"type": "float"}, "balance": {"type": "float"}}))
    assert "balance" in info.value.message


def test_missing_column_in_csv_is_named(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text(TYPED_CSV)
    with pytest.raises(InvalidMetadata) as info:
        gateway().register(dataset(src, {**TYPED_COLUMNS, "balance": {"type": "float"}}))
    assert "balance" in info.value.message


SECRET = "SECRET_VALUE_42"


def test_a_value_that_cannot_be_cast_is_refused_without_quoting_it(tmp_path: Path) -> None:
    for i, order in enumerate((["uid", "amt", "n"], ["uid", "n", "amt"])):
        src = tmp_path / f"bad{i}.csv"
        values = {"uid": ["1", "2"], "amt": ["2.5", SECRET], "n": ["3", "4"]}
        pd.DataFrame({c: values[c] for c in order}).to_csv(src, index=False)
        cols = {c: {"uid": {"type": "id"}, "amt": {"type": "float"}, "n": {"type": "int"}}[c] for c in order}
        gw = gateway()
        with pytest.raises(InvalidMetadata) as info:
            gw.register(dataset(src, cols))
        assert SECRET not in info.value.message and SECRET not in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__
        assert "d" not in gw.catalog
        # nothing half-made is left behind
        assert rows(gw, "SELECT count(*) FROM _dpgate_tables") == [(0,)]
        assert relation_kind(gw, "src__d__t") is None and relation_kind(gw, "bnd__d__t") is None


def test_the_failing_column_is_named_when_it_comes_first(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_text(f"uid,amt,n\n1,2.5,3\n2,{SECRET},4\n")
    with pytest.raises(InvalidMetadata) as info:
        gateway().register(dataset(src, {"uid": {"type": "id"}, "amt": {"type": "float"}, "n": {"type": "int"}}))
    assert "column amt is not float" in info.value.message and SECRET not in info.value.message


BLAME_BUG = (
    "BUG: engines/duckdb.py _register_table calls _failing_column inside the transaction the failed CREATE "
    "aborted, so every probe fails ('Current transaction is aborted') and the first non-id column is blamed"
)


@pytest.mark.parametrize(
    ("header", "bad_row", "cols", "culprit"),
    [
        ("uid,n,amt", f"2,4,{SECRET}", {"n": "int", "amt": "float"}, "amt"),
        ("uid,n,day", f"2,4,{SECRET}", {"n": "int", "day": "date"}, "day"),
        ("uid,cat,ok", f"2,x,{SECRET}", {"cat": "category", "ok": "bool"}, "ok"),
    ],
    ids=["float after int", "date after int", "bool after category"],
)
def test_the_failing_column_is_named_in_csv(tmp_path: Path, header: str, bad_row: str, cols: dict, culprit: str) -> None:
    src = tmp_path / "bad.csv"
    first = {"int": "3", "float": "1.5", "date": "2025-01-01", "category": "y", "bool": "true"}
    src.write_text(f"{header}\n1,{','.join(first[t] for t in cols.values())}\n{bad_row}\n")
    declared = {"uid": {"type": "id"}, **{c: {"type": t} for c, t in cols.items()}}
    with pytest.raises(InvalidMetadata) as info:
        gateway().register(dataset(src, declared))
    assert f"column {culprit} is not" in info.value.message, info.value.message
    assert SECRET not in info.value.message


def test_the_failing_column_is_named_in_parquet(tmp_path: Path) -> None:
    src = tmp_path / "bad.parquet"
    pd.DataFrame({"uid": [1, 2], "cat": ["a", "b"], "n": ["3", SECRET]}).to_parquet(src)
    with pytest.raises(InvalidMetadata) as info:
        gateway().register(dataset(src, {"uid": {"type": "id"}, "cat": {"type": "category"}, "n": {"type": "int"}}))
    assert "column n is not int" in info.value.message, info.value.message
    assert SECRET not in info.value.message


def test_null_privacy_unit_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "nulls.csv"
    src.write_text("uid,amt\n1,2\n,3\n")
    with pytest.raises(InvalidMetadata) as info:
        gateway().register(dataset(src, {"uid": {"type": "id"}, "amt": {"type": "float"}}))
    assert "uid" in info.value.message and "NULL" in info.value.message


@pytest.mark.parametrize("name", ["nope.csv", "nope.parquet", "nope.csv.gz", os.path.join("sub", "nope.dat")])
def test_missing_source_file(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidMetadata) as info:
        gateway().register(dataset(tmp_path / name, {"uid": {"type": "id"}}))
    assert "missing" in info.value.message and info.value.code == "invalid_request"


def test_unknown_source_kind_and_missing_engine_table(tmp_path: Path) -> None:
    other = tmp_path / "data.txt"
    other.write_text("uid\n1\n")
    with pytest.raises(InvalidMetadata, match="unknown source"):
        gateway().register(dataset(other, {"uid": {"type": "id"}}))
    with pytest.raises(InvalidMetadata, match="unknown source"):
        gateway().register(dataset("no_such_table", {"uid": {"type": "id"}}))


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "junk.parquet"
    src.write_bytes(b"this is not parquet")
    with pytest.raises(InvalidMetadata):
        gateway().register(dataset(src, {"uid": {"type": "id"}}))


# --- the bounded form -----------------------------------------------------------------------


def unit_frame(per_unit: dict[int, int], start_tid: int = 0, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    uid = np.repeat(list(per_unit), list(per_unit.values()))
    n = len(uid)
    return pd.DataFrame(
        {"uid": uid, "tid": np.arange(start_tid, start_tid + n), "amt": np.round(rng.uniform(0, 100, n), 2), "cat": rng.choice(["a", "b"], n)}
    )


UNIT_COLUMNS = {"uid": {"type": "id"}, "tid": {"type": "id"}, "amt": {"type": "float", "lower": 0, "upper": 100}, "cat": {"type": "category", "categories": ["a", "b"]}}


def kept(gw: Gateway, name: str = "d") -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for uid, tid in rows(gw, f'SELECT uid, tid FROM "bnd__{name}__t"'):
        out.setdefault(uid, set()).add(tid)
    return out


def test_bounded_form_keeps_at_most_k_rows_per_unit(tmp_path: Path) -> None:
    per_unit = {u: 1 + (u * 7) % 9 for u in range(1, 61)}  # 1..9 rows per unit
    src = tmp_path / "units.csv"
    unit_frame(per_unit).to_csv(src, index=False)
    gw = gateway()
    gw.register(dataset(src, UNIT_COLUMNS, k=3))
    assert relation_kind(gw, "bnd__d__t") == "BASE TABLE"
    got = kept(gw)
    assert {u: len(t) for u, t in got.items()} == {u: min(n, 3) for u, n in per_unit.items()}
    # the kept rows are rows of the table, unchanged
    inside = rows(gw, 'SELECT count(*) FROM "bnd__d__t" b JOIN "src__d__t" s USING (uid, tid, amt, cat, _dpgate_row)')
    assert inside == [(sum(min(n, 3) for n in per_unit.values()),)]
    # and the gateway answers from it with the sensitivity k = 3
    plan = gw.plan("d", "SELECT COUNT(*) FROM t", epsilon=1)
    assert plan.max_rows == 3 and plan.measures[0].sensitivity == 3


def test_bounded_form_is_the_table_where_no_unit_exceeds_k(tmp_path: Path) -> None:
    per_unit = {u: 1 + u % 4 for u in range(1, 40)}  # at most 4 rows per unit
    src = tmp_path / "units.parquet"
    unit_frame(per_unit).to_parquet(src)
    gw = gateway()
    gw.register(dataset(src, UNIT_COLUMNS, k=4))
    assert relation_kind(gw, "bnd__d__t") == "VIEW"
    table = rows(gw, 'SELECT * FROM "src__d__t" ORDER BY tid')
    assert rows(gw, 'SELECT * FROM "bnd__d__t" ORDER BY tid') == table
    assert len(table) == sum(per_unit.values())


def test_bounding_is_stable_when_a_unit_is_added_at_the_start(tmp_path: Path) -> None:
    """Each version is registered in a fresh engine with the same secret seed (re-registering a changed
    source in place is covered separately: see test_re_registering_a_changed_source_with_a_bounded_table)."""
    per_unit = {u: 2 + (u * 5) % 8 for u in range(1, 50)}  # 2..9 rows per unit, k = 3
    base = unit_frame(per_unit, start_tid=100)
    newcomer = unit_frame({999: 7}, start_tid=0, seed=9)

    def bounded(frame: pd.DataFrame, name: str) -> dict[int, set[int]]:
        src = tmp_path / name
        if name.endswith(".csv"):
            frame.to_csv(src, index=False)
        else:
            frame.to_parquet(src)
        gw = gateway()
        gw.register(dataset(src, UNIT_COLUMNS, k=3))
        return kept(gw)

    before = bounded(base, "v1.csv")
    assert {u: len(t) for u, t in before.items()} == {u: min(n, 3) for u, n in per_unit.items()}
    after = bounded(pd.concat([newcomer, base]), "v2.csv")  # the new unit's rows come first
    assert len(after[999]) == 3
    assert {u: t for u, t in after.items() if u != 999} == before
    # the order of the rows in the source does not matter, nor its format
    assert bounded(pd.concat([newcomer, base]).sample(frac=1.0, random_state=4), "v3.parquet") == after
    # removing a unit changes only that unit's rows
    assert bounded(pd.concat([base[base.uid != 7], newcomer]), "v4.csv") == {u: t for u, t in after.items() if u != 7}


def test_a_different_secret_seed_selects_differently(tmp_path: Path) -> None:
    per_unit = {u: 9 for u in range(1, 30)}
    src = tmp_path / "units.csv"
    unit_frame(per_unit).to_csv(src, index=False)
    a, b = gateway(), Gateway(DuckDBEngine(None, seed="another-seed"))
    a.register(dataset(src, UNIT_COLUMNS, k=2))
    b.register(dataset(src, UNIT_COLUMNS, k=2))
    assert kept(a) != kept(b)
    assert {u: len(t) for u, t in kept(a).items()} == {u: len(t) for u, t in kept(b).items()}


# --- re-registration ------------------------------------------------------------------------


def version_row(gw: Gateway, rel: str = "src__d__t") -> list[tuple]:
    return rows(gw, f"SELECT version, bounded FROM _dpgate_tables WHERE name = '{rel}'")


@pytest.mark.parametrize("kind", ["csv", "parquet", "engine table"])
def test_re_registering_an_unchanged_source_skips_the_reload(tmp_path: Path, kind: str) -> None:
    frame = unit_frame({u: 1 + u % 6 for u in range(1, 30)})
    gw = gateway()
    if kind == "csv":
        source: str | Path = tmp_path / "u.csv"
        frame.to_csv(source, index=False)
    elif kind == "parquet":
        source = tmp_path / "u.parquet"
        frame.to_parquet(source)
    else:
        source = "raw_units"
        gw.engine.load_frame("raw_units", frame)
    meta = dataset(source, UNIT_COLUMNS, k=3)
    gw.register(meta)
    version = gw.version("d")
    row = version_row(gw)
    assert len(row) == 1
    # a marker only survives if registration does not recreate the relations
    rows(gw, "INSERT INTO \"src__d__t\" (uid, tid, amt, cat, _dpgate_row) VALUES (-1, -1, 0, 'a', 0)")
    rows(gw, "INSERT INTO \"bnd__d__t\" (uid, tid, amt, cat, _dpgate_row) VALUES (-1, -1, 0, 'a', 0)")
    gw.register(meta)
    assert gw.version("d") == version
    assert version_row(gw) == row
    assert rows(gw, 'SELECT count(*) FROM "src__d__t" WHERE uid = -1') == [(1,)]
    assert rows(gw, 'SELECT count(*) FROM "bnd__d__t" WHERE uid = -1') == [(1,)]


def test_a_changed_declaration_reloads() -> None:
    gw = gateway()
    gw.engine.load_frame("raw_units", unit_frame({u: 1 + u % 3 for u in range(1, 30)}))  # at most 3 rows per unit
    gw.register(dataset("raw_units", UNIT_COLUMNS, k=3))
    version, row = gw.version("d"), version_row(gw)
    rows(gw, "INSERT INTO \"src__d__t\" (uid, tid, amt, cat, _dpgate_row) VALUES (-1, -1, 0, 'a', 0)")
    gw.register(dataset("raw_units", UNIT_COLUMNS, k=4))  # the metadata is part of the version
    assert gw.version("d") != version and version_row(gw) != row
    assert rows(gw, 'SELECT count(*) FROM "src__d__t" WHERE uid = -1') == [(0,)]


def test_re_registering_a_changed_file_reloads(tmp_path: Path) -> None:
    frame = unit_frame({u: 2 for u in range(1, 20)})
    src = tmp_path / "u.csv"
    frame.to_csv(src, index=False)
    gw = gateway()
    meta = dataset(src, UNIT_COLUMNS, k=3)
    gw.register(meta)
    version = gw.version("d")
    extra = unit_frame({500: 1}, start_tid=10_000)
    pd.concat([frame, extra]).to_csv(src, index=False)
    gw.register(meta)
    assert gw.version("d") != version
    assert rows(gw, 'SELECT count(*) FROM "bnd__d__t" WHERE uid = 500') == [(1,)]


@pytest.mark.parametrize("change", ["new rows in the file", "new declaration"])
def test_re_registering_a_changed_source_with_a_bounded_table(tmp_path: Path, change: str) -> None:
    frame = unit_frame({u: 1 + u % 6 for u in range(1, 30)})  # up to 6 rows per unit, k = 3: a bounded TABLE
    src = tmp_path / "u.csv"
    frame.to_csv(src, index=False)
    gw = gateway()
    gw.register(dataset(src, UNIT_COLUMNS, k=3))
    assert relation_kind(gw, "bnd__d__t") == "BASE TABLE"
    version = gw.version("d")
    k = 3
    if change == "new rows in the file":
        pd.concat([unit_frame({500: 1}, start_tid=10_000), frame]).to_csv(src, index=False)
    else:
        k = 2
    gw.register(dataset(src, UNIT_COLUMNS, k=k))
    assert gw.version("d") != version
    assert max(len(t) for t in kept(gw).values()) == k


def test_re_registering_an_engine_table_with_changed_values_reloads() -> None:
    frame = unit_frame({u: 2 for u in range(1, 20)})
    gw = gateway()
    gw.engine.load_frame("raw_units", frame)
    meta = dataset("raw_units", UNIT_COLUMNS, k=3)
    gw.register(meta)
    version = gw.version("d")
    changed = frame.copy()
    changed["amt"] = 99.0
    gw.engine.load_frame("raw_units", changed)
    gw.register(meta)
    assert rows(gw, 'SELECT min(amt) FROM "bnd__d__t"') == [(99.0,)]
    assert gw.version("d") != version


def test_two_datasets_over_one_source_are_separate(tmp_path: Path) -> None:
    src = tmp_path / "u.csv"
    unit_frame({u: 5 for u in range(1, 20)}).to_csv(src, index=False)
    gw = gateway()
    gw.register(dataset(src, UNIT_COLUMNS, k=2, name="small"))
    gw.register(dataset(src, UNIT_COLUMNS, k=5, name="large"))
    assert sum(len(t) for t in kept(gw, "small").values()) == 19 * 2
    assert sum(len(t) for t in kept(gw, "large").values()) == 19 * 5
    assert gw.version("small") != gw.version("large")


def test_the_query_path_runs_selects_only() -> None:
    """Read-only by construction: a statement that writes, attaches or sets is refused by the engine
    itself, whatever builds it (a guard against a planner bug)."""
    import sqlglot

    from gateway.engines.duckdb import EngineError
    from tests.conftest import make_gateway

    gw = make_gateway()
    for sql in ("DROP TABLE tx", "INSERT INTO tx VALUES (1)", "ATTACH 'x.db'", "SET threads = 1",
                "COPY tx TO 'out.csv'", "CREATE TABLE t AS SELECT 1"):  # fmt: skip
        with pytest.raises(EngineError):
            gw.engine.execute(sqlglot.parse_one(sql, read="duckdb"))
    assert gw.engine.execute(sqlglot.parse_one("SELECT 1 AS one"))[0][0] == 1
