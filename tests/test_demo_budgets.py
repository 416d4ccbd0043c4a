"""The demo lasts: after `make demo`, every charged command of the README, in its order, fits the demo
analyst's allocation and the dataset's total — and the totals hold more readers after the first.

The walk reads the README itself (each `dpgate query` and `dpgate train` line, and the Python client's
`client.query(...)` calls), the demo's own example queries and the curl it prints, and charges each its
requested (ε, δ) — what the gateway checks a request against before it runs; a query or a job never
charges more. Previews are free. On later runs the repeated queries are answered free from the released
answers (same dataset version, SQL and ε), so a later reader pays only for the training jobs.
"""
from __future__ import annotations

import re
import shlex
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

from gateway.cli import DEMO_CURL_QUERY, DEMO_QUERIES
from gateway.demo_data import DEMO_ALLOCATIONS, DEMO_BUDGETS
from training.jobs import TASKS

README = Path(__file__).resolve().parent.parent / "README.md"
LATER_READERS = 3  # after the first, this many more walk the README on the same data directory


def _commands(text: str) -> list[list[str]]:
    """The README's `dpgate` command lines, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        if "bin/dpgate " not in line:
            continue
        words = shlex.split(line.split("bin/dpgate ", 1)[1], comments=True)
        out.append(words)
    return out


def _option(words: list[str], *names: str) -> str | None:
    for i, w in enumerate(words):
        if w in names and i + 1 < len(words):
            return words[i + 1]
        for n in names:
            if n.startswith("--") and w.startswith(n + "="):
                return w.split("=", 1)[1]
    return None


def _cost(words: list[str]) -> tuple[str, Fraction, Fraction, bool] | None:
    """(dataset, ε, δ, repeatable for free) of a charged README command, None for what charges nothing."""
    command = words[0]
    if command == "query":
        if "--preview" in words:
            return None
        assert _option(words, "--target-column") is None, words  # a target's ε is solved: not in this walk
        dataset = _option(words, "-d", "--dataset") or "cards"
        return dataset, Fraction(_option(words, "-e", "--epsilon") or "1"), Fraction(_option(words, "--delta") or "0"), True
    if command == "train":
        task = _option(words, "--task")
        dataset = TASKS[task].dataset if task else _option(words, "--dataset")
        assert dataset, words
        return dataset, Fraction(_option(words, "-e", "--epsilon") or "1"), Fraction(_option(words, "--delta") or "1e-6"), False
    return None


def _python_queries(text: str) -> list[tuple[str, Fraction]]:
    return [(d, Fraction(e)) for d, e in re.findall(r'client\.query\(\s*"(\w+)",.*?epsilon=([0-9.e-]+)', text, re.S)]


def walk() -> tuple[list[tuple[str, Fraction, Fraction, bool]], list[list[str]]]:
    """The charges of one reader, in order: the demo's examples, its curl, then the README's."""
    text = README.read_text()
    charges = [(d, Fraction(str(e)), Fraction(str(dl)), True) for d, _, e, dl in DEMO_QUERIES]
    charges.append((DEMO_CURL_QUERY[0], Fraction(str(DEMO_CURL_QUERY[2])), Fraction(0), True))
    commands = _commands(text)
    demo_datasets = set(DEMO_ALLOCATIONS)
    for words in commands:
        cost = _cost(words)
        if cost is not None and cost[0] in demo_datasets:  # `mybank` and the like are the reader's own
            charges.append(cost)
    charges += [(d, e, Fraction(0), True) for d, e in _python_queries(text)]
    return charges, commands


def test_the_walk_reads_the_readme() -> None:
    """The parse finds what the README says (so that the budgets are checked against something)."""
    charges, commands = walk()
    trains = [w for w in commands if w[0] == "train"]
    assert len(trains) >= 4 and any("--method" in w and "pate" in w for w in trains)
    assert any(w[0] == "query" and "--preview" in w for w in commands)  # free, and left out
    assert {"datasets", "jobs", "models", "predict"} <= {w[0] for w in commands}  # the README shows them
    assert _python_queries(README.read_text()), "the README shows the Python client"
    by_dataset = {d for d, *_ in charges}
    assert by_dataset == {"lending", "cards", "candlesticks"}, by_dataset


def test_the_whole_readme_fits_the_demo_analysts_allocation() -> None:
    charges, _ = walk()
    spent: dict[str, list[Fraction]] = defaultdict(lambda: [Fraction(0), Fraction(0)])
    for dataset, epsilon, delta, _ in charges:  # in order: no command finds its budget exhausted
        spent[dataset][0] += epsilon
        spent[dataset][1] += delta
        allocation = [Fraction(str(v)) for v in DEMO_ALLOCATIONS[dataset]]
        assert spent[dataset][0] <= allocation[0] and spent[dataset][1] <= allocation[1], (dataset, spent[dataset], allocation)
    assert spent["cards"][0] >= 13  # the examples, the curl, the queries and two training jobs: not a trivial walk


def test_the_dataset_totals_hold_the_first_reader_and_more() -> None:
    """The first reader pays for everything; later ones (new demo analysts) only for what is not a repeat."""
    charges, _ = walk()
    for dataset, total in DEMO_BUDGETS.items():
        first = [sum(c[i] for c in charges if c[0] == dataset) for i in (1, 2)]
        later = [sum(c[i] for c in charges if c[0] == dataset and not c[3]) for i in (1, 2)]
        for i, name in ((0, "epsilon"), (1, "delta")):
            need = first[i] + LATER_READERS * later[i]
            assert need <= Fraction(str(total[i])), f"{dataset}: {name} {float(need):g} > total {total[i]:g}"


def test_the_demo_allocations_fit_inside_the_totals() -> None:
    for dataset, (epsilon, delta) in DEMO_ALLOCATIONS.items():
        assert 0 < epsilon <= DEMO_BUDGETS[dataset][0] and 0 <= delta <= DEMO_BUDGETS[dataset][1], dataset
