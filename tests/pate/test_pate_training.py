"""PATE end to end (`train_pate`): the cost is charged once, before any teacher predicts; teachers see
disjoint partitions by unit (one unit touches one teacher); the student sees only public rows and the
aggregator's labels (abstentions dropped); and on easy synthetic tasks the student is accurate."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

import training.pate.teachers as teachers_mod
from mechanisms.cost import Cost
from training.dpsgd import Cancelled
from training.pate import (
    ABSTAIN,
    EMPTY_VOTE,
    MIN_LABELLED,
    PATEPlan,
    PATEResult,
    logreg_fit,
    mlp_fit,
    partition_units,
    plan_confident_gnmax,
    plan_gnmax,
    train_pate,
)

KEY = b"pate-training-test"


# -- synthetic data (test data, not noise) ----------------------------------------------------------------

CENTRES = np.array([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.25, 0.75, 0.5, 0.5]])


def blobs(n: int, k: int, seed: int, spread: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian classes in [0, 1]^4."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = np.clip(CENTRES[y] + rng.normal(0, spread, (n, 4)), 0, 1)
    return x.astype(np.float32), y.astype(np.int64)


def unit_ids(n_units: int, seed: int) -> np.ndarray:
    """Units with 1..79 rows each (40 on average), ids not contiguous, rows shuffled."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, 80, n_units)
    return rng.permutation(np.repeat(rng.permutation(10 * n_units)[:n_units] + 7, rows))


def tagged(n_units: int, rows_per_unit: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, units): x[:, 0] is the row id and x[:, 1] the unit id, so a teacher's rows can be traced;
    both classes in every unit, so no partition is empty or holds one class."""
    rng = np.random.default_rng(seed)
    units = np.repeat(np.arange(n_units) * 3 + 1, rows_per_unit)
    n = len(units)
    y = np.tile(np.arange(rows_per_unit) % 2, n_units).astype(np.int64)
    x = np.column_stack([np.arange(n), units, rng.random(n), y + rng.normal(0, 0.1, n)]).astype(np.float32)
    return x, y, units


def public_rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([-1.0 - np.arange(n), -np.ones(n), rng.random(n), rng.random(n)]).astype(np.float32)


# -- instrumented fits and a ledger stub ----------------------------------------------------------------------


class Log:
    def __init__(self, budget_left: bool = True) -> None:
        self.events: list[str] = []
        self.charged: list[Cost] = []
        self.budget_left = budget_left

    def charge(self, cost: Cost) -> None:
        if not self.budget_left:
            raise RuntimeError("budget exhausted")
        self.events.append("charge")
        self.charged.append(cost)


def centroid_fit(log: Log, seen: list[tuple[np.ndarray, np.ndarray]] | None = None) -> Callable[..., Any]:
    """Nearest class mean on the last two features; records its training sets and every predict call."""

    def fit(x: np.ndarray, y: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
        log.events.append("fit")
        if seen is not None:
            seen.append((x.copy(), y.copy()))
        k = int(y.max()) + 1
        means = np.stack([x[y == c, 2:].mean(axis=0) if np.any(y == c) else np.full(2, np.inf) for c in range(k)])

        def predict(xs: np.ndarray) -> np.ndarray:
            log.events.append("predict")
            d = ((xs[:, None, 2:] - means[None]) ** 2).sum(axis=2)
            return np.exp(-d) / np.exp(-d).sum(axis=1, keepdims=True)

        return predict

    return fit


class StudentSpy:
    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, x: np.ndarray, y: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
        self.calls.append((x.copy(), y.copy()))
        return logreg_fit(n_classes=int(y.max()) + 1 if y.size else None)(x, y, seed)


@pytest.fixture
def spy_labels(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[np.ndarray]]:
    """Records the teachers' predictions that `label_queries` asks for, and the labels it returns."""
    real = teachers_mod.label_queries
    seen: dict[str, list[np.ndarray]] = {"votes": [], "labels": []}

    def spy(plan: PATEPlan, teacher_predictions: Callable[[], Any], *, charge: Callable[[Cost], object]) -> Any:
        def recorded() -> Any:
            v = teacher_predictions()
            seen["votes"].append(np.asarray(v))
            return v

        out = real(plan, recorded, charge=charge)
        seen["labels"].append(out.copy())
        return out

    monkeypatch.setattr(teachers_mod, "label_queries", spy)
    return seen


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny networks train many times faster on one intra-op thread on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(
    x: np.ndarray,
    y: np.ndarray,
    units: np.ndarray,
    xq: np.ndarray,
    plan: PATEPlan,
    log: Log,
    *,
    n_teachers: int = 10,
    fit_teacher: Callable[..., Any] | None = None,
    fit_student: Callable[..., Any] | None = None,
    **kw: Any,
) -> PATEResult:
    return train_pate(
        x_private=x, y_private=y, units=units, x_public=xq, n_classes=plan.n_classes, n_teachers=n_teachers,
        plan=plan, charge=log.charge, fit_teacher=fit_teacher or centroid_fit(log),
        fit_student=fit_student or StudentSpy(), key=KEY, **kw,
    )  # fmt: skip


