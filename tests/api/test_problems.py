"""The HTTP edge's structure: one table gives every stable code its status, the blueprints never import
the factory module, and the app's resources are one typed object."""
from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import gateway
import training
from budget.errors import LedgerError
from gateway.errors import DpgateError
from gateway.http.resources import Resources, resources
from gateway.problems import CODES_BY_STATUS, STATUS_BY_CODE
from tests.api.conftest import Api
from training.errors import TrainingError

ROOT = Path(__file__).resolve().parents[2]


def _error_classes() -> list[type[BaseException]]:
    for package in (gateway, training):  # every module, so that every error class is defined
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".console" in info.name or info.name.endswith(("cli", "worker", "__main__")):
                continue
            try:
                importlib.import_module(info.name)
            except ImportError:  # an optional dependency (a training extra) this machine lacks
                continue
    seen: list[type[BaseException]] = []
    todo: list[type[BaseException]] = [DpgateError, LedgerError, TrainingError]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return seen


def test_every_error_class_has_its_status_from_the_one_table() -> None:
    classes = _error_classes()
    assert len(classes) > 20  # the core's, the ledger's, the engines', the target's and training's
    for cls in classes:
        code = cls.code  # type: ignore[attr-defined]
        assert code in STATUS_BY_CODE, (cls, code)
        # the class attribute, where one is kept for callers outside HTTP, says what the table says
        assert getattr(cls, "status", STATUS_BY_CODE[code]) == STATUS_BY_CODE[code], cls


def test_framework_codes_are_in_the_table() -> None:
    assert set(CODES_BY_STATUS.values()) <= set(STATUS_BY_CODE)


def test_the_status_comes_from_the_table_and_an_unmapped_code_is_an_internal_error(api: Api) -> None:
    class Odd(DpgateError):
        code = "no_such_code"
        status = 418

    class Misfiled(DpgateError):
        code = "unknown_dataset"
        status = 400  # wrong on purpose: the table says 404

    def raise_(error: Exception):  # type: ignore[no-untyped-def]
        def view():  # type: ignore[no-untyped-def]
            raise error

        return view

    api.app.add_url_rule("/_test/odd", "odd", raise_(Odd("the message")))
    api.app.add_url_rule("/_test/misfiled", "misfiled", raise_(Misfiled("no such dataset", dataset="x")))
    odd = api.client.get("/_test/odd")
    assert odd.status_code == 500 and odd.json["code"] == "internal_error" and "the message" not in odd.get_data(as_text=True)
    misfiled = api.client.get("/_test/misfiled")
    assert misfiled.status_code == 404 and misfiled.json["code"] == "unknown_dataset" and misfiled.json["dataset"] == "x"


def test_no_blueprint_imports_the_factory_module() -> None:
    for path in sorted((ROOT / "gateway" / "http").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "gateway.app", path.name
            elif isinstance(node, ast.Import):
                assert all(a.name != "gateway.app" for a in node.names), path.name


def test_the_resources_are_one_typed_object(api: Api) -> None:
    res = resources(api.app)
    assert isinstance(res, Resources)
    assert res.ledger is res["ledger"] and res.limiter is not None and res.get("limiter") is res.limiter
    assert res.sessions is not None  # the console installed its own
    res["something_else"] = 1  # parts other modules install keep working as the dict did
    assert res["something_else"] == 1 and "something_else" in res and res.get("missing") is None
    with pytest.raises(KeyError):
        res["missing"]
    with api.app.app_context():
        from gateway.app import ext  # the console's import still works

        assert ext("ledger") is res.ledger and ext("queries") is res.queries


def test_an_analyst_without_an_allocation_is_refused_before_planning(api: Api) -> None:
    """One check, the ledger's refusal: 403 forbidden naming the dataset, and nothing about its schema."""
    r = api.client.post("/v1/admin/analysts", json={"name": "nobody"}, headers=api.admin)
    headers = {"Authorization": f"Bearer {r.json['key']}"}
    for path in ("/v1/queries", "/v1/queries/preview"):
        refused = api.client.post(path, json={"dataset": "bank", "sql": "SELECT COUNT(*) FROM no_such_table", "epsilon": 0.5}, headers=headers)
        assert refused.status_code == 403 and refused.json["code"] == "forbidden", refused.json
        assert refused.json["dataset"] == "bank" and "no_such_table" not in refused.json["detail"]
    assert api.client.get("/v1/datasets", headers=headers).json == {"datasets": []}
    admin_sees = api.client.get("/v1/datasets", headers=api.admin).json["datasets"]
    assert [d["name"] for d in admin_sees] == ["bank"]
