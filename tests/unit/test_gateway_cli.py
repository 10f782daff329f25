"""`coldtrace gateway status` and `run` as a user runs them: a table or JSON from the spool,
one-line errors saying what to do."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gateway.spool import Spool
from tests.conftest import run_coldtrace


def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'gateway = "gw-1"\nspool = "{tmp_path / "spool.db"}"\n'
        f'[broker]\npassword_file = "{tmp_path / "missing.secret"}"\n'
        '[[ports]]\nname = "box"\nkind = "box"\npath = "/dev/null"\ncarries = ["box-1"]\n'
    )
    return path


def test_status_of_a_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 100)
    spool.add("box-1", 1, [{"seq": s, "ts": None, "up": s, "probes": {}} for s in range(5)])
    spool.ack("box-1", 0, 1)
    spool.put_meta("ports", b'{"box": {"path": "/dev/x", "kind": "box", "opens": 2, "torn": 1}}')
    spool.close()
    out = run_coldtrace("gateway", "status", "--config", str(config(tmp_path)), "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert (status["depth"], status["dropped_total"]) == (3, 0)
    assert status["devices"] == [
        {"device": "box-1", "high_seq": 4, "acked_seq": 1, "pending": 3, "dropped_ranges": 0}
    ]
    table = run_coldtrace("gateway", "status", "--config", str(config(tmp_path)))
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("spool: 3 readings not yet acknowledged, the oldest spooled")
    assert table.stdout.endswith("PORT  KIND  OPENS  TORN\nbox   box       2     1\n")


def test_errors_are_one_line(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    no_spool = run_coldtrace("gateway", "status", "--config", str(cfg))
    assert no_spool.returncode == 2
    assert no_spool.stderr == (
        f"error: no spool at {tmp_path / 'spool.db'}: start the gateway (coldtrace gateway run)\n"
    )
    no_password = run_coldtrace("gateway", "run", "--config", str(cfg))
    assert no_password.returncode == 2
    assert no_password.stderr.startswith(
        f"error: cannot read the broker password from {tmp_path / 'missing.secret'}"
    )
    assert no_password.stderr.count("\n") == 1
    bad = run_coldtrace("gateway", "status", "--config", str(tmp_path / "none.toml"))
    assert (bad.returncode, bad.stderr.count("\n")) == (2, 1)
    assert "cannot read the gateway config" in bad.stderr


def test_a_second_gateway_on_the_same_spool_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    (tmp_path / "missing.secret").write_text("pw\n")
    held = Spool(tmp_path / "spool.db", 100)
    try:
        out = run_coldtrace("gateway", "run", "--config", str(cfg))
    finally:
        held.close()
    assert out.returncode == 2
    pid = os.getpid()
    assert out.stderr.endswith(
        f"in use by another gateway (pid {pid}): stop it first (kill {pid})\n"
    )
