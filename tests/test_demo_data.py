"""The demo data: synthetic card transactions, the three real data sets, and their catalog entries."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import pathlib
import time

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from gateway import demo_data
from gateway.catalog import parse_dataset
from gateway.core import Gateway
from gateway.demo_data import (
    demo_datasets,
    generate_transactions,
    load_candlesticks,
    load_card_customers,
    load_loans,
    write_transactions,
)
from gateway.engines.duckdb import DuckDBEngine

SMALL = 50_000

EXPECTED_SCHEMA = pa.schema(
    [
        ("transaction_id", pa.int64()),
        ("customer_id", pa.int64()),
        ("ts", pa.timestamp("us")),
        ("amount", pa.float64()),
        ("merchant_category", pa.string()),
        ("channel", pa.string()),
        ("country", pa.string()),
        ("distance_km", pa.float64()),
        ("is_fraud", pa.bool_()),
    ]
)


@pytest.fixture(scope="module")
def tx() -> pa.Table:
    return generate_transactions(SMALL, seed=7)


@pytest.fixture(scope="module")
def tx_frame(tx: pa.Table) -> pd.DataFrame:
    return tx.to_pandas()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, list[dict]]:
    data_dir = tmp_path_factory.mktemp("data")
    return data_dir, demo_datasets(data_dir, transactions_rows=SMALL)


# --- generate_transactions ---------------------------------------------------------------------


def test_same_seed_same_table_different_seed_different(tx: pa.Table) -> None:
    assert generate_transactions(SMALL, seed=7).equals(tx)
    other = generate_transactions(SMALL, seed=8)
    assert other.num_rows == SMALL
    assert not other.equals(tx)
    assert not np.array_equal(other.column("amount").to_numpy(), tx.column("amount").to_numpy())


def test_columns_and_types(tx: pa.Table) -> None:
    assert tx.schema.remove_metadata() == EXPECTED_SCHEMA
    assert tx.num_rows == SMALL
    assert sum(c.null_count for c in tx.columns) == 0
    con = duckdb.connect()
    con.register("t", tx)
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE t)").fetchall())
    assert types == {
        "transaction_id": "BIGINT", "customer_id": "BIGINT", "ts": "TIMESTAMP", "amount": "DOUBLE",
        "merchant_category": "VARCHAR", "channel": "VARCHAR", "country": "VARCHAR",
        "distance_km": "DOUBLE", "is_fraud": "BOOLEAN",
    }


def test_values_in_their_domains(tx_frame: pd.DataFrame) -> None:
    df = tx_frame
    assert df["transaction_id"].is_unique
    assert df["transaction_id"].min() == 1 and df["transaction_id"].max() == SMALL
    assert df["ts"].is_monotonic_increasing  # ids follow time
    assert df["customer_id"].between(1, 10_000).all()
    assert df["ts"].min() >= pd.Timestamp(demo_data.TS_LOWER)
    assert df["ts"].max() <= pd.Timestamp(demo_data.TS_UPPER)
    amount = df["amount"].to_numpy()
    assert (amount > 0).all() and amount.max() <= 20_000
    np.testing.assert_allclose(np.round(amount * 100), amount * 100, atol=1e-6)  # cents
    assert (amount < 2_000).mean() > 0.99
    assert df["distance_km"].between(0, 20_000).all()
    assert set(df["merchant_category"]) <= set(demo_data.MERCHANT_CATEGORIES)
    assert set(df["channel"]) == set(demo_data.CHANNELS)
    assert set(df["country"]) <= set(demo_data.COUNTRIES)
    # ATM is the channel of cash withdrawals.
    assert ((df["channel"] == "atm") == (df["merchant_category"] == "cash_withdrawal")).all()
    # Grocery is common and jewelry rare.
    shares = df["merchant_category"].value_counts(normalize=True)
    assert shares["grocery"] > 0.15 and shares["jewelry"] < 0.02


def test_home_country_dominates(tx_frame: pd.DataFrame) -> None:
    pairs = tx_frame.groupby(["customer_id", "country"]).size()
    n = pairs.groupby(level="customer_id").sum()
    top_share = pairs.groupby(level="customer_id").max() / n
    assert top_share[n >= 20].mean() > 0.9


def test_fraud_rate_and_patterns(tx_frame: pd.DataFrame) -> None:
    df = tx_frame
    rate = df["is_fraud"].mean()
    assert 0.005 <= rate <= 0.015
    night = df["ts"].dt.hour < 5
    assert df.loc[night, "is_fraud"].mean() > 3 * rate
    far = df["distance_km"] > 1_000
    assert df.loc[far, "is_fraud"].mean() > 2 * rate
    high = df["amount"] > df["amount"].quantile(0.95)
    assert df.loc[high, "is_fraud"].mean() > 1.5 * rate
    risky = df["merchant_category"].isin(["electronics", "jewelry", "gambling"])
    assert df.loc[risky, "is_fraud"].mean() > 3 * rate
    # ...but not trivially: most frauds happen by day, and most are domestic.
    assert df.loc[df["is_fraud"], "ts"].dt.hour.ge(5).mean() > 0.5
    assert df.loc[df["is_fraud"], "distance_km"].lt(1_000).mean() > 0.5


def test_frauds_come_in_bursts(tx_frame: pd.DataFrame) -> None:
    fraud = tx_frame[tx_frame["is_fraud"]].sort_values(["customer_id", "ts"])
    same = fraud["customer_id"].eq(fraud["customer_id"].shift())
    gap = fraud["ts"].diff()[same]
    # Most frauds follow another fraud of the same customer within a few hours.
    assert same.mean() > 0.6
    assert (gap < pd.Timedelta(hours=6)).mean() > 0.8


def test_heavy_tail_of_transactions_per_customer() -> None:
    t = generate_transactions(100_000, customers=1_000, seed=1)
    counts = np.bincount(t.column("customer_id").to_numpy())[1:]
    assert len(counts) == 1_000
    median = np.median(counts)
    assert counts.max() > 10 * median
    assert 20 <= median <= 99  # most customers have tens of rows
    q95 = np.percentile(counts, 95)
    assert q95 / 2 < demo_data.TRANSACTIONS_MAX_ROWS_PER_UNIT < np.percentile(counts, 99) * 1.5


def test_default_customers_and_explicit_customers() -> None:
    t = generate_transactions(5_000, seed=1)
    assert pc.max(t.column("customer_id")).as_py() <= 10_000
    t = generate_transactions(5_000, customers=50, seed=1)
    ids = t.column("customer_id").to_numpy()
    assert ids.min() >= 1 and ids.max() <= 50
    t = generate_transactions(1, seed=1)
    assert t.num_rows == 1
    with pytest.raises(ValueError):
        generate_transactions(0)


def test_write_transactions_round_trip(tmp_path: pathlib.Path, tx: pa.Table) -> None:
    path = write_transactions(tmp_path / "sub" / "tx.parquet", SMALL, seed=7)
    back = pq.read_table(path)
    assert back.replace_schema_metadata(None).equals(tx.replace_schema_metadata(None))
    assert [p.name for p in path.parent.iterdir()] == ["tx.parquet"]  # no temporary left behind


@pytest.mark.slow
def test_ten_million_rows_under_a_minute(tmp_path: pathlib.Path) -> None:
    start = time.perf_counter()
    path = write_transactions(tmp_path / "tx.parquet", 10_000_000, seed=7)
    elapsed = time.perf_counter() - start
    assert pq.read_metadata(path).num_rows == 10_000_000
    assert elapsed < 60, elapsed


# --- the real data sets ------------------------------------------------------------------------


def test_load_loans() -> None:
    df = load_loans()
    assert len(df) == 10_000
    assert list(df.columns) == ["borrower_id", *demo_data.LOANS_COLUMNS]
    assert df["borrower_id"].dtype == np.int64
    assert df["borrower_id"].tolist() == list(range(1, 10_001))
    for col in ("grade", "sub_grade", "state", "loan_status", "homeownership"):
        assert df[col].dtype == "str", col
        assert not isinstance(df[col].dtype, pd.CategoricalDtype)
    assert df["emp_length"].dtype == "Int64" and df["emp_length"].isna().any()
    assert df["loan_amount"].dtype == np.int64 and df["interest_rate"].dtype == np.float64
    assert set(df["term"]) == {36, 60}


def test_load_card_customers_keeps_text() -> None:
    df = load_card_customers()
    assert list(df.columns) == list(demo_data.CARD_CUSTOMERS_COLUMNS)
    assert df["customer_id"].tolist() == list(range(1, 10_001))
    for col in ("default", "student"):
        assert df[col].dtype == "str"
        assert set(df[col]) == {"Yes", "No"}
    assert df["balance"].dtype == np.float64 and df["income"].dtype == np.float64


# --- the catalog entries -------------------------------------------------------------------------

TYPES = {"id", "int", "float", "category", "date", "bool"}


def test_catalog_shape(demo: tuple[pathlib.Path, list[dict]]) -> None:
    data_dir, entries = demo
    assert json.loads(json.dumps(entries)) == entries  # plain JSON
    by_name = {e["name"]: e for e in entries}
    assert set(by_name) == {"lending", "cards", "candlesticks"}
    assert by_name["lending"]["privacy_unit"] == "borrower_id"
    assert by_name["cards"]["privacy_unit"] == "customer_id"
    assert by_name["candlesticks"]["privacy_unit"] == "window_id"
    assert set(by_name["lending"]["tables"]) == {"loans"}
    assert set(by_name["cards"]["tables"]) == {"card_customers", "transactions", "card_applicants", "merchant_sectors"}
    assert set(by_name["candlesticks"]["tables"]) == {"windows", "windows_public"}
    assert by_name["lending"]["tables"]["loans"]["max_rows_per_unit"] == 1
    assert by_name["cards"]["tables"]["card_customers"]["max_rows_per_unit"] == 1
    assert by_name["cards"]["tables"]["transactions"]["max_rows_per_unit"] == (
        demo_data.TRANSACTIONS_MAX_ROWS_PER_UNIT
    )
    for entry in entries:
        assert set(entry) == {"name", "privacy_unit", "budget", "tables"}
        assert set(entry["budget"]) == {"epsilon", "delta"}
        assert entry["budget"]["epsilon"] > 0 and 0 <= entry["budget"]["delta"] < 1
        for name, table in entry["tables"].items():
            keys = {"source", "max_rows_per_unit", "public", "columns"}
            assert set(table) == (keys | {"image"} if entry["name"] == "candlesticks" else keys)
            assert table["public"] is (name in ("windows_public", "card_applicants", "merchant_sectors"))
            assert isinstance(table["max_rows_per_unit"], int) and table["max_rows_per_unit"] >= 1
            source = pathlib.Path(table["source"])
            assert source.is_absolute() and source.is_file()
            assert source.parent == data_dir.resolve() / "demo"
            if not table["public"] or entry["privacy_unit"] in table["columns"]:  # public rows need no unit
                assert table["columns"][entry["privacy_unit"]] == {"type": "id"}
            for spec in table["columns"].values():
                assert spec["type"] in TYPES
                assert set(spec) <= {"type", "lower", "upper", "categories", "nullable"}
                if spec["type"] in ("int", "float"):
                    assert spec["lower"] < spec["upper"]
                    assert all(math.isfinite(spec[k]) for k in ("lower", "upper"))
                if spec["type"] == "int":
                    assert all(isinstance(spec[k], int) for k in ("lower", "upper"))
                if spec["type"] == "category":
                    cats = spec["categories"]
                    assert cats and len(set(cats)) == len(cats)
                if spec["type"] == "date":
                    lo = dt.datetime.fromisoformat(spec["lower"])
                    hi = dt.datetime.fromisoformat(spec["upper"])
                    assert lo < hi
                if "nullable" in spec:
                    assert spec["nullable"] is True


def _tables(entries: list[dict]):
    for entry in entries:
        for name, table in entry["tables"].items():
            yield name, table, pq.read_table(table["source"])


def test_every_column_declared_and_values_in_their_domain(demo: tuple[pathlib.Path, list[dict]]) -> None:
    _, entries = demo
    for name, table, data in _tables(entries):
        assert set(table["columns"]) == set(data.column_names), name
        for col, spec in table["columns"].items():
            values = data.column(col)
            has_nulls = values.null_count > 0
            assert has_nulls <= spec.get("nullable", False), (name, col)
            kind = spec["type"]
            if kind == "id":
                assert pa.types.is_integer(values.type), (name, col)
                assert values.null_count == 0
            elif kind == "category":
                present = set(pc.unique(values.drop_null()).to_pylist())
                assert present <= set(spec["categories"]), (name, col, present - set(spec["categories"]))
            elif kind == "int":
                assert pa.types.is_integer(values.type), (name, col)
            elif kind == "float":
                assert pa.types.is_floating(values.type), (name, col)
            elif kind == "date":
                assert pa.types.is_timestamp(values.type), (name, col)
                lo, hi = pc.min_max(values).values()
                assert lo.as_py() >= dt.datetime.fromisoformat(spec["lower"])
                assert hi.as_py() <= dt.datetime.fromisoformat(spec["upper"])
            elif kind == "bool":
                assert pa.types.is_boolean(values.type), (name, col)
        ids = [c for c, s in table["columns"].items() if s["type"] == "id"]
        if not ids:
            assert table["public"], name  # a public lookup holds no customer
            continue
        unit_ids = data.column(ids[0])
        assert pc.min(unit_ids).as_py() >= 1


def test_demo_tables_match_loaders(demo: tuple[pathlib.Path, list[dict]]) -> None:
    _, entries = demo
    tables = {name: data for name, _, data in _tables(entries)}
    customers = tables["card_customers"]
    assert customers.schema.field("default").type == pa.string()
    assert customers.schema.field("student").type == pa.string()
    assert set(customers.column("student").to_pylist()) == {"Yes", "No"}
    assert tables["loans"].num_rows == 10_000 and customers.num_rows == 10_000
    assert tables["transactions"].num_rows == SMALL
    expected = generate_transactions(SMALL, seed=7)
    assert tables["transactions"].replace_schema_metadata(None).equals(expected.replace_schema_metadata(None))


def test_second_call_is_idempotent(demo: tuple[pathlib.Path, list[dict]]) -> None:
    data_dir, entries = demo
    sources = [pathlib.Path(t["source"]) for e in entries for t in e["tables"].values()]
    stamps = {p: os.stat(p).st_mtime_ns for p in sources}
    assert demo_datasets(data_dir, transactions_rows=SMALL) == entries
    assert {p: os.stat(p).st_mtime_ns for p in sources} == stamps
    assert sorted(p.name for p in (data_dir / "demo").iterdir()) == sorted(p.name for p in sources)


def test_changed_rows_rewrite_only_transactions(tmp_path: pathlib.Path) -> None:
    demo_datasets(tmp_path, transactions_rows=2_000)
    demo_dir = tmp_path / "demo"
    loans = demo_dir / "loans.parquet"
    tx = demo_dir / "transactions.parquet"
    loans_stamp = os.stat(loans).st_mtime_ns
    demo_datasets(tmp_path, transactions_rows=3_000)
    assert pq.read_metadata(tx).num_rows == 3_000
    assert os.stat(loans).st_mtime_ns == loans_stamp
    # A damaged file is replaced.
    tx.write_bytes(b"not parquet")
    demo_datasets(tmp_path, transactions_rows=3_000)
    assert pq.read_metadata(tx).num_rows == 3_000


# --- the candlesticks images ----------------------------------------------------------------------


def test_candlesticks_tables(demo: tuple[pathlib.Path, list[dict]]) -> None:
    from training.vision.candlesticks import feature_columns, load_sp500
    from training.vision.gaf import encode_candles
    from training.vision.patterns import CLASSES, detect

    _, entries = demo
    entry = next(e for e in entries if e["name"] == "candlesticks")
    parse_dataset(entry)  # the image metadata is valid
    tables = {name: pq.read_table(t["source"]).to_pandas() for name, t in entry["tables"].items()}
    private, public = tables["windows"], tables["windows_public"]
    pixels = feature_columns(10)
    assert list(private.columns) == ["window_id", "end_date", "label", *pixels]
    assert list(public.columns) == ["window_id", "end_date", "label", *pixels]  # public labels: the rules on public prices
    assert (len(private), len(public)) == (1384, 883)
    assert private["label"].value_counts().to_dict() == {
        "bearish_engulfing": 288, "bearish_harami": 261, "bullish_engulfing": 228, "shooting_star": 194,
        "bullish_harami": 189, "inverted_hammer": 137, "evening_star": 55, "morning_star": 32,
    }  # fmt: skip
    assert entry["tables"]["windows"]["columns"]["label"]["categories"] == list(CLASSES)
    assert entry["tables"]["windows_public"]["columns"]["label"] == entry["tables"]["windows"]["columns"]["label"]
    for frame in (private, public):
        assert frame["window_id"].is_unique and frame["window_id"].is_monotonic_increasing
        values = frame[pixels].to_numpy()
        assert values.dtype == np.float32 and values.min() >= -1 and values.max() <= 1
    # disjoint periods: no trading day lies in a public window and a private one
    cut = pd.Timestamp(demo_data.CANDLESTICKS_CUT)
    assert public["end_date"].max() < cut <= private["end_date"].min()
    assert public["window_id"].max() < private["window_id"].min() - 9
    # the rows are the S&P 500 windows they claim, with their labels
    days = load_sp500()
    ohlc = days[["open", "high", "low", "close"]].to_numpy()
    for frame in (private.iloc[::97], public.iloc[::97]):
        for _, row in frame.iterrows():
            wid = int(row["window_id"])
            assert days["date"].iloc[wid] == row["end_date"]
            window = ohlc[wid - 9 : wid + 1]
            np.testing.assert_allclose(
                row[pixels].to_numpy(np.float64).reshape(10, 10, 4), encode_candles(window[None])[0], atol=1e-6
            )
            if "label" in row:
                assert detect(window) == row["label"]
    assert load_candlesticks()[0].equals(private)


def test_candlesticks_registers_and_answers_private_sql(demo: tuple[pathlib.Path, list[dict]]) -> None:
    _, entries = demo
    entry = next(e for e in entries if e["name"] == "candlesticks")
    gw = Gateway(DuckDBEngine(None, seed="test-seed"))
    meta = gw.register(entry)  # about 2 s for 400 bounded columns (a speed figure: bench/, not a test)
    assert meta.tables["windows"].image is not None and meta.tables["windows"].image.window == 10
    answer = gw.query("candlesticks", "SELECT label, COUNT(*) AS n FROM windows GROUP BY label", epsilon=1)
    assert answer.columns == ["label", "n"]
    counts = dict((label, n) for label, n in answer.rows)
    assert set(counts) <= set(entry["tables"]["windows"]["columns"]["label"]["categories"])
    assert 1200 < sum(counts.values()) < 1600  # 1,384 windows, plus noise
    mean = gw.query("candlesticks", "SELECT AVG(gaf_0_0_close) AS m FROM windows", epsilon=1)
    assert -1 <= mean.rows[0][0] <= 1


def test_card_applicants_are_public_unlabelled_credit_rows(demo: tuple[pathlib.Path, list[dict]]) -> None:
    """PATE's student inputs for credit models: ISLR::Credit's 400 people on card_customers' features."""
    _, entries = demo
    table = {e["name"]: e for e in entries}["cards"]["tables"]["card_applicants"]
    assert table["public"] is True and "default" not in table["columns"]
    frame = pd.read_parquet(table["source"])
    assert len(frame) == 400 and set(frame.columns) == set(table["columns"])
    assert set(frame["student"]) == {"Yes", "No"}
    assert frame["income"].between(10_000, 200_000).all() and frame["balance"].between(0, 3_000).all()
