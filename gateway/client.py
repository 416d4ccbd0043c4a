"""A small Python client of the dpgate HTTP API."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class ApiError(Exception):
    """A problem+json answer from the gateway."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('code')}: {problem.get('detail')}")
        self.status = status
        self.problem = problem
        self.code = problem.get("code")


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8000", key: str | None = None, *, timeout: float = 120) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        url = self.url + path
        if params:
            from urllib.parse import urlencode

            url += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.key:
            req.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                problem = json.loads(raw)
            except ValueError:
                problem = {"code": "http_error", "detail": raw[:200].decode(errors="replace")}
            raise ApiError(e.code, problem) from None

    # analyst
    def datasets(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/datasets")["datasets"]

    def query(self, dataset: str, sql: str, *, epsilon: float, delta: float = 0.0, request_id: str | None = None) -> dict[str, Any]:
        body = {"dataset": dataset, "sql": sql, "epsilon": epsilon, "delta": delta}
        if request_id is not None:
            body["request_id"] = request_id
        return self.request("POST", "/v1/queries", body)

    def preview(self, dataset: str, sql: str, *, epsilon: float, delta: float = 0.0) -> dict[str, Any]:
        return self.request("POST", "/v1/queries/preview", {"dataset": dataset, "sql": sql, "epsilon": epsilon, "delta": delta})

    def budget(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/budget")["budgets"]

    # training
    def train(self, job: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/v1/training-jobs", job)

    def job(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/training-jobs/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/training-jobs/{job_id}/cancel")

    def model(self, model_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/models/{model_id}")

    def predict(self, model_id: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.request("POST", f"/v1/models/{model_id}/predict", {"rows": rows})["predictions"]

    # admin
    def raw(self, path: str) -> bytes:
        """GET a non-JSON resource (an audit plot)."""
        req = urllib.request.Request(self.url + path, method="GET")
        if self.key:
            req.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            try:
                problem = json.loads(e.read())
            except ValueError:
                problem = {"code": "http_error"}
            raise ApiError(e.code, problem) from None

    def audit(self, model_id: str, *, n_reference: int = 4, seed: int = 0) -> dict[str, Any]:
        return self.request("POST", f"/v1/admin/models/{model_id}/audit", {"n_reference": n_reference, "seed": seed})

    def create_analyst(self, name: str, *, role: str = "analyst", organisation: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "role": role}
        if organisation:
            body["organisation"] = organisation
        return self.request("POST", "/v1/admin/analysts", body)

    def register_dataset(self, meta: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/v1/admin/datasets", meta)

    def set_budget(self, analyst: str, dataset: str, *, epsilon: float, delta: float = 0.0) -> dict[str, Any]:
        return self.request("PUT", "/v1/admin/budgets", {"analyst": analyst, "dataset": dataset, "epsilon": epsilon, "delta": delta})

    def ledger(self, *, dataset: str | None = None, analyst: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/admin/ledger", params={"dataset": dataset, "analyst": analyst, "limit": limit})["entries"]
