"""Static check (ast): on the release path, noise comes from OpenDP only (DESIGN.md §1 "Noise").

The release path is mechanisms/*.py (but audit.py, which only observes outputs), gateway/**/*.py and
budget/*.py. None of them may draw randomness from `random`, `numpy.random`, torch's samplers,
`secrets`' number generators or `os.urandom`, nor use OpenDP's deprecated or Gumbel-based selection
constructors (``make_gumbel``, ``then_report_noisy_max_gumbel``, ``make_base_*``): selection goes
through ``make_noisy_max`` / ``make_noisy_top_k``.

Two narrow exceptions, each checked: `secrets.token_*` makes identifiers (API keys, the bounding-hash
key, file suffixes), not noise; gateway/demo_data.py generates the synthetic demo tables from explicitly
seeded ``numpy.random.Generator(PCG64(seed))`` objects (test data, never a release), and nothing else.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def release_path() -> list[Path]:
    files = [*ROOT.glob("mechanisms/*.py"), *ROOT.glob("gateway/**/*.py"), *ROOT.glob("budget/*.py")]
    return sorted(f for f in files if f.name != "audit.py" or f.parent.name != "mechanisms")


SEEDED_DATA = {"gateway/demo_data.py"}  # may build seeded numpy Generators, for synthetic data only
SEEDED_ALLOWED = {"numpy.random.Generator", "numpy.random.PCG64"}

TORCH_SAMPLERS = {
    "rand", "randn", "randint", "randperm", "normal", "bernoulli", "multinomial", "poisson",
    "rand_like", "randn_like", "randint_like", "manual_seed", "seed", "Generator", "random",
}  # fmt: skip
SECRETS_IDENTIFIERS = {"token_hex", "token_urlsafe", "token_bytes", "compare_digest"}
DEPRECATED_OPENDP = re.compile(r"gumbel|^(make|then)_base_|^(make|then)_report_noisy_(max|top_k)", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.what}"


class _Scan(ast.NodeVisitor):
    """Resolves import aliases, then flags randomness sources and deprecated OpenDP constructors."""

    def __init__(self, rel: str) -> None:
        self.rel = rel
        self.aliases: dict[str, str] = {}  # local name -> dotted module or object path
        self.findings: list[Finding] = []
        self.seeded: list[tuple[int, str, int]] = []  # (line, dotted, number of arguments)

    def flag(self, node: ast.AST, what: str) -> None:
        self.findings.append(Finding(self.rel, getattr(node, "lineno", 0), what))

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            self._check_module(node, a.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        mod = node.module or ""
        self._check_module(node, mod)
        for a in node.names:
            full = f"{mod}.{a.name}"
            self.aliases[a.asname or a.name] = full
            self._check_dotted(node, full)
            if DEPRECATED_OPENDP.search(a.name):
                self.flag(node, f"imports the deprecated OpenDP constructor {a.name}")

    def _check_module(self, node: ast.AST, mod: str) -> None:
        top = mod.split(".")[0]
        if top == "random" or mod in ("numpy.random",) or mod.startswith("numpy.random."):
            if not (self.rel in SEEDED_DATA and mod == "numpy.random"):
                self.flag(node, f"imports {mod}")

    def _dotted(self, node: ast.AST) -> str | None:
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        head = self.aliases.get(node.id)
        if head is None:
            return None
        return ".".join([head, *reversed(parts)])

    def _check_dotted(self, node: ast.AST, dotted: str) -> None:
        parts = dotted.split(".")
        if parts[0] == "random":
            self.flag(node, f"uses {dotted}")
        elif parts[:2] == ["numpy", "random"] and len(parts) >= 2:
            if self.rel in SEEDED_DATA and dotted in SEEDED_ALLOWED:
                return
            self.flag(node, f"uses {dotted}")
        elif parts[0] == "torch" and len(parts) >= 2 and parts[1] in TORCH_SAMPLERS:
            self.flag(node, f"uses {dotted}")
        elif parts[0] == "secrets" and len(parts) >= 2 and parts[1] not in SECRETS_IDENTIFIERS:
            self.flag(node, f"uses {dotted}")
        elif parts[:2] == ["os", "urandom"]:
            self.flag(node, f"uses {dotted}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted = self._dotted(node)
        if dotted is not None:  # the whole chain at once: np.random.default_rng is one finding
            self._check_dotted(node, dotted)
        inner: ast.AST = node
        while isinstance(inner, ast.Attribute):
            if DEPRECATED_OPENDP.search(inner.attr):
                self.flag(inner, f"uses the deprecated OpenDP constructor {inner.attr}")
            inner = inner.value
        if not isinstance(inner, ast.Name):  # what the chain hangs from: a call, a subscript, ...
            self.visit(inner)

    def visit_Name(self, node: ast.Name) -> None:
        if DEPRECATED_OPENDP.search(node.id):
            self.flag(node, f"uses the deprecated OpenDP constructor {node.id}")
        full = self.aliases.get(node.id)
        if full is not None and full != node.id:  # a name imported from a module: `from numpy.random import x`
            self._check_dotted(node, full)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        dotted = self._dotted(func) if isinstance(func, ast.Attribute) else self.aliases.get(getattr(func, "id", ""))
        if dotted in SEEDED_ALLOWED:
            self.seeded.append((node.lineno, dotted, len(node.args) + len(node.keywords)))
        self.generic_visit(node)


def scan(path: Path) -> _Scan:
    rel = path.relative_to(ROOT).as_posix()
    s = _Scan(rel)
    s.visit(ast.parse(path.read_text(encoding="utf-8"), filename=rel))
    return s


def scan_source(source: str, rel: str = "gateway/example.py") -> list[str]:
    s = _Scan(rel)
    s.visit(ast.parse(source))
    return [f.what for f in s.findings]


def test_the_release_path_is_found() -> None:
    files = {p.relative_to(ROOT).as_posix() for p in release_path()}
    assert {"mechanisms/laplace.py", "mechanisms/selection.py", "gateway/core.py", "gateway/sql/release.py"} <= files
    assert any(f.startswith("budget/") for f in files)
    assert "mechanisms/audit.py" not in files


@pytest.mark.parametrize("path", release_path(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_noise_outside_opendp(path: Path) -> None:
    findings = scan(path).findings
    assert not findings, "\n".join(map(str, findings))


def test_seeded_data_generators_are_seeded() -> None:
    """demo_data's numpy generators are built with an explicit seed, never from global state."""
    for rel in SEEDED_DATA:
        s = scan(ROOT / rel)
        assert not s.findings, "\n".join(map(str, s.findings))
        for line, dotted, nargs in s.seeded:
            assert nargs >= 1, f"{rel}:{line}: {dotted}() without a seed"