def small_plan(queries: int = 60, n_classes: int = 2) -> PATEPlan:
    return plan_gnmax(epsilon=50, delta=1e-5, n_classes=n_classes, queries=queries)


# -- ordering: charge first, once -------------------------------------------------------------------------------


def test_charge_once_before_any_teacher_predicts() -> None:
    x, y, units = tagged(200, 4, seed=1)
    log = Log()
    plan = small_plan()
    r = run(x, y, units, public_rows(300, 2), plan, log)
    assert log.events.count("charge") == 1 and log.charged == [plan.cost]
    first_predict = log.events.index("predict")
    assert log.events.index("charge") < first_predict
    assert log.events[: log.events.index("charge")] == ["fit"] * 10  # all teachers trained, none asked
    assert log.events.count("predict") == 10  # each teacher asked once, for all queries
    assert (r.queries, r.teachers, r.labelled + r.abstained) == (60, 10, 60)
    assert r.label_agreement_public is None and not hasattr(r, "teacher_sizes")


def test_budget_refusal_means_no_prediction_and_no_student() -> None:
    x, y, units = tagged(200, 4, seed=1)
    log, student = Log(budget_left=False), StudentSpy()
    with pytest.raises(RuntimeError, match="budget exhausted"):
        run(x, y, units, public_rows(300, 2), small_plan(), log, fit_student=student)
    assert "predict" not in log.events and log.charged == [] and student.calls == []


# -- what the teachers and the student see --------------------------------------------------------------------


def test_every_unit_goes_to_exactly_one_teacher() -> None:
    x, y, units = tagged(300, 5, seed=3)
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    log = Log()
    run(x, y, units, public_rows(200, 4), small_plan(), log, n_teachers=12, fit_teacher=centroid_fit(log, seen))
    assert len(seen) == 12
    row_ids = np.concatenate([tx[:, 0] for tx, _ in seen])
    assert np.array_equal(np.sort(row_ids), np.arange(len(x)))  # every row exactly once
    owner: dict[float, int] = {}
    for t, (tx, ty) in enumerate(seen):
        rows = tx[:, 0].astype(np.int64)
        assert np.array_equal(ty, y[rows])  # each row keeps its own label
        for u in np.unique(tx[:, 1]):
            assert owner.setdefault(float(u), t) == t  # a unit never spans two teachers
    assert len(owner) == 300
    # and the teacher is the keyed hash of the unit
    expected = partition_units(units, 12, key=KEY)
    for t, (tx, _) in enumerate(seen):
        assert np.all(expected[tx[:, 0].astype(np.int64)] == t)


def _training_sets(x: np.ndarray, y: np.ndarray, units: np.ndarray) -> list[set[tuple[float, ...]]]:
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    log = Log()
    run(x, y, units, public_rows(200, 4), small_plan(), log, n_teachers=12, fit_teacher=centroid_fit(log, seen))
    assert len(seen) == 12
    return [{(*row, float(label)) for row, label in zip(tx.tolist(), ty.tolist())} for tx, ty in seen]


