"""A small Python client of the dpgate HTTP API."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote


#: where an invalid member was (the `errors` member's keys) -> how a message names it
_LOCATIONS = {"json": "", "query": "query parameter ", "view_args": "path parameter ", "path": "path parameter ",
              "headers": "header ", "form": "form field ", "files": "file ", "cookies": "cookie "}  # fmt: skip


def field_errors(problem: dict[str, Any]) -> list[str]:
    """`field: message` for each member a problem's `errors` names (an invalid body or parameters:
    `{"json": {"epsilon": ["Input should be greater than 0"], "target.ci95": [...]}}`), in its order."""
    errors = problem.get("errors")
    if not isinstance(errors, dict):
        return []
    lines: list[str] = []

    def walk(node: Any, where: str, path: list[str]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, where, path if k == "_schema" else [*path, str(k)])  # _schema: the body as a whole
        elif isinstance(node, list) and all(isinstance(m, str) for m in node):
            name = ".".join(path) or "the body"
            lines.extend(f"{where}{name}: {m}" for m in node)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, where, [*path, str(i)])
        else:
            lines.append(f"{where}{'.'.join(path) or 'the body'}: {node}")

    for location, members in errors.items():
        walk(members, _LOCATIONS.get(str(location), f"{location} "), [])
    return lines


class ApiError(Exception):
    """A problem+json answer from the gateway; `errors` lists its field-level errors (`epsilon: ...`)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        if not isinstance(problem, dict):
            problem = {"code": "http_error", "detail": str(problem)[:200]}
        self.errors = field_errors(problem)
        more = "".join(f"; {e}" for e in self.errors)
        super().__init__(f"{status} {problem.get('code')}: {problem.get('detail')}{more}")
        self.status = status
        self.problem = problem
        self.code = problem.get("code")


def query_body(
    dataset: str, sql: str, *, epsilon: float | None = None, delta: float = 0.0,
    target: dict[str, Any] | None = None, alpha: float | None = None, diagnostics: bool = False,
) -> dict[str, Any]:
    """The body of a query or preview: only the members given (the gateway wants one of epsilon, target)."""
    body: dict[str, Any] = {"dataset": dataset, "sql": sql, "delta": delta}
    if epsilon is not None:
        body["epsilon"] = epsilon
    if target is not None:
        body["target"] = {k: v for k, v in target.items() if v is not None}
    if alpha is not None:
        body["alpha"] = alpha
    if diagnostics:
        body["diagnostics"] = True
    return body


class Client:
    """The gateway's HTTP API in Python: one method per operation, answers as the API's JSON (dicts and
    lists); a refusal raises `ApiError` (its `status`, stable `code` and problem+json `problem`).

        client = Client("http://127.0.0.1:8000", key)
        answer = client.query("cards", "SELECT COUNT(*) AS n FROM transactions", epsilon=0.5)
        answer["rows"], answer["intervals"]["n"], answer["remaining"]
    """

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

    def query(
        self, dataset: str, sql: str, *, epsilon: float | None = None, delta: float = 0.0, request_id: str | None = None,
        target: dict[str, Any] | None = None, alpha: float | None = None, diagnostics: bool = False,
    ) -> dict[str, Any]:
        """Give `epsilon`, or `target` ({column, ci95 | relative, rows?}: the gateway charges the smallest
        ε that meets it); `alpha` the intervals' miss probability; `diagnostics` (charged) bounding counts."""
        body = query_body(dataset, sql, epsilon=epsilon, delta=delta, target=target, alpha=alpha, diagnostics=diagnostics)
        if request_id is not None:
            body["request_id"] = request_id
        return self.request("POST", "/v1/queries", body)

    def preview(
        self, dataset: str, sql: str, *, epsilon: float | None = None, delta: float = 0.0,
        target: dict[str, Any] | None = None, alpha: float | None = None, diagnostics: bool = False,
    ) -> dict[str, Any]:
        """Cost and expected accuracy; with `target`, the ε it would charge (`epsilon` in the answer)."""
        body = query_body(dataset, sql, epsilon=epsilon, delta=delta, target=target, alpha=alpha, diagnostics=diagnostics)
        return self.request("POST", "/v1/queries/preview", body)

    def budget(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/budget")["budgets"]

    # training
    def train(self, job: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/v1/training-jobs", job)

    def jobs(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Your training jobs, newest first (an administrator's: everyone's)."""
        return self.request("GET", "/v1/training-jobs", params={"limit": limit})["jobs"]

    def models(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Your models, newest first: method, dataset, cost, DP metrics (an administrator's: everyone's)."""
        return self.request("GET", "/v1/models", params={"limit": limit})["models"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/training-jobs/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/training-jobs/{job_id}/cancel")

    def model(self, model_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/models/{model_id}")

    def predict(self, model_id: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.request("POST", f"/v1/models/{model_id}/predict", {"rows": rows})["predictions"]

    # synthetic data
    def synthesize(self, job: dict[str, Any]) -> dict[str, Any]:
        """Start a synthetic job: ``{dataset, table, columns?, epsilon, delta?, rows?}`` (charged before it runs)."""
        return self.request("POST", "/v1/synthetic-jobs", job)

    def synthetic_job(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/synthetic-jobs/{job_id}")

    def synthetic_jobs(self, *, limit: int = 100) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/synthetic-jobs", params={"limit": limit})["jobs"]

    def synthetic_rows(self, job_id: str, *, fmt: str = "csv") -> bytes:
        """A succeeded synthetic job's rows: CSV or Parquet bytes."""
        return self.raw(f"/v1/synthetic-jobs/{job_id}/download?format={quote(fmt)}")

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

    def analysts(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/admin/analysts")["analysts"]

    def disable_analyst(self, name: str) -> dict[str, Any]:
        """Disable an analyst: its key stops working; its budgets and ledger entries stay."""
        return self.request("POST", f"/v1/admin/analysts/{quote(name, safe='')}/disable")

    def rotate_key(self, name: str) -> dict[str, Any]:
        """A new key for `name` (`key`, shown this once); the old one stops working."""
        return self.request("POST", f"/v1/admin/analysts/{quote(name, safe='')}/rotate-key")

    def register_dataset(self, meta: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/v1/admin/datasets", meta)

    def set_budget(
        self, analyst: str, dataset: str, *, epsilon: float, delta: float = 0.0, renew: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Set an allocation; `warnings` in the answer says where the dataset has less left than it promises.
        `renew` (``{"every": "month", "epsilon": 1.0, "delta": 0}``) makes it renew each window, `epsilon`
        then being the cap over all windows."""
        body: dict[str, Any] = {"analyst": analyst, "dataset": dataset, "epsilon": epsilon, "delta": delta}
        if renew is not None:
            body["renew"] = renew
        return self.request("PUT", "/v1/admin/budgets", body)

    def ledger(self, *, dataset: str | None = None, analyst: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/admin/ledger", params={"dataset": dataset, "analyst": analyst, "limit": limit})["entries"]