def test_selection_uses_noisy_max_and_noisy_top_k() -> None:
    source = (ROOT / "mechanisms" / "selection.py").read_text(encoding="utf-8")
    assert "make_noisy_max" in source and "make_noisy_top_k" in source


@pytest.mark.parametrize(
    "source",
    [
        "import random\nx = random.random()",
        "from random import gauss",
        "import numpy as np\nx = np.random.laplace(0, 1)",
        "import numpy\nrng = numpy.random.default_rng()",
        "from numpy.random import default_rng",
        "from numpy import random as npr\nnpr.normal()",
        "import torch\ntorch.normal(0.0, 1.0, (3,))",
        "import torch as t\nt.randn(3)",
        "from torch import randn",
        "import secrets\nsecrets.randbelow(10)",
        "import secrets\nsecrets.SystemRandom().random()",
        "import os\nos.urandom(8)",
        "from opendp.prelude import dp\ndp.m.then_report_noisy_max_gumbel(1.0)",
        "import opendp.prelude as dp\ndp.m.make_report_noisy_max_gumbel(None, 1.0)",
        "from opendp.measurements import make_base_laplace",
        "import opendp.prelude as dp\ndp.m.make_base_discrete_laplace(1.0)",
    ],
)
def test_the_check_catches(source: str) -> None:
    assert scan_source(source), source


@pytest.mark.parametrize(
    "source",
    [
        "import secrets\nkey = secrets.token_urlsafe(32)",
        "import numpy as np\nx = np.argmin([1, 2])",
        "import opendp.prelude as dp\nm = dp.m.make_noisy_max",
        "import torch\nx = torch.zeros(3)",
    ],
)
def test_the_check_allows(source: str) -> None:
    assert not scan_source(source), source


def test_seeded_exception_is_narrow() -> None:
    rel = next(iter(SEEDED_DATA))
    assert not scan_source("import numpy as np\nrng = np.random.Generator(np.random.PCG64(3))", rel)
    assert scan_source("import numpy as np\nrng = np.random.default_rng()", rel)
    assert scan_source("import numpy as np\nnp.random.seed(1)", rel)