def test_one_unit_changes_at_most_one_teachers_training_set() -> None:
    x, y, units = tagged(300, 5, seed=5)
    base = _training_sets(x, y, units)
    u = units[17]
    mine = units == u
    removed = _training_sets(x[~mine], y[~mine], units[~mine])
    changed_x = x.copy()
    changed_x[mine, 2:] = 0.123  # the unit's rows change, its labels flip
    changed = _training_sets(changed_x, np.where(mine, 1 - y, y), units)
    for other in (removed, changed):
        differ = [t for t in range(12) if base[t] != other[t]]
        assert len(differ) == 1
    # and the teacher that differs is the unit's own
    (t,) = [t for t in range(12) if base[t] != removed[t]]
    assert partition_units([u], 12, key=KEY)[0] == t


def test_student_gets_only_public_rows_and_the_aggregators_labels(spy_labels: dict[str, list[np.ndarray]]) -> None:
    x, y, units = tagged(200, 4, seed=6)
    xq = public_rows(500, 7)
    student, log = StudentSpy(), Log()
    plan = small_plan(queries=80)
    r = run(x, y, units, xq, plan, log, fit_student=student)
    assert len(student.calls) == 1
    sx, sy = student.calls[0]
    public = {tuple(row) for row in xq.tolist()}
    private = {tuple(row) for row in x.tolist()}
    assert public.isdisjoint(private)
    assert all(tuple(row) in public for row in sx.tolist())
    assert not any(tuple(row) in private for row in sx.tolist())
    assert len({tuple(row) for row in sx.tolist()}) == len(sx) == r.labelled
    (labels,) = spy_labels["labels"]
    assert np.array_equal(sy, labels[labels != ABSTAIN])
    (votes,) = spy_labels["votes"]
    assert votes.shape == (10, 80)  # one vote per teacher per planned query
    # the returned student keeps no array (private or not) alive in its closure
    assert not any(isinstance(c.cell_contents, np.ndarray) for c in r.student_predict.__closure__ or ())


def test_query_rows_are_a_seeded_choice_of_public_rows() -> None:
    x, y, units = tagged(200, 4, seed=6)
    xq = public_rows(500, 7)
    picks = []
    for seed in (0, 0, 1):
        student = StudentSpy()
        run(x, y, units, xq, small_plan(queries=40), Log(), fit_student=student, seed=seed)
        picks.append(student.calls[0][0][:, 0])
    assert np.array_equal(picks[0], picks[1]) and not np.array_equal(picks[0], picks[2])
    # a permutation, not the first rows of the table
    assert not np.array_equal(np.sort(-1.0 - picks[0]), np.arange(40))


