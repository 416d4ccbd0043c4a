"""Helpers of the reliability tests, importable by spawned worker processes (unlike conftest).

The figure every concurrency test checks: 200 requests of ε = 0.027 against an allocation of 1.0 →
exactly 37 answered (37 × 0.027 = 0.999, and a 38th would make 1.026), spent exactly 999/1000.
"""
from __future__ import annotations

import http.client
import json
import os
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from budget import BudgetExhausted, Ledger
from gateway.client import ApiError, Client
from mechanisms.cost import Cost

EPSILON = "0.027"
LIMIT = "1.0"
REQUESTS = 200
EXPECTED = 37  # floor(1.0 / 0.027)
SPENT = Fraction(999, 1000)  # 37 × 0.027, exactly
PG_URL = os.environ.get("DPGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1/test")


def unique(prefix: str) -> str:
    """A name (an identifier, so also a valid dataset name) no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def write_table(path: Path, rows: int = 5_000, seed: int = 0) -> Path:
    """A small synthetic transactions table: test data, not noise (noise only ever comes from OpenDP)."""
    rng = np.random.default_rng(seed)
    pd.DataFrame(
        {
            "cid": rng.integers(0, max(rows // 5, 1), rows),
            "amount": rng.exponential(100, rows).round(2),
            "cat": rng.choice(["a", "b", "c", "d"], rows),
        }
    ).to_parquet(path)
    return path


def dataset_meta(name: str, source: Path, *, epsilon: float = 1000.0, delta: float = 1e-5) -> dict[str, Any]:
    return {
        "name": name,
        "privacy_unit": "cid",
        "budget": {"epsilon": epsilon, "delta": delta},
        "tables": {
            "tx": {
                "source": str(source),
                "max_rows_per_unit": 10,
                "columns": {
                    "cid": {"type": "id"},
                    "amount": {"type": "float", "lower": 0, "upper": 1000},
                    "cat": {"type": "category", "categories": ["a", "b", "c", "d"]},
                },
            }
        },
    }


def sql(i: int) -> str:
    """The i-th of distinct SQL texts (so none is answered from the free-repeat store)."""
    return f"SELECT COUNT(*) AS n FROM tx WHERE amount > {i}"


def exact_units(entries: list[dict[str, Any]]) -> Fraction:
    """The exact sum of the entries' ε (entries carry ε rounded up to the ledger's 1e-12 unit, which the
    shortest float repr gives back exactly)."""
    return sum((Fraction(repr(e["epsilon"])) for e in entries), Fraction(0))


def ask(client: Client, dataset: str, i: int, *, epsilon: str = EPSILON, request_id: str | None = None) -> dict[str, Any] | str:
    """One query; its answer, or the problem's code."""
    try:
        return client.query(dataset, sql(i), epsilon=float(epsilon), request_id=request_id or f"q{i}")
    except ApiError as e:
        return e.code or f"http_{e.status}"


def post_raw(url: str, key: str, body: dict[str, Any], *, timeout: float = 60) -> tuple[int | None, bytes, bool]:
    """POST /v1/queries over a bare connection: (status or None, body bytes received, complete?). A
    server dying under the request gives what came before it died, not an exception."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(
            "POST", "/v1/queries", json.dumps(body), {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        )
        try:
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException):
            return None, b"", False
        try:
            return resp.status, resp.read(), True
        except http.client.IncompleteRead as e:
            return resp.status, e.partial, False
        except (OSError, http.client.HTTPException):
            return resp.status, b"", False
    finally:
        conn.close()


# -- workers of the process-level tests (run in spawned processes) ---------------------------------


def ledger_worker(url: str, analyst: str, dataset: str, ids: list[str], start: Any, out: Any) -> None:
    """Charge ε = 0.027 once per request id, straight into the shared ledger; report (ok, refused)."""
    ledger = Ledger(url)
    try:
        start.wait(timeout=120)
        ok = refused = 0
        for rid in ids:
            try:
                ledger.charge(
                    analyst=analyst, dataset=dataset, cost=Cost.of(EPSILON), kind="query", request_id=rid,
                    detail={"sql": "SELECT COUNT(*) FROM tx"}, result={"rid": rid},
                )  # fmt: skip
                ok += 1
            except BudgetExhausted:
                refused += 1
        out.put(("charged", ok, refused))
    except Exception as exc:  # reported to the parent, which fails the test with it
        out.put(("error", repr(exc)))
    finally:
        ledger.close()


def http_worker(url: str, key: str, dataset: str, first: int, n: int, threads: int, start: Any, out: Any) -> None:
    """Fire queries first..first+n-1 at the server from `threads` threads; report the request ids
    answered and the codes of the refusals."""
    from concurrent.futures import ThreadPoolExecutor

    try:
        client = Client(url, key, timeout=120)
        start.wait(timeout=120)
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda i: ask(client, dataset, i), range(first, first + n)))
        answered = [r["request_id"] for r in results if isinstance(r, dict)]
        out.put(("done", answered, [r for r in results if not isinstance(r, dict)]))
    except Exception as exc:
        out.put(("error", repr(exc)))
