"""Dataset metadata is validated at registration: bad declarations are refused with `InvalidMetadata`
(code `invalid_request`) and a message that names the problem; good ones are accepted.

Everything here is pure metadata (no engine, no data), so it is fast.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import pytest

from gateway.catalog import Catalog, ColumnType, DatasetMeta, parse_dataset
from gateway.core import Gateway
from gateway.engines.duckdb import DuckDBEngine
from gateway.errors import InvalidMetadata, UnknownDataset

GOOD: dict[str, Any] = {
    "name": "retail",
    "privacy_unit": "uid",
    "budget": {"epsilon": 3, "delta": 1e-6},
    "tables": {
        "tx": {
            "source": "raw_tx",
            "max_rows_per_unit": 3,
            "bounding": "registration",
            "columns": {
                "uid": {"type": "id"},
                "amount": {"type": "float", "lower": -10.5, "upper": 1000},
                "qty": {"type": "int", "lower": 0, "upper": 10, "nullable": True},
                "cat": {"type": "category", "categories": ["a", "b", "ü ☕"]},
                "city": {"type": "category", "nullable": True},
                "ts": {"type": "date", "lower": "2025-01-01", "upper": "2025-12-31T23:59:59"},
                "flag": {"type": "bool"},
            },
        },
        "rates": {
            "source": "rates.parquet",
            "max_rows_per_unit": 1,
            "public": True,
            "columns": {"cat": {"type": "category"}, "rate": {"type": "float", "lower": 0, "upper": 1}},
        },
    },
}


def edited(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    raw = copy.deepcopy(GOOD)
    change(raw)
    return raw


def cols(raw: dict[str, Any]) -> dict[str, Any]:
    return raw["tables"]["tx"]["columns"]


def refused(raw: dict[str, Any]) -> InvalidMetadata:
    with pytest.raises(InvalidMetadata) as info:
        parse_dataset(raw)
    err = info.value
    assert err.code == "invalid_request"
    assert err.status == 400
    assert err.to_dict()["code"] == "invalid_request"
    return err


# --- accepted ---------------------------------------------------------------------------------


def test_good_metadata_is_accepted() -> None:
    meta = parse_dataset(copy.deepcopy(GOOD))
    assert isinstance(meta, DatasetMeta)
    assert meta.name == "retail" and meta.privacy_unit == "uid" and not meta.row_level
    tx = meta.tables["tx"]
    assert tx.max_rows_per_unit == 3 and tx.bounding == "registration" and not tx.public
    assert tx.columns["amount"].bounds == (-10.5, 1000.0)
    assert tx.columns["qty"].nullable and tx.columns["qty"].type is ColumnType.INT
    assert tx.columns["cat"].public_categories == ("a", "b", "ü ☕")
    assert tx.columns["city"].public_categories is None
    lo, hi = tx.columns["ts"].date_bounds  # type: ignore[misc]
    assert lo.year == 2025 and hi.hour == 23
    assert meta.tables["rates"].public
    # the fingerprint is a deterministic digest of the metadata
    assert meta.fingerprint() == parse_dataset(copy.deepcopy(GOOD)).fingerprint()
    assert meta.fingerprint() != parse_dataset(edited(lambda r: r["tables"]["tx"].update(max_rows_per_unit=4))).fingerprint()


def test_good_row_level_dataset_is_accepted() -> None:
    raw = edited(lambda r: r.update(privacy_unit=None))
    raw["tables"]["tx"]["max_rows_per_unit"] = 1
    meta = parse_dataset(raw)
    assert meta.row_level


def test_per_query_bounding_and_defaults_are_accepted() -> None:
    raw = edited(lambda r: r["tables"]["tx"].update(bounding="per_query"))
    del raw["tables"]["tx"]["columns"]["cat"]["categories"]
    raw["budget"].pop("delta")
    raw["tables"]["rates"].pop("public")
    raw["tables"]["rates"]["columns"]["uid"] = {"type": "id"}
    meta = parse_dataset(raw)
    assert meta.tables["tx"].bounding == "per_query"
    assert meta.budget.delta == 0.0
    assert meta.tables["rates"].public is False


def test_a_public_table_needs_no_privacy_unit_column() -> None:
    meta = parse_dataset(copy.deepcopy(GOOD))
    assert meta.tables["rates"].column("uid") is None


def test_privacy_unit_matches_a_column_ignoring_case() -> None:
    meta = parse_dataset(edited(lambda r: r.update(privacy_unit="UID")))
    assert meta.tables["tx"].column_name(meta.privacy_unit or "") == "uid"


def test_registration_through_the_gateway_refuses_before_touching_the_engine() -> None:
    engine = DuckDBEngine(None, seed="s")
    gw = Gateway(engine)
    with pytest.raises(InvalidMetadata):
        gw.register(edited(lambda r: r.update(name="bad name")))
    assert "bad name" not in gw.catalog and gw.catalog.names() == []
    assert engine._con.execute("SELECT count(*) FROM _dpgate_tables").fetchone() == (0,)


# --- refused, each with a message naming the problem -------------------------------------------

REFUSED = [
    # identifiers
    ("dataset name with a dash", lambda r: r.update(name="bad-name"), ["name", "bad-name", "identifier"]),
    ("empty dataset name", lambda r: r.update(name=""), ["name", "identifier"]),
    ("dataset name too long", lambda r: r.update(name="a" * 64), ["name", "identifier"]),
    ("table name starting with a digit", lambda r: r["tables"].update({"1tx": r["tables"].pop("tx")}), ["1tx", "identifier"]),
    ("table name with a quote", lambda r: r["tables"].update({'t"x': r["tables"].pop("tx")}), ["identifier"]),
    ("column name with a space", lambda r: cols(r).update({"a b": {"type": "int"}}), ["a b", "identifier"]),
    ("column name with SQL in it", lambda r: cols(r).update({"x; DROP TABLE y": {"type": "int"}}), ["identifier"]),
    ("duplicate column names ignoring case", lambda r: cols(r).update({"AMOUNT": {"type": "int"}}), ["column names", "distinct"]),
    ("duplicate table names ignoring case", lambda r: r["tables"].update({"TX": copy.deepcopy(r["tables"]["tx"])}), ["table names", "distinct"]),
    # types
    ("unknown type", lambda r: cols(r).update({"x": {"type": "string"}}), ["columns.x.type", "'id'"]),
    ("missing type", lambda r: cols(r).update({"x": {"nullable": True}}), ["columns.x.type", "required"]),
    # numeric bounds
    ("lower equal to upper", lambda r: cols(r)["amount"].update(lower=1000), ["columns.amount", "lower must be below upper"]),
    ("lower above upper", lambda r: cols(r)["amount"].update(lower=2000), ["columns.amount", "lower must be below upper"]),
    ("only one bound", lambda r: cols(r)["amount"].pop("upper"), ["columns.amount", "both lower and upper"]),
    ("NaN bound", lambda r: cols(r)["amount"].update(lower=float("nan")), ["columns.amount", "finite"]),
    ("infinite bound", lambda r: cols(r)["amount"].update(upper=float("inf")), ["columns.amount", "finite"]),
    ("text bound on a number", lambda r: cols(r)["amount"].update(lower="0"), ["columns.amount", "finite number"]),
    ("fractional bound on an int", lambda r: cols(r)["qty"].update(lower=0.5), ["columns.qty", "integer"]),
    ("date lower after upper", lambda r: cols(r)["ts"].update(lower="2026-01-01"), ["columns.ts", "before upper"]),
    ("date lower equal to upper", lambda r: cols(r)["ts"].update(lower="2025-12-31T23:59:59"), ["columns.ts", "before upper"]),
    # bounds and categories on the wrong kind of column
    ("bounds on a category", lambda r: cols(r)["cat"].update(lower=0, upper=1), ["columns.cat", "no bounds"]),
    ("categories on a number", lambda r: cols(r)["amount"].update(categories=["1"]), ["columns.amount", "only for category"]),
    ("categories on a date", lambda r: cols(r)["ts"].update(categories=["2025-01-01"]), ["columns.ts", "only for category"]),
    ("categories on a bool", lambda r: cols(r)["flag"].update(categories=["x"]), ["columns.flag", "bool"]),
    ("bounds on an id", lambda r: cols(r)["uid"].update(lower=0, upper=9), ["columns.uid", "id column"]),
    # categories
    ("duplicate categories", lambda r: cols(r)["cat"].update(categories=["a", "b", "a"]), ["columns.cat", "distinct"]),
    ("categories equal as text", lambda r: cols(r)["cat"].update(categories=[1, "1"]), ["columns.cat", "distinct"]),
    ("empty category list", lambda r: cols(r)["cat"].update(categories=[]), ["columns.cat", "not be empty"]),
    ("a null category", lambda r: cols(r)["cat"].update(categories=["a", None]), ["columns.cat.categories"]),
    ("too many categories", lambda r: cols(r)["cat"].update(categories=list(range(10_001))), ["columns.cat", "at most"]),
    # the privacy unit
    ("missing privacy-unit column", lambda r: r.update(privacy_unit="customer"), ["table tx", "privacy-unit column customer"]),
    ("privacy unit not of type id", lambda r: cols(r)["uid"].update(type="int"), ["table tx", "uid", "type id"]),
    ("nullable privacy unit", lambda r: cols(r)["uid"].update(nullable=True), ["table tx", "nullable"]),
    ("privacy unit key missing", lambda r: r.pop("privacy_unit"), ["privacy_unit", "required"]),
    # contribution bounds
    ("max_rows_per_unit zero", lambda r: r["tables"]["tx"].update(max_rows_per_unit=0), ["max_rows_per_unit", "greater than or equal to 1"]),
    ("max_rows_per_unit negative", lambda r: r["tables"]["tx"].update(max_rows_per_unit=-3), ["max_rows_per_unit"]),
    ("max_rows_per_unit fractional", lambda r: r["tables"]["tx"].update(max_rows_per_unit=2.5), ["max_rows_per_unit", "integer"]),
    ("max_rows_per_unit missing", lambda r: r["tables"]["tx"].pop("max_rows_per_unit"), ["max_rows_per_unit", "required"]),
    ("row-level with max_rows_per_unit 3", lambda r: r.update(privacy_unit=None), ["row-level", "max_rows_per_unit must be 1"]),
    ("unknown bounding mode", lambda r: r["tables"]["tx"].update(bounding="sometimes"), ["bounding"]),
    # empty tables
    ("no tables", lambda r: r.update(tables={}), ["at least one table"]),
    ("a table without columns", lambda r: r["tables"]["tx"].update(columns={}), ["tables.tx.columns", "at least one column"]),
    # budget
    ("zero budget", lambda r: r["budget"].update(epsilon=0), ["budget.epsilon", "greater than 0"]),
    ("infinite budget", lambda r: r["budget"].update(epsilon=float("inf")), ["budget.epsilon", "finite"]),
    ("delta of one", lambda r: r["budget"].update(delta=1), ["budget.delta", "less than 1"]),
    # extra unknown keys, at every level
    ("unknown dataset key", lambda r: r.update(owner="me"), ["owner", "Extra inputs"]),
    ("unknown budget key", lambda r: r["budget"].update(rho=1), ["budget.rho", "Extra inputs"]),
    ("unknown table key", lambda r: r["tables"]["tx"].update(rows=10), ["tables.tx.rows", "Extra inputs"]),
    ("unknown column key", lambda r: cols(r)["amount"].update(unit="EUR"), ["columns.amount.unit", "Extra inputs"]),
    ("misspelt key", lambda r: cols(r)["amount"].update(uper=3), ["columns.amount.uper", "Extra inputs"]),
    # dates not ISO
    ("US date", lambda r: cols(r)["ts"].update(lower="01/02/2025"), ["columns.ts", "ISO"]),
    ("year only", lambda r: cols(r)["ts"].update(lower="2025"), ["columns.ts", "ISO"]),
    ("month 13", lambda r: cols(r)["ts"].update(upper="2025-13-01"), ["columns.ts", "ISO"]),
    ("words", lambda r: cols(r)["ts"].update(lower="yesterday"), ["columns.ts", "ISO"]),
    ("one date bound", lambda r: cols(r)["ts"].pop("upper"), ["columns.ts", "both lower and upper"]),
]


@pytest.mark.parametrize(("change", "words"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_bad_metadata_is_refused_naming_the_problem(change: Callable, words: list[str]) -> None:
    err = refused(edited(change))
    assert err.message.startswith("invalid dataset metadata")
    for word in words:
        assert word.lower() in err.message.lower(), (word, err.message)


def test_every_problem_is_named_at_once() -> None:
    def change(r: dict[str, Any]) -> None:
        cols(r)["amount"].update(lower=5000)
        cols(r)["cat"].update(categories=["a", "a"])
        r["budget"].update(epsilon=-1)

    err = refused(edited(change))
    for word in ("columns.amount", "columns.cat", "budget.epsilon"):
        assert word in err.message


def test_the_message_does_not_echo_unrelated_values() -> None:
    err = refused(edited(lambda r: cols(r)["amount"].update(lower=2000)))
    assert "2000" not in err.message  # it names the field and the rule, not the value


def test_not_a_mapping_is_refused() -> None:
    for raw in (None, [], "retail", 3):
        with pytest.raises(InvalidMetadata):
            parse_dataset(raw)  # type: ignore[arg-type]


def test_date_bounds_mixing_timezones_are_refused_cleanly() -> None:
    refused(edited(lambda r: cols(r)["ts"].update(lower="2025-01-01T00:00:00+02:00")))


def test_a_bool_bound_on_a_number_is_refused() -> None:
    err = refused(edited(lambda r: cols(r)["amount"].update(lower=True)))
    assert "columns.amount" in err.message


# --- the catalog ------------------------------------------------------------------------------


def test_catalog_get_unknown_dataset() -> None:
    catalog = Catalog()
    with pytest.raises(UnknownDataset) as info:
        catalog.get("nope")
    assert info.value.code == "unknown_dataset"
    assert info.value.status == 404
    assert "nope" in info.value.message
    assert "nope" not in catalog


def test_catalog_lookup_ignores_case_and_replaces_on_re_add() -> None:
    catalog = Catalog()
    meta = parse_dataset(copy.deepcopy(GOOD))
    catalog.add(meta)
    assert catalog.get("RETAIL") is meta and "Retail" in catalog
    assert catalog.names() == ["retail"]
    newer = parse_dataset(edited(lambda r: r["budget"].update(epsilon=5)))
    catalog.add(newer)
    assert catalog.get("retail") is newer and catalog.names() == ["retail"]
    assert list(catalog) == [newer]
    with pytest.raises(UnknownDataset):
        catalog.get("retail2")


# --- image tables -------------------------------------------------------------------------------


def with_image(window: int = 2, channels: tuple[str, ...] = ("close", "body"), prefix: str = "gaf_") -> dict[str, Any]:
    """GOOD with an image table ``img`` (unit uid) of ``window`` x ``window`` pixels per channel."""
    raw = copy.deepcopy(GOOD)
    columns: dict[str, Any] = {"uid": {"type": "id"}, "label": {"type": "category", "categories": ["a", "b"]}}
    for i in range(window):
        for j in range(window):
            for c in channels:
                columns[f"{prefix}{i}_{j}_{c}"] = {"type": "float", "lower": -1, "upper": 1}
    image = {"window": window, "channels": list(channels), "prefix": prefix}
    raw["tables"]["img"] = {"source": "raw_img", "max_rows_per_unit": 1, "image": image, "columns": columns}
    return raw


def img_cols(raw: dict[str, Any]) -> dict[str, Any]:
    return raw["tables"]["img"]["columns"]


def test_an_image_table_is_accepted() -> None:
    from gateway.catalog import ImageMeta

    meta = parse_dataset(with_image())
    image = meta.tables["img"].image
    assert isinstance(image, ImageMeta)
    assert (image.window, image.channels, image.prefix) == (2, ("close", "body"), "gaf_")
    assert image.column_names() == [
        "gaf_0_0_close", "gaf_0_0_body", "gaf_0_1_close", "gaf_0_1_body",
        "gaf_1_0_close", "gaf_1_0_body", "gaf_1_1_close", "gaf_1_1_body",
    ]  # fmt: skip
    assert meta.tables["tx"].image is None  # optional: the other tables are unchanged
    assert meta.model_dump(mode="json")["tables"]["img"]["image"] == {
        "window": 2, "channels": ["close", "body"], "prefix": "gaf_",
    }  # fmt: skip
    # part of the fingerprint
    other = with_image()
    other["tables"]["img"]["image"]["channels"] = ["body", "close"]
    assert parse_dataset(other).fingerprint() != meta.fingerprint()
    # another prefix, and pixel names matched ignoring case
    assert parse_dataset(with_image(prefix="px_")).tables["img"].image.prefix == "px_"  # type: ignore[union-attr]
    raw = with_image()
    img_cols(raw)["GAF_0_0_CLOSE"] = img_cols(raw).pop("gaf_0_0_close")
    parse_dataset(raw)


IMAGE_REFUSED = [
    ("a missing pixel column", lambda r: img_cols(r).pop("gaf_1_1_body"), ["image", "gaf_1_1_body", "not declared"]),
    ("a window too large for the columns", lambda r: r["tables"]["img"]["image"].update(window=3), ["image", "not declared"]),
    ("a channel without columns", lambda r: r["tables"]["img"]["image"]["channels"].append("upper"), ["image", "upper"]),
    ("a pixel of bounds [0, 1]", lambda r: img_cols(r)["gaf_0_1_close"].update(lower=0), ["image", "gaf_0_1_close", "[-1, 1]"]),
    ("a pixel without bounds", lambda r: img_cols(r).update(gaf_0_1_close={"type": "float"}), ["image", "gaf_0_1_close"]),
    ("an int pixel", lambda r: img_cols(r)["gaf_0_0_body"].update(type="int"), ["image", "gaf_0_0_body", "floats"]),
    ("a nullable pixel", lambda r: img_cols(r)["gaf_0_0_body"].update(nullable=True), ["image", "non-nullable"]),
    ("no channels", lambda r: r["tables"]["img"]["image"].update(channels=[]), ["image.channels", "at least one channel"]),
    ("channels repeated", lambda r: r["tables"]["img"]["image"].update(channels=["close", "CLOSE"]), ["image.channels", "distinct"]),
    ("window zero", lambda r: r["tables"]["img"]["image"].update(window=0), ["image.window"]),
    ("fractional window", lambda r: r["tables"]["img"]["image"].update(window=2.5), ["image.window"]),
    ("unknown image key", lambda r: r["tables"]["img"]["image"].update(height=2), ["image.height", "Extra inputs"]),
]


@pytest.mark.parametrize(("change", "words"), [c[1:] for c in IMAGE_REFUSED], ids=[c[0] for c in IMAGE_REFUSED])
def test_bad_image_metadata_is_refused_naming_the_problem(change: Callable, words: list[str]) -> None:
    raw = with_image()
    change(raw)
    err = refused(raw)
    for word in words:
        assert word.lower() in err.message.lower(), (word, err.message)


def test_registering_a_400_column_image_table_answers() -> None:
    import numpy as np
    import pandas as pd

    raw = with_image(window=10, channels=("close", "upper", "lower", "body"))
    pixels = parse_dataset(raw).tables["img"].image.column_names()  # type: ignore[union-attr]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.uniform(-1, 1, (2000, 400)).astype(np.float32), columns=pixels)
    frame.insert(0, "label", rng.choice(["a", "b"], 2000))
    frame.insert(0, "uid", np.arange(2000))
    engine = DuckDBEngine(None, seed="s")
    engine.load_frame("raw_img", frame)
    gw = Gateway(engine)
    raw["tables"] = {"img": raw["tables"]["img"]}
    gw.register(raw)  # about a second (a speed figure: bench/, not a test)
    answer = gw.query("retail", "SELECT label, COUNT(*) AS n FROM img GROUP BY label", epsilon=1)
    assert sorted(r[0] for r in answer.rows) == ["a", "b"]


def test_unknown_dataset_is_one_class_everywhere() -> None:
    import budget.errors
    import training.errors

    assert UnknownDataset is budget.errors.UnknownDataset is training.errors.UnknownDataset
    with pytest.raises(LookupError) as info:  # callers may catch it as a lookup that failed
        Catalog().get("nope")
    assert info.value.to_dict() == {"code": "unknown_dataset", "detail": "unknown dataset 'nope'", "dataset": "nope"}  # type: ignore[attr-defined]
