"""`run_audit` end to end: positive controls (an overfit model), negative controls (models that ignore their
training rows), the report's shape, the plots and the input checks.

Statistical assertions are seeded; their tolerances are stated where they are drawn (an AUC within 4 null
standard deviations of 1/2: a correct implementation fails with probability 6e-5 per draw).
"""

from __future__ import annotations

import json
import math
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from training.audit import MIN_ROWS, AuditData, InvalidAuditInput, run_audit

from .synthetic import audit_data, constant, parzen, trainer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _null_tolerance(n_m: int, n_n: int) -> float:
    """4 sd of the Mann–Whitney AUC when members and non-members are exchangeable."""
    return 4 * math.sqrt((n_m + n_n + 1) / (12 * n_m * n_n))


def _overfit(n_classes: int, **kwargs):
    data = audit_data(n_classes, **kwargs)
    return parzen(data.x_members, data.y_members, n_classes=n_classes), data


@pytest.mark.parametrize("n_classes", [2, 8])
def test_overfit_model_leaks(n_classes: int) -> None:
    target, data = _overfit(n_classes)
    report = run_audit(target, data, train_reference=trainer(n_classes), epsilon=1.0, delta=1e-5, seed=0)
    loss, lira = report["attacks"]["loss_threshold"], report["attacks"]["lira_offline"]
    assert loss["attack_auc"] > 0.7
    assert lira["attack_auc"] > 0.7
    assert lira["tpr_at_fpr"]["0.01"] > 0.1
    # clearly above 1%: the exact lower bound of the measured TPR, not the point estimate
    assert report["ceiling"]["attacks"]["lira_offline"]["0.01"]["tpr_lower_95"] > 0.05
    assert lira["epsilon_lower_bound"] > 0.5
    # the recognition rate separates: members' median membership probability above non-members'
    for attack in (loss, lira):
        rr = attack["recognition_rate"]
        assert rr["members"]["median"] > rr["nonmembers"]["median"]


def test_overfit_model_breaks_a_small_epsilon_claim() -> None:
    """Positive control: a non-private, memorising model cannot be 0.1-DP, and the audit says so."""
    target, data = _overfit(2)
    report = run_audit(target, data, train_reference=trainer(2), epsilon=0.1, delta=1e-5)
    checks = report["ceiling"]["attacks"]
    assert checks["lira_offline"]["0.01"]["exceeds_ceiling"] is True
    assert checks["loss_threshold"]["0.01"]["exceeds_ceiling"] is True
    assert report["ceiling"]["any_exceeds"] is True
    for attack in report["attacks"].values():
        assert attack["epsilon_lower_bound"] > 0.1


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("epsilon", [1.0, 0.1])
def test_model_trained_without_the_members_does_not_leak(seed: int, epsilon: float) -> None:
    """Negative control: the target is trained on population rows only, so members are exchangeable
    with non-members: AUC ≈ 1/2 and no claim is ever refuted (an honest ε-DP model raises a false alarm
    with probability <= 5% per comparison; exchangeable members far less)."""
    data = audit_data(2, seed=seed)
    target = parzen(data.x_population[:250], data.y_population[:250], n_classes=2)
    report = run_audit(target, data, train_reference=trainer(2), epsilon=epsilon, delta=1e-5, seed=seed)
    tol = _null_tolerance(250, 250)
    for name, attack in report["attacks"].items():
        assert abs(attack["attack_auc"] - 0.5) < tol, name
        assert attack["epsilon_lower_bound"] == 0.0, name
    assert report["ceiling"]["any_exceeds"] is False


@pytest.mark.parametrize("n_classes", [2, 8])
def test_constant_model_does_not_leak(n_classes: int) -> None:
    """Negative control: the same (non-uniform) probabilities for every row. Scores then differ only by
    label, and labels are exchangeable between members and non-members."""
    data = audit_data(n_classes)
    report = run_audit(
        constant(n_classes), data, train_reference=lambda x, y, s: constant(n_classes), epsilon=1.0, delta=0.0
    )
    for name, attack in report["attacks"].items():
        assert abs(attack["attack_auc"] - 0.5) < _null_tolerance(250, 250), name
        assert attack["epsilon_lower_bound"] == 0.0, name
    # LiRA calibrates per record: references equal to the target leave nothing but ties
    assert report["attacks"]["lira_offline"]["attack_auc"] == pytest.approx(0.5, abs=1e-12)
    assert report["ceiling"]["any_exceeds"] is False
    eps_01 = run_audit(constant(n_classes), data, train_reference=None, epsilon=0.1, delta=0.0)
    assert eps_01["ceiling"]["any_exceeds"] is False
    uniform = lambda z: np.full((len(z), n_classes), 1 / n_classes)  # noqa: E731
    flat = run_audit(uniform, data, train_reference=None, epsilon=None, delta=None)["attacks"]["loss_threshold"]
    assert flat["attack_auc"] == 0.5 and flat["tpr_at_fpr"] == {"0.001": 0.0, "0.01": 0.0}


