"""The model registry on disk: ``<data_dir>/models/<model_id>/`` holds

* ``model.pt`` (a torch ``state_dict``, loaded with ``weights_only=True``) or ``model.joblib``
  (diffprivlib / scikit-learn estimators, written and read only by this service);
* ``features.json``: the `FeatureSpec` (public metadata only);
* ``card.json``: the model card, including the exact metrics that only administrators may see.

A model directory is written under a temporary name and renamed into place, so a model is either
complete or absent. Who owns a model is recorded in the job store, not here.

This is the model store every process shares: gateway replicas load from, and `dpgate worker`s save to,
one directory (``<data_dir>/models`` on a shared file system); a model, once in place, never changes.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .features import FeatureSpec

__all__ = ["LoadedModel", "ModelRegistry"]

_CACHE = 8


@dataclass(frozen=True)
class LoadedModel:
    spec: FeatureSpec
    card: dict[str, Any]
    proba: Callable[[np.ndarray], np.ndarray]


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._cache: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def path(self, model_id: str) -> Path:
        if not model_id.isalnum():
            raise ValueError("bad model id")
        return self.root / model_id

    def save(self, model_id: str, *, model: Any, kind: str, spec: FeatureSpec, card: dict[str, Any]) -> None:
        final = self.path(model_id)
        tmp = self.root / f".{model_id}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if kind == "torch":
            import torch

            torch.save(model.state_dict(), tmp / "model.pt")
        else:
            import joblib

            joblib.dump(model, tmp / "model.joblib")
        (tmp / "features.json").write_text(json.dumps(spec.to_json(), indent=2, sort_keys=True, default=str))
        (tmp / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
        os.replace(tmp, final)

    def exists(self, model_id: str) -> bool:
        return (self.path(model_id) / "card.json").exists()

    def remove(self, model_id: str) -> None:
        """Delete a model that was saved but never recorded (its job ended otherwise meanwhile)."""
        shutil.rmtree(self.path(model_id), ignore_errors=True)
        with self._lock:
            self._cache.pop(model_id, None)

    def card(self, model_id: str) -> dict[str, Any]:
        return json.loads((self.path(model_id) / "card.json").read_text())

    def load(self, model_id: str) -> LoadedModel:
        with self._lock:
            hit = self._cache.get(model_id)
            if hit is not None:
                self._cache.move_to_end(model_id)
                return hit
        loaded = self._load(model_id)
        with self._lock:
            self._cache[model_id] = loaded
            while len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
        return loaded

    def _load(self, model_id: str) -> LoadedModel:
        where = self.path(model_id)
        spec = FeatureSpec.from_json(json.loads((where / "features.json").read_text()))
        card = json.loads((where / "card.json").read_text())
        if (where / "model.pt").exists() and card["training"].get("architecture") == "gaf_cnn":
            import torch

            from .models import cnn_proba
            from .vision.cnn import GafCNN

            t = card["training"]
            cnn = GafCNN(int(t["n_classes"]), window=int(t["image"]["window"]), channels=len(t["image"]["channels"]))
            cnn.load_state_dict(torch.load(where / "model.pt", weights_only=True))
            cnn.eval()
            proba = cnn_proba(cnn, t["image"])
            if not spec.label.multiclass:  # binary: P(positive), as the MLP's
                return LoadedModel(spec, card, lambda x: proba(x)[:, 1])
            return LoadedModel(spec, card, proba)
        if (where / "model.pt").exists():
            import torch

            from .nets import MLP

            net = MLP(spec.width, tuple(card["training"]["hidden"]))
            net.load_state_dict(torch.load(where / "model.pt", weights_only=True))
            net.eval()
            return LoadedModel(spec, card, net.predict_proba)
        import joblib

        from .classic import positive_proba

        est = joblib.load(where / "model.joblib")
        return LoadedModel(spec, card, lambda x: positive_proba(est, x))
