"""The container image installs exactly what the Dockerfile copies: check that this set is a
complete, working distribution (no Docker engine here to build the image itself)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The top-level folders the product was specified with that are Python packages.
SPECIFIED_FOLDERS = ("gateway", "ingest", "alerts", "dashboards", "simulators")


def dockerfile_copies() -> list[str]:
    sources: list[str] = []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            sources += line.split()[1:-1]
    return sources


def test_the_images_copy_list_installs_and_migrates_a_database(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for source in dockerfile_copies():
        src = REPO / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (context / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, context / source)
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(context),
        ],
        check=True,
        timeout=300,
    )
    # The import names it adds: coldtrace and the stages the product was specified with,
    # nothing generic (`api`, `migrations`) that another distribution could also install.
    # (bin/ holds the `coldtrace` script, *.dist-info the metadata: neither is importable.)
    top = {p.name for p in site.iterdir() if p.name != "bin" and not p.name.endswith(".dist-info")}
    packages = {
        p.name
        for p in REPO.iterdir()
        if p.name in {*SPECIFIED_FOLDERS, "coldtrace"} and (p / "__init__.py").exists()
    }
    assert top == packages, "the Dockerfile must COPY every package; nothing else may install"
    db = tmp_path / "image.db"
    env = {
        **os.environ,
        "PYTHONPATH": str(site),  # the installed copy, ahead of the repo's editable install
        "COLDTRACE_DATABASE_URL": f"sqlite:///{db}",
        "COLDTRACE_RUN_DIR": str(tmp_path / "run"),
    }
    # From outside the repo, so nothing can be imported from the working tree by accident.
    # Every module of every package the image installs imports from the installed copy
    # alone: a package the Dockerfile forgets to copy fails here, naming the module.
    check = (
        "import importlib, pkgutil; "
        f"tops = {sorted(top)!r}; "
        "mods = [m.name for t in tops for m in pkgutil.walk_packages("
        "importlib.import_module(t).__path__, t + '.')"
        # Alembic's env script runs only inside Alembic (the upgrade below runs it)
        " if m.name != 'coldtrace.migrations.env'] + tops; "
        "[importlib.import_module(m) for m in mods]; "
        "import coldtrace; "
        f"assert coldtrace.__file__.startswith({str(site)!r}), coldtrace.__file__; "
        "assert all(importlib.import_module(m).__file__.startswith("
        f"{str(site)!r}) for m in mods)"
    )
    subprocess.run([sys.executable, "-c", check], env=env, cwd=tmp_path, check=True, timeout=120)
    helped = subprocess.run(
        [sys.executable, "-m", "coldtrace.cli", "--help"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0 and "dashboards" in helped.stdout, helped.stderr
    out = subprocess.run(
        [sys.executable, "-m", "coldtrace.cli", "db", "upgrade"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    expected = {"delivery", "api_key", "audit_log", "breach", "held_reading", "alembic_version"}
    assert expected <= tables
