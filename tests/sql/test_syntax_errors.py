"""Syntax errors name the token where the query goes wrong, with the line and column where it starts,
and say what is most likely wrong for the common typos. The message is made from the query's text
alone (nothing of the data), and the code stays `invalid_sql`."""
from __future__ import annotations

import pytest

from gateway.core import Gateway
from gateway.errors import QueryError
from gateway.sql.parse import parse

CASES = [
    # (title, sql, message contains, line, col)
    ("misspelt SELECT", "SELEC COUNT(*) FROM tx", "near 'SELEC': did you mean SELECT?", 1, 1),
    ("misspelt SELECT alone", "SELEC 1", "near 'SELEC': did you mean SELECT?", 1, 1),
    ("not a query word", "GIMME COUNT(*) FROM tx", "near 'GIMME': a query starts with SELECT", 1, 1),
    ("misspelt FROM", "SELECT COUNT(*) FORM tx", "near 'FORM': did you mean FROM?", 1, 17),
    ("misspelt FROM, short", "SELECT COUNT(*) FRM tx", "near 'FRM': did you mean FROM?", 1, 17),
    ("misspelt WHERE", "SELECT COUNT(*) FROM tx WHRE qty = 1", "near 'WHRE': did you mean WHERE?", 1, 25),
    ("misspelt GROUP", "SELECT COUNT(*) FROM tx WHERE qty = 3 GRUP BY cat", "near 'GRUP': did you mean GROUP?", 1, 39),
    ("misspelt ORDER", "SELECT cat, COUNT(*) FROM tx GROUP BY cat ORDR BY 2", "near 'ORDR': did you mean ORDER?", 1, 43),
    ("misspelt AND", "SELECT COUNT(*) FROM tx WHERE qty = 1 AN flag", "near 'AN': did you mean AND?", 1, 39),
    ("GROUP without BY", "SELECT COUNT(*) FROM tx WHERE qty = 1 GROUP cat", "near 'GROUP': did you mean GROUP BY?", 1, 39),
    ("ORDER without BY", "SELECT COUNT(*) FROM tx ORDER 1", "near 'ORDER': did you mean ORDER BY?", 1, 25),
    ("unclosed parenthesis", "SELECT COUNT(* FROM tx", "near 'FROM': expected ')' to close the '(' at line 1, column 13", 1, 16),
    ("unclosed parenthesis of SUM", "SELECT SUM(amount FROM tx WHERE qty = 1", "expected ')' to close the '(' at line 1, column 11", 1, 19),
    ("unclosed at the end", "SELECT COUNT(*) FROM tx WHERE (qty = 1", "the query ends with the '(' at line 1, column 31 not closed", 1, 38),
    ("unclosed IN list", "SELECT COUNT(*) FROM tx WHERE qty IN (1, 2", "the '(' at line 1, column 38 not closed", 1, 42),
    ("one ')' too many", "SELECT COUNT(*)) FROM tx", "near ')': this ')' closes no '('", 1, 16),
    ("one ')' too many at the end", "SELECT COUNT(*) FROM tx WHERE qty = 1)", "near ')': this ')' closes no '('", 1, 38),
    ("unclosed bracket", "SELECT COUNT(*) FROM tx WHERE [qty = 1", "the query ends with the '[' at line 1, column 31 not closed", 1, 38),
    ("mismatched bracket", "SELECT COUNT(*) FROM tx WHERE qty IN [1, 2)", "this ')' does not close the '[' at line 1, column 38", 1, 43),
    ("missing comma", "SELECT cat COUNT(*) FROM tx GROUP BY cat", "near 'COUNT': is a comma missing before it?", 1, 12),
    ("WHERE with nothing", "SELECT COUNT(*) FROM tx WHERE", "near 'WHERE': WHERE needs a condition", 1, 25),
    ("trailing AND", "SELECT COUNT(*) FROM tx WHERE qty > 1 AND", "near 'AND': AND needs a condition on each side", 1, 39),
    ("leading AND", "SELECT COUNT(*) FROM tx WHERE AND qty = 1", "near 'AND': AND needs a condition on each side", 1, 31),
    ("BETWEEN without a bound", "SELECT COUNT(*) FROM tx WHERE qty BETWEEN AND 3", "near 'BETWEEN': BETWEEN needs a lower and an upper bound", 1, 35),
    ("LIMIT with nothing", "SELECT COUNT(*) FROM tx LIMIT", "near 'LIMIT': LIMIT needs a number", 1, 25),
    ("ORDER BY with nothing", "SELECT COUNT(*) FROM tx ORDER BY", "near 'ORDER BY': ORDER BY needs an expression", 1, 25),
    ("comparison with nothing", "SELECT COUNT(*) FROM tx WHERE qty >", "near '>': > needs a value on each side", 1, 35),
    ("doubled operator, third line", "SELECT COUNT(*)\nFROM tx\nWHERE qty = = 3", "near '=': expected a value or expression here", 3, 13),
    ("CASE without END", "SELECT SUM(CASE WHEN flag THEN amount ELSE 0) FROM tx", "near 'CASE': this CASE has no END", 1, 12),
    ("unclosed string", "SELECT COUNT(*) FROM tx WHERE cat = 'food", "near \"'food\": the string that starts here is not closed", 1, 37),
    ("unclosed quoted name", 'SELECT COUNT(*) FROM tx WHERE "cat = 1', "the quoted name that starts here is not closed", 1, 31),
    ("unclosed comment", "SELECT COUNT(*) FROM tx /* why", "near '/* why': the comment that starts here is not closed", 1, 25),
]


