"""The layers of docs/architecture.md hold, and import-linter would catch the first line that
breaks them: a deliberately upward import, added in a copy of the tree, fails the contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first: the copy's packages, not the repo's editable install, are analysed.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("coldtrace", "ingest", "alerts", "simulators", "dashboards", "gateway"):
        shutil.copytree(REPO / package, tree / package, ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    out = lint_imports(copy_tree(tmp_path))
    assert out.returncode == 0, out.stdout


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        pytest.param(
            "ingest/ledger.py",
            "from coldtrace.deliveries import trace",
            [
                "entry points > stages > ground, never upward",
                "ingest is not allowed to import coldtrace.deliveries:",
                "- ingest.ledger -> coldtrace.deliveries.trace",
            ],
            id="upward",
        ),
        pytest.param(
            "alerts/rules.py",
            "import httpx",
            ["alerts.rules is not allowed to import httpx"],
            id="io-in-a-pure-module",
        ),
        # The benchmarks import coldtrace.devtools, never the tests (not checked here: they
        # are scripts, not a package).
        pytest.param(
            "coldtrace/devtools/board.py",
            "from tests.conftest import REPO",
            ["coldtrace is not allowed to import tests:", "coldtrace.devtools.board -> tests"],
            id="the-tests",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, expected: list[str]
) -> None:
    tree = copy_tree(tmp_path)
    with (tree / module).open("a") as f:
        f.write(f"\n{line}  # noqa: E402\n")
    out = lint_imports(tree)
    assert out.returncode == 1
    for text in expected:
        assert text in out.stdout


def test_every_module_of_coldtrace_has_its_layer() -> None:
    """A new module directly under coldtrace/ is placed in a layer when it is added, so that
    the contract covers it (one not listed would be free to import anything)."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["id"] == "layers")["layers"]
    placed = {name.strip() for layer in layers for name in layer.replace(":", "|").split("|")}
    children = {
        f"coldtrace.{p.stem}"
        for p in (REPO / "coldtrace").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    assert children - placed == set(), "add these to a layer in pyproject.toml"