def test_report_shape_and_json() -> None:
    target, data = _overfit(2)
    report = run_audit(target, data, train_reference=trainer(2), epsilon=2.0, delta=1e-6, n_reference=3, seed=4)
    json.dumps(report, allow_nan=False)
    assert set(report) == {"attacks", "ceiling", "model", "counts", "plots"}
    assert report["model"] == {"epsilon": 2.0, "delta": 1e-6}
    assert report["counts"] == {"members": 250, "nonmembers": 250, "population": 1000}
    assert report["plots"] == []
    assert set(report["attacks"]) == {"loss_threshold", "lira_offline"}
    for attack in report["attacks"].values():
        assert set(attack["tpr_at_fpr"]) == {"0.001", "0.01"}
        assert attack["fpr_resolution"] == pytest.approx(1 / 250)
        assert attack["fpr_resolvable"] == {"0.001": False, "0.01": True}
        assert len(attack["roc"]["fpr"]) == len(attack["roc"]["tpr"]) <= 200
        for side in ("members", "nonmembers"):
            summary = attack["recognition_rate"][side]
            assert 0 <= summary["mean"] <= 1 and set(summary["quantiles"]) == {"0.05", "0.25", "0.5", "0.75", "0.95"}
    assert report["attacks"]["lira_offline"]["info"]["n_reference"] == 3
    assert report["ceiling"]["at_fpr"]["0.01"] == pytest.approx(math.exp(2.0) * 0.01 + 1e-6)
    again = run_audit(target, data, train_reference=trainer(2), epsilon=2.0, delta=1e-6, n_reference=3, seed=4)
    assert json.dumps(again) == json.dumps(report)  # seeded: reproducible


def test_without_references_or_claim() -> None:
    target, data = _overfit(2)
    data = replace(data, x_population=np.empty((0, 8)), y_population=np.empty(0, dtype=int))
    report = run_audit(target, data, train_reference=None, epsilon=None, delta=None)
    assert set(report["attacks"]) == {"loss_threshold"}
    assert report["ceiling"] is None and report["model"] == {"epsilon": None, "delta": None}
    json.dumps(report, allow_nan=False)


def _png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == PNG_MAGIC and raw[12:16] == b"IHDR"
    return struct.unpack(">II", raw[16:24])


@pytest.mark.parametrize(("n_classes", "image"), [(2, False), (8, True)])
def test_plots_are_written(tmp_path: Path, n_classes: int, image: bool) -> None:
    data = audit_data(n_classes, image=image)
    target = parzen(data.x_members, data.y_members, n_classes=n_classes)
    report = run_audit(
        target, data, train_reference=trainer(n_classes), epsilon=1.0, delta=1e-5, plots_dir=tmp_path / "p", title="t"
    )
    assert report["plots"] == ["roc.png", "violin.png"]
    for name in report["plots"]:
        path = tmp_path / "p" / name
        width, height = _png_size(path)
        assert width > 300 and height > 300 and path.stat().st_size > 10_000