@pytest.mark.parametrize(("title", "sql", "says", "line", "col"), CASES, ids=[c[0] for c in CASES])
def test_syntax_error_names_the_token_and_its_position(title: str, sql: str, says: str, line: int, col: int) -> None:
    with pytest.raises(QueryError) as info:
        parse(sql)
    e = info.value
    assert e.code == "invalid_sql", e.message
    assert e.message.startswith("syntax error near "), e.message
    assert says in e.message, e.message
    assert (e.line, e.col) == (line, col), e.message
    assert e.message.endswith(f"(line {line}, column {col})")


def test_the_gateway_answers_a_syntax_error_with_the_same_message(bank: Gateway) -> None:
    with pytest.raises(QueryError) as info:
        bank.plan("bank", "SELEC COUNT(*) FROM tx", epsilon=1.0)
    assert info.value.code == "invalid_sql"
    assert info.value.message == "syntax error near 'SELEC': did you mean SELECT? (line 1, column 1)"


def test_a_long_token_is_shortened() -> None:
    with pytest.raises(QueryError) as info:
        parse("SELECT COUNT(*) FROM tx WHERE cat = '" + "x" * 500)
    assert info.value.code == "invalid_sql" and len(info.value.message) < 200


def test_a_missing_from_names_the_word_read_as_an_alias(bank: Gateway) -> None:
    with pytest.raises(QueryError) as info:
        bank.plan("bank", "SELECT COUNT(*) tx WHERE qty = 3", epsilon=1.0)
    assert info.value.code == "unsupported_sql" and info.value.construct == "SELECT without FROM"
    assert "is 'tx' the table? FROM is missing before it" in info.value.message
    assert (info.value.line, info.value.col) == (1, 17)
    for sql in ("SELECT COUNT(*) AS tx", "SELECT COUNT(*) WHERE qty = 3", "SELECT 1"):
        with pytest.raises(QueryError) as info:
            bank.plan("bank", sql, epsilon=1.0)
        assert info.value.code == "unsupported_sql" and info.value.construct == "SELECT without FROM"


def test_a_trailing_comma_is_accepted_as_duckdb_does(bank: Gateway) -> None:
    # DuckDB's grammar allows a comma after the last item of a list; sqlglot reads the query the same
    a = bank.query("bank", "SELECT COUNT(*) AS n, FROM tx", epsilon=1.0)
    assert a.columns == ["n"]
    b = bank.query("bank", "SELECT cat, COUNT(*) AS n FROM tx WHERE qty IN (1, 2,) GROUP BY cat,", epsilon=1.0)
    assert b.columns == ["cat", "n"] and len(b.rows) == 4


def test_the_message_depends_on_the_text_only(bank: Gateway) -> None:
    """The same query text gives the same message on two datasets of different rows."""
    from tests.conftest import bank_frames, make_gateway

    other = make_gateway(bank_frames(n_customers=40, seed=9))
    for sql, _, _, _, _ in CASES:
        messages = []
        for gw in (bank, other):
            with pytest.raises(QueryError) as info:
                gw.plan("bank", sql, epsilon=1.0)
            messages.append((info.value.code, info.value.message))
        assert messages[0] == messages[1]