def test_abstentions_are_dropped(spy_labels: dict[str, list[np.ndarray]]) -> None:
    """Teachers split evenly on 'contested' public rows and agree on the others; with σ1 = σ2 = 0.5 the
    threshold 15 of 20 sits 10σ from both vote counts, so the outcome is certain up to ~1e-20."""
    x, y, units = tagged(400, 4, seed=8)
    n_teachers = 20
    calls = {"n": 0}

    def split_fit(xt: np.ndarray, yt: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
        parity = calls["n"] % 2
        calls["n"] += 1

        def predict(xs: np.ndarray) -> np.ndarray:
            contested = xs[:, 2] < 0.5
            label = np.where(contested, parity, (xs[:, 3] > 0.5).astype(np.int64))
            return np.eye(2)[label]

        return predict

    xq = public_rows(400, 9)
    plan = plan_confident_gnmax(
        epsilon=5000, delta=1e-5, n_classes=2, threshold=15, sigma1=0.5, sigma2=0.5, queries=200
    )
    student, log = StudentSpy(), Log()
    r = run(x, y, units, xq, plan, log, n_teachers=n_teachers, fit_teacher=split_fit, fit_student=student)
    assert calls["n"] == n_teachers
    (labels,) = spy_labels["labels"]
    sx, sy = student.calls[0]
    asked_contested = r.abstained
    assert r.queries == 200 and r.labelled + r.abstained == 200
    assert 50 < asked_contested < 150 and r.labelled == len(sx) == int((labels != ABSTAIN).sum())
    assert ABSTAIN not in sy
    assert np.all(sx[:, 2] >= 0.5)  # only the rows the teachers agreed on
    assert np.array_equal(sy, (sx[:, 3] > 0.5).astype(np.int64))


def test_empty_and_one_class_partitions_still_vote(spy_labels: dict[str, list[np.ndarray]]) -> None:
    """3 units among 20 teachers: 17 empty partitions vote EMPTY_VOTE; a one-class unit's teacher votes
    its class without being fitted. Every teacher votes on every query. The labels then hold one class,
    and the student still trains on them: after the charge, nothing in the rows stops the run."""
    units = np.repeat([11, 22, 33], 6)
    x = np.column_stack([np.arange(18), units, np.linspace(0, 1, 18), np.linspace(0, 1, 18)]).astype(np.float32)
    y = np.array([1] * 6 + [0, 1] * 6, dtype=np.int64)  # unit 11: class 1 only
    log, student = Log(), StudentSpy()
    plan = plan_gnmax(epsilon=1000, delta=1e-5, n_classes=2, queries=50)  # σ ≈ 0.2: labels = the plurality
    r = run(x, y, units, public_rows(100, 1), plan, log, n_teachers=20, fit_student=student)
    assert log.charged == [plan.cost] and r.labelled == 50 and r.abstained == 0
    [(sx, sy)] = student.calls  # 17+ votes for class 0 on every query: one class, and a student anyway
    assert len(sx) == 50 and np.all(sy == EMPTY_VOTE)
    assert r.student_predict(public_rows(5, 3)).shape == (5, 2)  # over the public classes
    (votes,) = spy_labels["votes"]
    assert votes.shape == (20, 50)
    teacher_of = partition_units([11, 22, 33], 20, key=KEY)
    assert len(set(teacher_of.tolist())) == 3
    assert log.events.count("fit") == 2  # units 22 and 33 only
    for t in range(20):
        if t == teacher_of[0]:
            assert np.all(votes[t] == 1)
        elif t not in teacher_of:
            assert np.all(votes[t] == EMPTY_VOTE)


# -- cancellation, progress and refusals ------------------------------------------------------------------------


@pytest.mark.parametrize("stop_at", [1, 4, 11])  # before the first teacher, mid-way, after the last one
def test_cancelled_between_teachers_charges_nothing(stop_at: int) -> None:
    x, y, units = tagged(200, 4, seed=1)
    checks = {"n": 0}

    def should_stop() -> bool:
        checks["n"] += 1
        return checks["n"] >= stop_at

    log, student = Log(), StudentSpy()
    with pytest.raises(Cancelled):
        run(x, y, units, public_rows(300, 2), small_plan(), log, should_stop=should_stop, fit_student=student)
    assert log.events.count("fit") == stop_at - 1
    assert log.charged == [] and "predict" not in log.events and student.calls == []


def test_progress_is_monotone_and_ends_at_one() -> None:
    x, y, units = tagged(200, 4, seed=1)
    seen: list[float] = []
    run(x, y, units, public_rows(300, 2), small_plan(), Log(), on_progress=seen.append)
    assert len(seen) == 12 and seen == sorted(seen) and seen[-1] == 1.0 and 0 < seen[0]


def test_inconsistent_inputs_are_refused_before_anything_runs() -> None:
    x, y, units = tagged(200, 4, seed=1)
    xq = public_rows(300, 2)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"plan": small_plan(n_classes=3)}, "classes"),
        ({"plan": small_plan(queries=301)}, "x_public has 300 rows"),
        ({"plan": small_plan(queries=MIN_LABELLED - 1)}, "student needs"),
        ({"units": units[:-1]}, "units"),
        ({"y_private": np.where(y == 1, 2, y)}, "class indices"),
        ({"y_private": y.astype(float)}, "integer"),
        ({"x_public": xq[:, :3]}, "feature columns"),
        ({"n_teachers": 0}, "n_teachers"),
        ({"seed": -1}, "seed"),
    ]
    for change, message in cases:
        log = Log()
        kw: dict[str, Any] = {
            "x_private": x, "y_private": y, "units": units, "x_public": xq, "n_classes": 2, "n_teachers": 10,
            "plan": small_plan(), "charge": log.charge, "fit_teacher": centroid_fit(log),
            "fit_student": StudentSpy(), "key": KEY,
        }  # fmt: skip
        kw.update(change)
        with pytest.raises(ValueError, match=message):
            train_pate(**kw)
        assert log.events == [], change


