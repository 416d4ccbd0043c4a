"""Disjoint teacher partitions of the private table, by privacy unit.

Every row goes to the teacher ``H_key(unit) mod n_teachers``, where H_key is keyed BLAKE2b (64-bit
digest) of a canonical encoding of the unit id. So:

* all rows of one privacy unit land on the same teacher (the partition is disjoint *by unit*), which is
  what makes the PATE guarantee user-level: adding, removing or changing one unit's rows changes the
  training data of one teacher only, hence at most one teacher's vote on each student query;
* a unit's teacher depends only on its own id and the key, never on which other units are present. A
  data-dependent balancing (sort units, deal them round-robin) would be tighter, but inserting one unit
  would shift every later unit to another teacher and the per-query sensitivity would no longer be one
  vote. Hashing gives balance in expectation: each teacher holds Binomial(units, 1/n_teachers) units
  (64-bit digests make the modulo bias < n_teachers/2**64).

The key need not be secret for the privacy guarantee (any partition fixed independently of the data
works); it must be chosen without looking at the data, and keeping it fixed makes the partition
reproducible. Keep it secret anyway if teachers' partitions should not be predictable from unit ids.
"""

from __future__ import annotations

import hashlib
import numbers
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["partition_units", "unit_token"]

_DIGEST_BYTES = 8


def unit_token(unit: Any) -> bytes:
    """The canonical bytes hashed for one unit id: ints (any width) by value, str as UTF-8, bytes as is.

    Type-tagged, so ``1`` and ``"1"`` are different units; ``np.int64(7)`` and ``7`` are the same.
    Floats, bools, None and other types raise ValueError: a unit id must be an exact identifier.
    """
    if isinstance(unit, (bool, np.bool_)):
        raise ValueError("a privacy unit id must be an int, str or bytes, not a bool")
    if isinstance(unit, numbers.Integral):
        return b"i:" + str(int(unit)).encode("ascii")
    if isinstance(unit, str):
        return b"s:" + unit.encode("utf-8")
    if isinstance(unit, (bytes, bytearray, memoryview)):
        return b"b:" + bytes(unit)
    raise ValueError(f"a privacy unit id must be an int, str or bytes, not {type(unit).__name__}")


def _teacher(token: bytes, n_teachers: int, key: bytes) -> int:
    digest = hashlib.blake2b(token, digest_size=_DIGEST_BYTES, key=key, person=b"dpgate-pate").digest()
    return int.from_bytes(digest, "big") % n_teachers


def partition_units(unit_ids: Any, n_teachers: int, *, key: bytes) -> np.ndarray:
    """The teacher index (int64 in ``[0, n_teachers)``) of every row, from the row's privacy unit id.

    `unit_ids`: one id per row (array-like of ints, strs or bytes; missing ids raise ValueError).
    `key`: 1 to 64 bytes, fixed before the data is seen (see the module docstring).
    Each distinct unit is hashed once, so the cost is O(rows + units).
    """
    if isinstance(n_teachers, bool) or not isinstance(n_teachers, numbers.Integral) or n_teachers < 1:
        raise ValueError("n_teachers must be a positive integer")
    if not isinstance(key, bytes) or not 1 <= len(key) <= 64:
        raise ValueError("key must be 1 to 64 bytes")
    if isinstance(unit_ids, (pd.Series, pd.Index)):
        ids = unit_ids.to_numpy()
    elif isinstance(unit_ids, np.ndarray):
        ids = unit_ids
    else:
        # dtype=object: numpy would otherwise coerce [1, "1"] to two equal strings
        ids = np.asarray(list(unit_ids), dtype=object)
    if ids.ndim != 1:
        raise ValueError("unit_ids must be one-dimensional (one id per row)")
    if ids.dtype.kind in "fcb" or (
        ids.dtype.kind == "O" and any(isinstance(u, (bool, np.bool_, float, np.floating)) for u in ids)
    ):
        # 1, 1.0 and True hash alike in pandas: refuse rather than merge units silently
        raise ValueError("privacy unit ids must be ints, strs or bytes, not floats or bools")
    codes, uniques = pd.factorize(ids, use_na_sentinel=True)
    if np.any(codes < 0):
        raise ValueError("unit_ids contain missing values")
    teachers = np.fromiter(
        (_teacher(unit_token(u), int(n_teachers), key) for u in uniques),
        dtype=np.int64,
        count=len(uniques),
    )
    return teachers[codes] if len(codes) else np.zeros(0, dtype=np.int64)
