"""Held-out splits and per-unit row selection by a keyed hash of the privacy unit.

A unit's side of the split is a function of (secret key, unit id) alone, so a unit is wholly in the
training part or wholly in the held-out part, and adding or removing a unit moves no other unit: both
parts are stable transformations of the data (a neighbouring dataset changes each part by at most the
one unit's rows). The key is secret so that nobody can choose ids to land in one part. Without a
privacy unit (row-level datasets) a row's side is the keyed hash of its content.

The hash is pandas' keyed SipHash-2-4 (``hash_pandas_object(..., hash_key=...)``): vectorised, and a
PRF under its 128-bit key. This is a data split, not noise.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["SplitKey", "group_units", "keep_rows_per_unit", "per_unit_and_class"]

_BUCKETS = 1_000_000


class SplitKey:
    """A 16-character secret, kept in a file (created on first use, mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.value = self._load_or_create()

    def _load_or_create(self) -> str:
        if self.path.exists():
            value = self.path.read_text().strip()
            if len(value) == 16:
                return value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(8)
        # several processes (gateway replicas, workers) may create it at once: each writes its own
        # temporary file and links it into place, which fails if another got there first; all then
        # read the one key that won
        tmp = self.path.with_suffix(f".{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            current = self.path.read_text().strip()
            if len(current) == 16:
                return current
            os.replace(tmp, self.path)  # not a key (a damaged file): replace it
        finally:
            tmp.unlink(missing_ok=True)
        return value

    def unit_hash(self, frame: pd.DataFrame, unit: str | None, *, salt: str = "split") -> np.ndarray:
        """uint64 per row: the keyed hash of its unit (or, row-level, of its whole content)."""
        if unit is not None:
            values = frame[unit].astype(str)
            keys = salt + ":" + values
            return pd.util.hash_pandas_object(keys, index=False, hash_key=self.value).to_numpy()
        # row-level: the row's content is its identity (the split is the only use here, so no salt)
        return pd.util.hash_pandas_object(frame, index=False, hash_key=self.value).to_numpy()

    def held_out(self, frame: pd.DataFrame, unit: str | None, *, fraction: float) -> np.ndarray:
        """Boolean mask of the held-out rows: about `fraction` of the units, each with all its rows."""
        h = self.unit_hash(frame, unit, salt="split")
        return (h % _BUCKETS) < int(round(fraction * _BUCKETS))

    def row_rank(
        self, frame: pd.DataFrame, unit: str, *, columns: list[str], also: np.ndarray | None = None
    ) -> np.ndarray:
        """Each row's rank (1, 2, ...) within its unit (and its value of `also`, if given), in the order
        of a keyed hash of its content."""
        content = pd.util.hash_pandas_object(frame[columns], index=False, hash_key=self.value).to_numpy()
        keys = [frame[unit].to_numpy()] if also is None else [frame[unit].to_numpy(), np.asarray(also)]
        ranks = pd.Series(content).groupby(keys).rank(method="first")
        return ranks.to_numpy(dtype=np.int64)


def keep_rows_per_unit(
    frame: pd.DataFrame, unit: str | None, r: int, key: SplitKey, columns: list[str]
) -> pd.DataFrame:
    """At most `r` rows of each unit, chosen by the keyed hash of their content (a stable transformation:
    a unit's choice depends on its own rows only)."""
    if unit is None or frame.empty:
        return frame
    rank = key.row_rank(frame, unit, columns=columns)
    return frame.loc[rank <= r].reset_index(drop=True)


def per_unit_and_class(
    frame: pd.DataFrame, unit: str | None, y: np.ndarray, r: int, key: SplitKey
) -> np.ndarray:
    """Mask of at most `r` rows of each class (y) in each unit, by keyed hash (stable, per unit)."""
    if unit is None or frame.empty:
        return np.ones(len(frame), dtype=bool)
    return key.row_rank(frame, unit, columns=list(frame.columns), also=y) <= r


def group_units(units: np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(order, starts, lengths)``: row indices sorted by unit, and each unit's slice of that order."""
    codes, _ = pd.factorize(pd.Series(units), use_na_sentinel=False)
    order = np.argsort(codes, kind="stable")
    lengths = np.bincount(codes) if len(codes) else np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else np.zeros(0, dtype=np.int64)
    return order, starts.astype(np.int64), lengths.astype(np.int64)