def test_a_run_whose_every_query_abstains_still_gives_a_student() -> None:
    """Every query abstains (threshold above the number of teachers): the charge stands, and the student
    is fitted on no rows (a function of the released labels alone) rather than the run failing."""
    x, y, units = tagged(200, 4, seed=1)
    plan = plan_confident_gnmax(
        epsilon=1000, delta=1e-5, n_classes=2, threshold=1000, sigma1=0.5, sigma2=0.5, queries=50
    )
    log, student = Log(), StudentSpy()
    r = run(x, y, units, public_rows(300, 2), plan, log, fit_student=student)
    assert log.charged == [plan.cost] and r.labelled == 0 and r.abstained == r.queries == 50
    [(sx, sy)] = student.calls
    assert sx.shape == (0, 4) and sy.shape == (0,)
    assert r.student_predict(public_rows(5, 3)).shape == (5, 2)


def test_tiny_epsilon_plans_raise_or_fit_too_few_queries() -> None:
    with pytest.raises(ValueError, match="not even one query"):
        plan_gnmax(epsilon=1e-3, delta=1e-5, n_classes=2, sigma=30.0)
    few = plan_gnmax(epsilon=0.3, delta=1e-5, n_classes=2, sigma=30.0)
    assert 1 <= few.queries < MIN_LABELLED
    x, y, units = tagged(200, 4, seed=1)
    log = Log()
    with pytest.raises(ValueError, match="student needs"):
        run(x, y, units, public_rows(300, 2), few, log)
    assert log.events == []


# -- accuracy on easy tasks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3])
def test_student_is_accurate_on_separated_classes(k: int) -> None:
    """20,000 private rows in ~500 units (1..79 rows each), 50 teachers, ε = 3, δ = 1e-5: 200 GNMax
    labels at σ ≈ 30 (≈ 12% of unanimous votes flipped), enough for a linear student."""
    units = unit_ids(500, seed=10 + k)
    x, y = blobs(len(units), k, seed=20 + k)
    xq, _ = blobs(5_000, k, seed=30 + k)
    xt, yt = blobs(2_000, k, seed=40 + k)
    plan = plan_gnmax(epsilon=3, delta="1e-5", n_classes=k, queries=200)
    log = Log()
    r = train_pate(
        x_private=x, y_private=y, units=units, x_public=xq, n_classes=k, n_teachers=50, plan=plan,
        charge=log.charge, fit_teacher=logreg_fit(), fit_student=logreg_fit(n_classes=k), key=KEY,
    )  # fmt: skip
    assert log.charged == [plan.cost] and plan.cost.epsilon <= 3
    p = r.student_predict(xt)
    assert p.shape == (len(xt), k) and np.allclose(p.sum(axis=1), 1)
    assert (p.argmax(axis=1) == yt).mean() > 0.85
    assert r.labelled == 200 and r.abstained == 0


def test_mlp_teachers_and_student_end_to_end(one_thread: None) -> None:
    """Smaller networks and partitions (≈160 rows per teacher): 30 runs gave accuracies 0.93-0.98."""
    units = unit_ids(200, seed=50)
    x, y = blobs(len(units), 3, seed=51)
    xq, _ = blobs(2_000, 3, seed=52)
    xt, yt = blobs(1_000, 3, seed=53)
    plan = plan_gnmax(epsilon=3, delta=1e-5, n_classes=3, queries=100)
    fit = mlp_fit(hidden=(16,), min_steps=60, epochs=5, n_classes=3)
    r = train_pate(
        x_private=x, y_private=y, units=units, x_public=xq, n_classes=3, n_teachers=50, plan=plan,
        charge=Log().charge, fit_teacher=fit, fit_student=fit, key=KEY,
    )  # fmt: skip
    assert (r.student_predict(xt).argmax(axis=1) == yt).mean() > 0.85


