"""DuckDB's version files: written once by the process that registers a table version, renamed into
place whole, then only ever attached READ_ONLY — so that several processes read one data directory
(DuckDB allows one read-write process or many read-only ones on a file, not both)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pytest

from gateway.core import Gateway
from gateway.engines.duckdb import DuckDBEngine
from gateway.errors import InvalidMetadata
from tests.conftest import BANK, bank_frames

ROOT = Path(__file__).resolve().parents[2]
KEY = "store-test-key"


def _files(tmp_path: Path) -> dict[str, Any]:
    """BANK with its tables as Parquet files (other processes read them too)."""
    meta = copy.deepcopy(BANK)
    for name, frame in bank_frames(n_customers=80).items():
        path = tmp_path / f"{name}.parquet"
        frame.to_parquet(path)
        for table in meta["tables"].values():
            if table["source"] == name:
                table["source"] = str(path)
    return meta


def _versions(store: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(store.glob("*.duckdb"))}


def _exact(engine: DuckDBEngine, sql: str) -> Any:
    return engine._con.execute(sql).fetchall()


@pytest.fixture
def meta(tmp_path: Path) -> dict[str, Any]:
    return _files(tmp_path)


def test_a_version_is_one_file_per_table_attached_read_only(tmp_path: Path, meta: dict[str, Any]) -> None:
    engine = DuckDBEngine(tmp_path / "engine.duckdb", seed=KEY)
    gw = Gateway(engine)
    gw.register(meta)
    store = tmp_path / "duckdb"
    assert sorted(p.name.split("__")[1] for p in store.glob("*.duckdb")) == sorted(meta["tables"])
    assert not list(store.glob("*.tmp"))
    assert not (tmp_path / "engine.duckdb").exists()  # no read-write engine file any more
    attached = engine._con.execute("SELECT database_name, readonly FROM duckdb_databases() WHERE database_name LIKE 'v\\_%' ESCAPE '\\'").fetchall()
    assert len(attached) == len(meta["tables"]) and all(ro for _, ro in attached)
    with pytest.raises(duckdb.Error):  # the query connection cannot write a version file
        engine._con.execute(f'CREATE TABLE "{attached[0][0]}".main.x AS SELECT 1')
    # the same bounded rows as the in-memory engine keeps (same key: same rows)
    memory = DuckDBEngine(None, seed=KEY)
    Gateway(memory).register(meta)
    q = "SELECT count(*), round(sum(amount), 4), count(DISTINCT cid) FROM bnd__bank__tx"
    assert _exact(engine, q) == _exact(memory, q)
    answer = gw.query("bank", "SELECT COUNT(*) AS n FROM tx", epsilon=1)
    assert answer.columns == ["n"] and len(answer.rows) == 1


def test_another_process_reads_the_same_files_at_the_same_time(tmp_path: Path, meta: dict[str, Any]) -> None:
    """A second process registering the same version finds the files (written once) and answers from
    them while the first still has them open: read-only attachments do not conflict."""
    engine = DuckDBEngine(tmp_path / "engine.duckdb", seed=KEY)
    gw = Gateway(engine)
    gw.register(meta)
    before = _versions(tmp_path / "duckdb")
    script = textwrap.dedent(f"""
        import json, sys
        from gateway.core import Gateway
        from gateway.engines.duckdb import DuckDBEngine
        engine = DuckDBEngine({str(tmp_path / "engine.duckdb")!r}, seed={KEY!r})
        gw = Gateway(engine)
        gw.register(json.loads(sys.stdin.read()))
        rows = engine._con.execute("SELECT count(*), round(sum(amount), 4) FROM bnd__bank__tx").fetchall()
        print(json.dumps({{"version": gw.version("bank"), "rows": [list(r) for r in rows]}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(meta), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    assert theirs["version"] == gw.version("bank")
    assert theirs["rows"] == [list(r) for r in _exact(engine, "SELECT count(*), round(sum(amount), 4) FROM bnd__bank__tx")]
    assert _versions(tmp_path / "duckdb") == before  # nothing rewritten
    assert gw.query("bank", "SELECT COUNT(*) AS n FROM tx", epsilon=1).rows  # and this one still reads


def test_a_new_version_is_a_new_file_and_the_old_one_stays(tmp_path: Path, meta: dict[str, Any]) -> None:
    engine = DuckDBEngine(tmp_path / "engine.duckdb", seed=KEY)
    gw = Gateway(engine)
    gw.register(meta)
    v1, files1 = gw.version("bank"), _versions(tmp_path / "duckdb")
    k5 = _exact(engine, "SELECT max(n) FROM (SELECT count(*) AS n FROM bnd__bank__tx GROUP BY cid)")[0][0]
    assert k5 <= 5
    changed = copy.deepcopy(meta)
    changed["tables"]["tx"]["max_rows_per_unit"] = 2
    gw.register(changed)
    assert gw.version("bank") != v1
    files2 = _versions(tmp_path / "duckdb")
    assert all(files2[name] == stamp for name, stamp in files1.items())  # immutable: never rewritten
    assert len(files2) == 2 * len(files1)  # the fingerprint is the dataset's: every table is a new version
    assert _exact(engine, "SELECT max(n) FROM (SELECT count(*) AS n FROM bnd__bank__tx GROUP BY cid)")[0][0] <= 2
    gw.register(meta)  # back to the first version: its files are attached again, not written
    assert _versions(tmp_path / "duckdb") == files2 and gw.version("bank") == v1


def test_a_failed_registration_leaves_no_file_and_the_old_version_serves(tmp_path: Path, meta: dict[str, Any]) -> None:
    engine = DuckDBEngine(tmp_path / "engine.duckdb", seed=KEY)
    gw = Gateway(engine)
    gw.register(meta)
    before = _versions(tmp_path / "duckdb")
    rows = _exact(engine, "SELECT count(*) FROM bnd__bank__tx")
    bad = copy.deepcopy(meta)
    bad["tables"]["tx"]["columns"]["cat"] = {"type": "int", "lower": 0, "upper": 3}  # text is not an int
    with pytest.raises(InvalidMetadata, match="column cat is not int"):
        gw.register(bad)
    store = tmp_path / "duckdb"
    assert _versions(store) == before and not list(store.glob(".*.tmp")) and not list(store.glob("*.wal"))
    assert _exact(engine, "SELECT count(*) FROM bnd__bank__tx") == rows


def test_a_damaged_version_file_is_written_again(tmp_path: Path, meta: dict[str, Any]) -> None:
    first = DuckDBEngine(tmp_path / "engine.duckdb", seed=KEY)
    Gateway(first).register(meta)
    want = _exact(first, "SELECT count(*), round(sum(amount), 4) FROM bnd__bank__tx")
    first.close()
    [tx] = (tmp_path / "duckdb").glob("bank__tx__*.duckdb")
    tx.write_bytes(b"not a database")
    (tmp_path / "duckdb" / f".{tx.stem}.999.deadbeef.tmp").write_bytes(b"a writer that died")  # ignored
    engine = DuckDBEngine(tmp_path / "engine.duckdb", seed=KEY)
    Gateway(engine).register(meta)
    assert _exact(engine, "SELECT count(*), round(sum(amount), 4) FROM bnd__bank__tx") == want


def test_tables_of_an_earlier_engine_file_are_read_as_sources(tmp_path: Path) -> None:
    """Data directories of earlier releases kept loaded tables in engine.duckdb: it is attached
    read-only, so a source naming one of its tables still registers; the file is not written."""
    legacy = tmp_path / "engine.duckdb"
    con = duckdb.connect(str(legacy))
    for name, frame in bank_frames(n_customers=40).items():
        con.register("f", frame)
        con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM f')
        con.unregister("f")
    rows = con.execute("SELECT count(*) FROM raw_tx").fetchall()
    con.close()
    stamp = legacy.stat().st_mtime_ns
    engine = DuckDBEngine(legacy, seed=KEY)
    Gateway(engine).register(copy.deepcopy(BANK))
    assert _exact(engine, "SELECT count(*) FROM src__bank__tx") == rows
    assert legacy.stat().st_mtime_ns == stamp
