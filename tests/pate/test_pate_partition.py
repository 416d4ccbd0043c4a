"""Teacher partitions: disjoint by privacy unit, roughly balanced, independent of the other units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from training.pate import partition_units

LEVEL = 1e-4
KEY = b"pate-test-key"


def _table(n_units: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, 8, size=n_units)  # 1..7 rows per unit
    units = np.repeat(rng.permutation(10 * n_units)[:n_units] + 1000, rows)
    return pd.DataFrame({"cid": rng.permutation(units)})


def test_all_rows_of_a_unit_go_to_one_teacher() -> None:
    df = _table(5000)
    df["teacher"] = partition_units(df["cid"].to_numpy(), 50, key=KEY)
    assert df["teacher"].between(0, 49).all()
    assert (df.groupby("cid")["teacher"].nunique() == 1).all()


def test_string_units_and_input_types() -> None:
    ids = np.array([f"cust-{i % 300}" for i in range(2000)])
    teachers = partition_units(ids, 7, key=KEY)
    assert (pd.DataFrame({"u": ids, "t": teachers}).groupby("u")["t"].nunique() == 1).all()
    # the same units through a list, a Series or numpy ints: the same teachers
    ints = np.arange(100, dtype=np.int64)
    expected = partition_units(ints, 13, key=KEY)
    assert np.array_equal(partition_units(ints.tolist(), 13, key=KEY), expected)
    assert np.array_equal(partition_units(pd.Series(ints), 13, key=KEY), expected)
    assert np.array_equal(partition_units(ints.astype(np.int32), 13, key=KEY), expected)
    assert partition_units([], 13, key=KEY).shape == (0,)


def test_units_per_teacher_are_balanced() -> None:
    n_units, n_teachers = 50_000, 100
    teachers = partition_units(np.arange(n_units), n_teachers, key=KEY)
    per_teacher = np.bincount(teachers, minlength=n_teachers)
    assert per_teacher.sum() == n_units
    # a keyed hash: units per teacher should look like a uniform multinomial
    assert stats.chisquare(per_teacher).pvalue > LEVEL
    assert per_teacher.min() > 0.8 * n_units / n_teachers
    assert per_teacher.max() < 1.2 * n_units / n_teachers


def test_rows_per_teacher_are_roughly_balanced() -> None:
    df = _table(20_000, seed=1)
    rows = np.bincount(partition_units(df["cid"].to_numpy(), 50, key=KEY), minlength=50)
    mean = len(df) / 50
    assert rows.min() > 0.8 * mean and rows.max() < 1.2 * mean


def test_a_units_teacher_does_not_depend_on_the_other_units() -> None:
    # adding or removing units never moves anyone else: one unit changes one teacher's data only
    units = np.arange(10_000)
    full = partition_units(units, 64, key=KEY)
    subset = units[units % 3 != 0]
    assert np.array_equal(partition_units(subset, 64, key=KEY), full[subset])
    more = np.concatenate([units, np.arange(10_000, 12_000)])
    assert np.array_equal(partition_units(more, 64, key=KEY)[:10_000], full)


def test_keyed_and_deterministic() -> None:
    units = np.arange(2000)
    a = partition_units(units, 50, key=KEY)
    assert np.array_equal(a, partition_units(units, 50, key=KEY))
    b = partition_units(units, 50, key=b"another key")
    assert np.mean(a == b) < 0.1  # about 1/50 agree by chance


@pytest.mark.parametrize(
    "ids",
    [[1.0, 2.0], np.array([1.5, 2.5]), [True, False], [1, True], [1, None], [1, 2.0], np.zeros((2, 2), dtype=int)],
)
def test_bad_unit_ids_raise(ids: object) -> None:
    with pytest.raises(ValueError):
        partition_units(ids, 5, key=KEY)


@pytest.mark.parametrize("n_teachers", [0, -1, 2.0, True])
def test_bad_teacher_count_raises(n_teachers: object) -> None:
    with pytest.raises(ValueError):
        partition_units([1, 2], n_teachers, key=KEY)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [b"", b"x" * 65, "text"])
def test_bad_key_raises(key: object) -> None:
    with pytest.raises(ValueError):
        partition_units([1, 2], 5, key=key)  # type: ignore[arg-type]
