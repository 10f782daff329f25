"""The API's command line: `coldtrace db upgrade`, `coldtrace keys create|list|revoke` (a key
shown once, stored only hashed) and `coldtrace deliveries import FILE.csv`."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from coldtrace.deliveries.importer import COLUMNS
from coldtrace.settings import Settings
from tests.conftest import REPO, Api


def coldtrace(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "COLDTRACE_DATABASE_URL": f"sqlite:///{db}",
        "COLDTRACE_RUN_DIR": str(db.parent),
    }
    return subprocess.run(
        [sys.executable, "-m", "coldtrace.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


def test_db_upgrade_creates_every_table(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    done = coldtrace(db, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")}
    assert {"delivery", "api_key", "audit_log", "breach", "held_reading"} <= tables
    assert coldtrace(db, "db", "upgrade").returncode == 0, "idempotent"


def test_key_shown_once_and_stored_hashed(tmp_path: Path, settings: Settings) -> None:
    db = tmp_path / "store.db"
    made = coldtrace(db, "keys", "create", "--role", "quality", "--label", "QA desk", "--json")
    assert made.returncode == 0, made.stderr
    [row] = json.loads(made.stdout)
    key = row["key"]
    assert row["role"] == "quality" and key.startswith("ct_") and len(key) > 40
    stored = sqlite3.connect(db).execute("SELECT prefix, sha256 FROM api_key").fetchall()
    assert stored == [(key[:10], hashlib.sha256(key.encode()).hexdigest())]
    assert key.encode() not in db.read_bytes()

    listed = coldtrace(db, "keys", "list")
    assert listed.returncode == 0 and "QA desk" in listed.stdout and key not in listed.stdout

    api = Api(settings.model_copy(update={"database_url": f"sqlite:///{db}"}))
    try:
        headers = {"Authorization": f"Bearer {key}"}
        assert api.client.get("/api/v1/deliveries", headers=headers).status_code == 200
        revoked = coldtrace(db, "keys", "revoke", str(row["id"]))
        assert revoked.returncode == 0, revoked.stderr
        assert api.client.get("/api/v1/deliveries", headers=headers).status_code == 401
        audit = api.ok("GET", "/audit", params={"entity": "api_key"})["items"]
        assert [e["action"] for e in audit][:2] == ["api_key.revoke", "api_key.create"]
        assert audit[0]["actor"].startswith("cli:")
    finally:
        api.close()


def test_customer_keys_need_their_customer(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    done = coldtrace(db, "keys", "create", "--role", "customer")
    assert done.returncode == 2 and "needs --customer" in done.stderr
    done = coldtrace(db, "keys", "create", "--role", "customer", "--customer", "nobody")
    assert done.returncode == 2 and "no customer 'nobody'" in done.stderr


def test_deliveries_import(tmp_path: Path, settings: Settings) -> None:
    db = tmp_path / "store.db"
    api = Api(settings.model_copy(update={"database_url": f"sqlite:///{db}"}))
    try:
        api.ok("POST", "/customers", json={"id": "lyon-lab", "name": "Lyon"})
        api.ok(
            "POST",
            "/vehicles",
            json={
                "id": "van-01",
                "name": "Van",
                "compartments": [{"name": "chiller", "profile": "chilled"}],
            },
        )
        rows = [
            "ORD-1,lyon-lab,van-01,chiller,,Rungis,48.757,2.351,Lab,45.75,4.85,"
            "2026-11-27T07:40:00+01:00,2026-11-27T12:00:00+01:00",
            "ORD-2,lyon-lab,van-01,chiller,pharma,Rungis,48.757,2.351,Lab,45.75,4.85,"
            "2026-11-28T07:40:00+01:00,2026-11-28T12:00:00+01:00",
        ]
        csv = tmp_path / "orders.csv"
        csv.write_text(",".join(COLUMNS) + "\n" + "\n".join(rows) + "\n")
        done = coldtrace(db, "deliveries", "import", str(csv), "--json")
        assert done.returncode == 0, done.stderr
        assert [d["reference"] for d in json.loads(done.stdout)] == ["ORD-1", "ORD-2"]
        listed = api.ok("GET", "/deliveries", params={"customer_id": "lyon-lab"})["items"]
        assert {(d["reference"], d["profile"], d["state"]) for d in listed} == {
            ("ORD-1", "chilled", "planned"),
            ("ORD-2", "pharma", "planned"),
        }
        # A second import of the same file: refused as a whole, naming the line.
        again = coldtrace(db, "deliveries", "import", str(csv))
        assert again.returncode == 2 and "line 2" in again.stderr and "ORD-1" in again.stderr
        csv.write_text(
            ",".join(COLUMNS)
            + "\n"
            + rows[0].replace("ORD-1", "ORD-3")
            + "\n"
            + rows[1].replace("ORD-2", "ORD-4").replace("van-01", "van-99")
            + "\n"
        )
        bad = coldtrace(db, "deliveries", "import", str(csv))
        assert bad.returncode == 2 and "line 3" in bad.stderr and "nothing imported" in bad.stderr
        assert api.ok("GET", "/deliveries")["total"] == 2
    finally:
        api.close()
