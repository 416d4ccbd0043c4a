"""What a job and a model show: the status of a job, and the model card.

The card states the method, the (ε, δ) charged and how it was spent (the accountant, noise multiplier,
clipping norm, sampling rate, epochs and steps for DP-SGD; pure ε and rows per unit for diffprivlib), the
features, the DP metrics and their share of ε, and the caveats. It also holds the exact metrics, which
`TrainingService.model_card` strips for everyone but administrators.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from mechanisms import Cost

from .classic import CLASSIC_METHODS
from .features import FeatureSpec
from .jobs import JobSpec

__all__ = ["DIFFPRIVLIB_CAVEAT", "SECURE_MODE_CAVEAT", "model_card", "status_json"]

SECURE_MODE_CAVEAT = (
    "Opacus secure_mode is off: DP-SGD noise comes from torch's default generator, which is not a "
    "cryptographically secure RNG, and is Gaussian noise in floating point."
)
DIFFPRIVLIB_CAVEAT = (
    "diffprivlib draws its noise with numpy in floating point: it is not protected against "
    "floating-point attacks (Mironov 2012) the way OpenDP's samplers are."
)


def status_json(rec: dict[str, Any], *, is_admin: bool) -> dict[str, Any]:
    cost = None
    if rec["cost_epsilon"] is not None:
        cost = Cost(Fraction(rec["cost_epsilon"]), Fraction(rec["cost_delta"])).to_json()
    out: dict[str, Any] = {
        "job_id": rec["job_id"],
        "status": rec["status"],
        "progress": float(rec["progress"]),
        "cost": cost,
        "metrics": rec["metrics"],
        "model_id": rec["model_id"],
        "method": rec["method"],
        "dataset": rec["dataset"],
        "table": rec["table_name"],
        "created_at": rec["created_at"].isoformat() if rec["created_at"] else None,
    }
    if rec["error"]:
        out["error"] = rec["error"]
    if is_admin:
        out["analyst"] = rec["analyst"]
        out["exact_metrics"] = rec["exact_metrics"]
    return out


def model_card(
    model_id: str, job_id: str, job: JobSpec, rec: dict[str, Any], plan: dict[str, Any], spec: FeatureSpec,
    training: dict[str, Any], metrics: dict[str, Any] | None, exact: dict[str, Any], created_at: str,
) -> dict[str, Any]:  # fmt: skip
    card: dict[str, Any] = {
        "model_id": model_id,
        "job_id": job_id,
        "method": job.method,
        "task": job.task,
        "dataset": job.dataset,
        "table": job.table,
        "label": {"column": job.label, "positive": spec.label.positive, "negative": spec.label.negative,
                  **({"classes": list(spec.label.classes)} if spec.label.multiclass else {})},
        "features": spec.to_json(),
        "training": training,
        "created_at": created_at,
    }
    if job.method == "nonprivate":
        card["privacy"] = None
        card["metrics"] = exact
        card["caveats"] = ["NOT differentially private: trained without noise; administrators only."]
    else:
        model = plan["model"]
        cost = Cost(Fraction(rec["cost_epsilon"]), Fraction(rec["cost_delta"]))
        privacy: dict[str, Any] = {
            "level": "user" if plan["unit"] else "row",
            "privacy_unit": plan["unit"],
            "max_rows_per_unit": plan["k"],
            "requested": {"epsilon": float(Fraction(plan["requested"]["epsilon"])),
                          "delta": float(Fraction(plan["requested"]["delta"]))},
            "charged": cost.to_json(),
            "epsilon": cost.to_json()["epsilon"],
            "delta": cost.to_json()["delta"],
            "model": model,
            "metrics": {**plan["metrics"], "mechanism": "laplace (OpenDP discrete Laplace), "
                        + ("counts of correct and wrong predictions" if spec.label.multiclass else "score histograms")},
        }  # fmt: skip
        if "size" in plan:
            privacy["size"] = {**plan["size"], "mechanism": "laplace (OpenDP), count of training units"}
        card["privacy"] = privacy
        card["metrics"] = metrics
        if metrics is not None and "majority_share" in metrics:  # what always answering the commonest class scores
            card["baseline"] = {"majority_share": metrics["majority_share"],
                                "interval": (metrics.get("intervals") or {}).get("majority_share"),
                                "note": "the accuracy of always predicting the commonest class, from the same noisy release"}  # fmt: skip
        card["metrics_epsilon_share"] = plan["metrics"]["share"]
        card["exact_metrics"] = exact
        if job.method == "dpsgd":
            card.update(
                accountant=model["accountant"],
                noise_multiplier=model["noise_multiplier"],
                max_grad_norm=model["max_grad_norm"],
                sample_rate=model["sample_rate"],
                epochs=model["epochs"],
                steps=model["steps"],
            )
            card["caveats"] = [SECURE_MODE_CAVEAT]
            if model.get("accountant_note"):
                card["caveats"].append(model["accountant_note"])
        elif job.method == "pate":
            pate = plan["pate"]
            card.update(accountant=model["accountant"], aggregator=pate["aggregator"], queries=pate["queries"],
                        noise_sigma=pate["sigma"], teachers=job.params["teachers"], public_table=job.public_table)  # fmt: skip
            card["caveats"] = [
                "PATE: the teachers and the student are trained without noise; the guarantee comes from the "
                "noisy aggregation of the teachers' votes (every class's vote noised, OpenDP), accounted "
                "data-independently (RDP) and charged before any vote was read. Teachers are partitioned by "
                "privacy unit. The student saw only public rows and their noisy labels."
            ]
        else:
            card["caveats"] = [DIFFPRIVLIB_CAVEAT] if CLASSIC_METHODS[job.method].diffprivlib_noise else []
        if spec.label.multiclass:
            card["caveats"].append(
                "Metrics come from noisy counts of correct and wrong held-out predictions per true class "
                "(accuracy, and the majority-class baseline); each comes with an approximate 95% interval "
                "covering the DP noise and the held-out sampling."
            )
        else:
            card["caveats"].append(
                "Metrics are computed from noisy histograms of held-out scores (accuracy, binned AUC, and the "
                "majority-class baseline); each comes with an approximate 95% interval covering the DP noise "
                "and the held-out sampling."
            )
        if spec.skipped:
            card["caveats"].append(
                "Columns without public bounds or categories were left out: " + ", ".join(spec.skipped)
            )
        pre = (training or {}).get("pretrained")
        if pre:
            card["pretrained"] = pre
            who = "every teacher and the student start" if job.method == "pate" else "DP-SGD starts"
            card["caveats"].append(
                f"Pre-trained without noise on the public table {pre['table']!r} ({pre['rows']} labelled rows, "
                f"{pre['epochs']:g} epochs): {who} from those public weights. Public data costs no budget; the "
                "model's behaviour on data like the public table's owes as much to it as to the private rows."
            )
    return card