def test_plots_from_threads_and_degenerate_scores(tmp_path: Path) -> None:
    data = audit_data(2)
    jobs = [
        (constant(2), None, 1.0, tmp_path / "constant"),  # every score equal: spikes, not a KDE failure
        (parzen(data.x_members, data.y_members, n_classes=2), trainer(2), None, tmp_path / "overfit"),
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(
            pool.map(
                lambda j: run_audit(j[0], data, train_reference=j[1], epsilon=j[2], delta=None, plots_dir=j[3]), jobs
            )
        )
    for (_, _, _, folder), report in zip(jobs, reports, strict=True):
        for name in report["plots"]:
            assert _png_size(folder / name)[0] > 300


# ---- input checks ----------------------------------------------------------------------------------------


def _small(n: int = 20, n_classes: int = 2) -> AuditData:
    return audit_data(n_classes, n=n, n_population=40)


def _fit(data: AuditData, n_classes: int = 2):
    return parzen(data.x_members, data.y_members, n_classes=n_classes)


def _audit(target, data: AuditData, **kwargs) -> dict:
    """`run_audit` without references or a claim unless given."""
    return run_audit(target, data, **{"train_reference": None, "epsilon": None, "delta": None, **kwargs})


def test_rejects_mismatched_lengths() -> None:
    data = _small()
    bad = replace(data, y_members=data.y_members[:-1])
    with pytest.raises(ValueError, match="x_members has 20 rows but y_members has 19"):
        _audit(_fit(data), bad)
    bad = replace(data, x_nonmembers=data.x_nonmembers[:, :3])
    with pytest.raises(InvalidAuditInput, match="x_nonmembers rows have shape"):
        _audit(_fit(data), bad)


@pytest.mark.parametrize("field", ["members", "nonmembers"])
def test_rejects_too_few_rows(field: str) -> None:
    data = _small()
    k = MIN_ROWS - 1
    cut = {f"{xy}_{field}": getattr(data, f"{xy}_{field}")[:k] for xy in ("x", "y")}
    bad = replace(data, **cut)
    with pytest.raises(ValueError, match=f"at least {MIN_ROWS} {field} rows, got {k}"):
        _audit(_fit(data), bad)


def test_population_needed_only_for_references() -> None:
    data = replace(_small(), x_population=np.empty((3, 8)), y_population=np.zeros(3, dtype=int))
    _audit(_fit(data), data)
    with pytest.raises(InvalidAuditInput, match="population rows"):
        _audit(_fit(data), data, train_reference=trainer(2))


def test_rejects_probabilities_that_are_not_probabilities() -> None:
    data = _small()
    unnormalised = lambda z: np.full((len(z), 2), 0.123456789)  # noqa: E731
    with pytest.raises(ValueError, match="do not sum to 1") as err:
        _audit(unnormalised, data)
    assert "0.123" not in str(err.value)  # messages never carry values
    assert err.value.fields["field"] == "target(x_members)"
    with pytest.raises(InvalidAuditInput, match="shape"):
        _audit(lambda z: np.full(len(z), 0.5), data)
    with pytest.raises(InvalidAuditInput, match="at least 2 class"):
        _audit(lambda z: np.ones((len(z), 1)), data)
    with pytest.raises(InvalidAuditInput, match="non-finite"):
        _audit(lambda z: np.full((len(z), 2), np.nan), data)
    with pytest.raises(InvalidAuditInput, match="outside"):
        _audit(lambda z: np.tile([1.5, -0.5], (len(z), 1)), data)
    # float32 softmax rounding is fine
    _audit(lambda z: np.tile(np.float32([0.3, 0.7 + 1e-7]), (len(z), 1)), data)


def test_rejects_bad_labels() -> None:
    data = _small()
    with pytest.raises(InvalidAuditInput, match="integer class indices"):
        _audit(_fit(data), replace(data, y_members=data.y_members + 0.5))
    with pytest.raises(InvalidAuditInput, match="below the model's 2 classes"):
        _audit(_fit(data), replace(data, y_nonmembers=data.y_nonmembers + 5))
    with pytest.raises(InvalidAuditInput, match="negative"):
        _audit(_fit(data), replace(data, y_members=data.y_members - 1))
    # integral floats and booleans are class indices
    _audit(_fit(data), replace(data, y_members=data.y_members.astype(float)))
    _audit(_fit(data), replace(data, y_members=data.y_members.astype(bool)))


@pytest.mark.parametrize(
    ("epsilon", "delta"), [(-1.0, None), (math.nan, None), (math.inf, 0.0), (1.0, 1.0), (1.0, -0.1), (True, None)]
)
def test_rejects_bad_privacy_claims(epsilon: float, delta: float | None) -> None:
    data = _small()
    with pytest.raises(InvalidAuditInput, match="epsilon|delta"):
        _audit(_fit(data), data, epsilon=epsilon, delta=delta)


def test_rejects_bad_reference_count() -> None:
    data = _small()
    with pytest.raises(InvalidAuditInput, match="n_reference"):
        _audit(_fit(data), data, train_reference=trainer(2), n_reference=1)