@pytest.mark.slow
def test_mlp_student_at_full_size(one_thread: None) -> None:
    units = unit_ids(500, seed=60)
    x, y = blobs(len(units), 3, seed=61)
    xq, _ = blobs(5_000, 3, seed=62)
    xt, yt = blobs(2_000, 3, seed=63)
    plan = plan_gnmax(epsilon=3, delta=1e-5, n_classes=3, queries=200)
    r = train_pate(
        x_private=x, y_private=y, units=units, x_public=xq, n_classes=3, n_teachers=50, plan=plan,
        charge=Log().charge, fit_teacher=mlp_fit(), fit_student=mlp_fit(n_classes=3), key=KEY,
    )  # fmt: skip
    assert (r.student_predict(xt).argmax(axis=1) == yt).mean() > 0.85


# -- the default fits -------------------------------------------------------------------------------------------------


def test_logreg_fit_places_columns_by_class_index() -> None:
    x, y = blobs(600, 3, seed=70)
    y = np.where(y == 1, 2, y)  # classes 0 and 2 only
    p = logreg_fit(n_classes=3)(x, y, 0)(x)
    assert p.shape == (600, 3) and np.all(p[:, 1] == 0) and np.allclose(p.sum(axis=1), 1)
    assert (p.argmax(axis=1) == y).mean() > 0.9
    one = logreg_fit(n_classes=3)(x, np.full(600, 2), 0)(x[:5])
    assert np.array_equal(one, np.tile([0.0, 0.0, 1.0], (5, 1)))


@pytest.mark.parametrize("k", [2, 3])
def test_mlp_fit_is_seeded_and_leaves_torch_rng_alone(k: int, one_thread: None) -> None:
    x, y = blobs(800, k, seed=80)
    fit = mlp_fit(hidden=(16,), min_steps=80)
    state = torch.random.get_rng_state()
    a, b, c = (fit(x, y, s)(x) for s in (1, 1, 2))
    assert torch.equal(state, torch.random.get_rng_state())
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == (800, k) and np.allclose(a.sum(axis=1), 1)
    assert (a.argmax(axis=1) == y).mean() > 0.9
    assert mlp_fit(n_classes=4)(x, np.zeros(800, dtype=np.int64), 0)(x[:3]).shape == (3, 4)


def test_student_predict_pads_missing_classes_and_checks_width() -> None:
    """A student whose predict returns fewer columns than classes gets zeros for the rest."""
    x, y, units = tagged(200, 4, seed=1)

    def two_columns(xs: np.ndarray, ys: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
        return lambda z: np.tile([0.4, 0.6], (len(z), 1))

    r = run(x, y, units, public_rows(300, 2), small_plan(), Log(), fit_student=two_columns)
    assert r.student_predict(x[:4]).shape == (4, 2)
    plan3 = small_plan(n_classes=3)
    y3 = y.copy()
    y3[::7] = 2
    r3 = run(x, y3, units, public_rows(300, 2), plan3, Log(), fit_student=two_columns)
    assert np.array_equal(r3.student_predict(x[:2]), [[0.4, 0.6, 0.0]] * 2)
    with pytest.raises(ValueError, match="feature columns"):
        r3.student_predict(x[:2, :3])


@pytest.mark.parametrize("make", [logreg_fit, mlp_fit])
def test_balanced_class_weight_lifts_a_rare_class(make: Callable[..., Any], one_thread: None) -> None:
    """5% positives that overlap the negatives: balanced weights move the decision towards the rare
    class, so more rows are predicted positive than without them."""
    rng = np.random.default_rng(90)
    y = (rng.random(2_000) < 0.05).astype(np.int64)
    x = np.clip(0.4 + 0.2 * y[:, None] + rng.normal(0, 0.12, (2_000, 2)), 0, 1).astype(np.float32)
    kw: dict[str, Any] = {"hidden": (16,), "min_steps": 150} if make is mlp_fit else {}
    plain = make(**kw)(x, y, 0)(x).argmax(axis=1).sum()
    balanced = make(class_weight="balanced", **kw)(x, y, 0)(x).argmax(axis=1).sum()
    assert balanced > 2 * max(plain, 10)
    with pytest.raises(ValueError, match="class_weight"):
        make(class_weight="auto")
