"""coldtrace.cli.output.table(): the plain-text tables the commands print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coldtrace.cli.output import emit, iso_time, table
from tests.conftest import run_coldtrace


def test_no_rows() -> None:
    assert table([]) == "(nothing)"


def test_columns_are_padded_to_the_widest_cell_numbers_right_text_left() -> None:
    rows: list[dict[str, object]] = [
        {"device": "van-01", "sent": 5, "min_c": "3.5"},
        {"device": "v2", "sent": 120, "min_c": "12.25"},
    ]

    assert table(rows).splitlines() == [
        "DEVICE  SENT  MIN_C",
        "van-01     5    3.5",
        "v2       120  12.25",
    ]


def test_none_is_an_empty_cell_and_missing_keys_too() -> None:
    rows: list[dict[str, object]] = [{"a": None, "b": "x"}, {"b": "yy"}]

    assert table(rows) == "A  B \n   x \n   yy"


def test_columns_come_from_the_first_row() -> None:
    rows: list[dict[str, object]] = [{"a": 1}, {"a": 2, "extra": "ignored"}]

    assert table(rows) == "A\n1\n2"


def test_negative_numbers_are_right_aligned_like_the_others() -> None:
    rows: list[dict[str, object]] = [{"t": "-1.5"}, {"t": "112.5"}]

    assert table(rows).splitlines() == ["T    ", " -1.5", "112.5"]


def test_booleans_are_yes_or_no_and_times_are_to_the_second_in_a_table_not_in_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Tables printed True/False and times with microseconds; `--json` keeps the values."""
    rows: list[dict[str, object]] = [
        {"id": 1, "start": iso_time(1_767_601_800_123), "end": None, "suppressed": True},
        {"id": 2, "start": iso_time(1_767_601_860_000), "end": None, "suppressed": False},
    ]

    assert table(rows).splitlines() == [
        "ID  START                 END  SUPPRESSED",
        " 1  2026-01-05T08:30:00Z       yes       ",
        " 2  2026-01-05T08:31:00Z       no        ",
    ]
    emit(rows, as_json=True)
    assert json.loads(capsys.readouterr().out) == [
        {"id": 1, "start": "2026-01-05T08:30:00.123000Z", "end": None, "suppressed": True},
        {"id": 2, "start": "2026-01-05T08:31:00Z", "end": None, "suppressed": False},
    ]


def test_a_command_that_opens_the_store_prints_no_library_progress(tmp_path: Path) -> None:
    """`keys list` migrates a new store first: Alembic's INFO lines are no news to the user
    (they were a dozen lines on stderr on every such command)."""
    proc = run_coldtrace("keys", "list", COLDTRACE_RUN_DIR=str(tmp_path))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "(nothing)\n", "")


def test_db_upgrade_names_each_migration_it_runs(tmp_path: Path) -> None:
    proc = run_coldtrace("db", "upgrade", COLDTRACE_RUN_DIR=str(tmp_path))
    assert proc.returncode == 0
    assert "Running upgrade  -> " in proc.stderr
    assert proc.stdout == f"database at head: sqlite:///{tmp_path}/coldtrace.db\n"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ("keys", "revoke", "99999999999999999999"),
            "coldtrace keys revoke: error: argument id: '99999999999999999999': give an id "
            "from 1 to 2147483647",
        ),
        (
            ("keys", "revoke", "0"),
            "coldtrace keys revoke: error: argument id: '0': give an id from 1 to 2147483647",
        ),
        (
            ("breaches", "list", "--limit", "-1"),
            "coldtrace breaches list: error: argument --limit: '-1': give a whole number of at "
            "least 1",
        ),
        (
            ("deliveries", "list", "--limit", "0"),
            "coldtrace deliveries list: error: argument --limit: '0': give a whole number of "
            "at least 1",
        ),
    ],
)
def test_an_id_or_limit_out_of_range_is_refused_in_one_line(
    tmp_path: Path, args: tuple[str, ...], error: str
) -> None:
    """A key id past the store's integers was an OverflowError traceback; --limit -1 listed
    everything (SQL's LIMIT -1)."""
    proc = run_coldtrace(*args, COLDTRACE_RUN_DIR=str(tmp_path))
    assert (proc.returncode, proc.stdout, proc.stderr.splitlines()[-1]) == (2, "", error)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "coldtrace.db").exists()  # refused before opening the store


def test_a_missing_profiles_file_is_named_by_its_setting(tmp_path: Path) -> None:
    """It was a traceback ending in "No such file" (or, from `analyze`, the bare path)."""
    missing = tmp_path / "profiles.toml"
    proc = run_coldtrace(
        "keys", "list", COLDTRACE_RUN_DIR=str(tmp_path), COLDTRACE_ALERTS_PROFILES_FILE=str(missing)
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"configuration error: COLDTRACE_ALERTS_PROFILES_FILE='{missing}': no such file: give "
        "your profiles' TOML file (the format of coldtrace/profiles.toml) or unset it\n",
    )


def test_a_profiles_file_that_does_not_load_is_named_by_its_setting(tmp_path: Path) -> None:
    """A command that opens the store read the file without naming it: a traceback."""
    user = tmp_path / "profiles.toml"
    user.write_text("version = 2\n")
    proc = run_coldtrace(
        "keys", "list", COLDTRACE_RUN_DIR=str(tmp_path), COLDTRACE_ALERTS_PROFILES_FILE=str(user)
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"configuration error: COLDTRACE_ALERTS_PROFILES_FILE: {user}: needs `version = 1` at "
        "the top\n",
    )


def test_commands_needing_no_secrets_leave_no_run_dir_behind(tmp_path: Path) -> None:
    """Run in any directory, `schema`, `analyze`, `certificates verify`, `gateway` and
    `dashboards` made a run/ there with a secrets.env holding a fresh signing key (and
    the gateway's systemd unit, whose directory is `/`, could not start: /run/secrets.env)."""
    from coldtrace import signing

    key = signing.private_key(signing.new_private_key())
    body = {"delivery_id": 7, "version": 1, "verdict": "compliant"}
    certificate = {
        "id": 3,
        "issued": "2026-01-05T10:00:00Z",
        "superseded": None,
        **body,
        "body": body,
        "algorithm": "Ed25519",
        "signature": signing.sign(key, body),
        "key_id": signing.key_id(key.public_key()),
    }
    (tmp_path / "cert.json").write_text(json.dumps(certificate))
    (tmp_path / "public.pem").write_text(signing.public_key_pem(key.public_key()))
    (tmp_path / "gateway.toml").write_text(
        f'gateway = "gw"\nspool = "{tmp_path}/spool.db"\n[broker]\nhost = "127.0.0.1"\n'
        f'password_file = "{tmp_path}/secret"\n'
    )
    run_dir = tmp_path / "run"
    verify = ("certificates", "verify", str(tmp_path / "cert.json"))
    logger_file = "tests/fixtures/loggers/chilled-delivery-door-excursion-iso.csv"
    commands: list[tuple[tuple[str, ...], int]] = [
        (("schema",), 0),
        (("analyze", "--profile", "chilled", logger_file), 1),  # its door excursion
        ((*verify, "--public-key", str(tmp_path / "public.pem")), 0),
        (("gateway", "status", "--config", str(tmp_path / "gateway.toml")), 2),  # no spool yet
        (("dashboards", "push", "--url", "http://127.0.0.1:9", "--token", "t"), 1),  # no Grafana
    ]
    for args, status in commands:
        proc = run_coldtrace(*args, COLDTRACE_RUN_DIR=str(run_dir))
        assert (args, proc.returncode) == (args, status)
        assert "Traceback" not in proc.stderr
        assert not run_dir.exists(), args

    pem = (
        "pass the signer's public key with --public-key "
        "(`pem` of GET /api/v1/certificates/public-key)"
    )
    proc = run_coldtrace(*verify, COLDTRACE_RUN_DIR=str(run_dir))
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"error: no key to verify with (none in {run_dir.resolve()}/secrets.env): {pem}, or set "
        "COLDTRACE_RUN_DIR to the run directory of the installation that signed it\n",
    )
    assert not run_dir.exists()
    proc = run_coldtrace(*verify, COLDTRACE_ENV="production")
    assert (proc.returncode, proc.stderr) == (
        2,
        f"error: no key to verify with (COLDTRACE_CERTIFICATE_SIGNING_KEY is not set): {pem}\n",
    )

    # An older run dir (before certificates were signed): read, nothing added to it.
    run_dir.mkdir()
    (run_dir / "secrets.env").write_text("COLDTRACE_MQTT_PASSWORD=kept\n")
    proc = run_coldtrace(*verify, COLDTRACE_RUN_DIR=str(run_dir))
    assert proc.returncode == 2 and "(none in " in proc.stderr
    assert (run_dir / "secrets.env").read_text() == "COLDTRACE_MQTT_PASSWORD=kept\n"


def test_services_without_an_action_asks_for_the_action_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SERVICE is optional (`coldtrace services up` starts the default ones); the error said
    "the following arguments are required: action, SERVICE"."""
    from coldtrace.cli import build_parser

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["services"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "coldtrace services: error: the following arguments are required: action"
    )
    assert build_parser().parse_args(["services", "up"]).names == []


@pytest.mark.parametrize("until", ["2026-12-01T10:00Z", "2026-12-01T11:00Z"])
def test_books_refuses_a_time_range_that_holds_nothing(tmp_path: Path, until: str) -> None:
    """--since at or after --until printed all zeros with a note to check the device's id."""
    proc = run_coldtrace(
        "books", "van-01", "--since", "2026-12-01T11:00Z", "--until", until,
        COLDTRACE_RUN_DIR=str(tmp_path),
    )  # fmt: skip
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        "error: --since is not before --until: no device time lies between them\n",
    )
    assert not (tmp_path / "coldtrace.db").exists()  # refused before opening the store


def test_an_import_refused_for_a_bad_row_says_nothing_was_imported(tmp_path: Path) -> None:
    """A row the store refused said "nothing imported"; a row that does not parse did not,
    leaving the rows above it in doubt."""
    from coldtrace.deliveries.importer import COLUMNS

    row = "ORD-1,lab,van-01,chiller,,Depot,45.72,4.82,Lab,45.75,4.85,2026-12-02T08:00Z,{end}"
    csv = tmp_path / "orders.csv"
    lines = [",".join(COLUMNS), row.format(end="2026-12-02T10:00Z"), row.format(end="noon")]
    csv.write_text("\n".join(lines) + "\n")

    proc = run_coldtrace("deliveries", "import", str(csv), COLDTRACE_RUN_DIR=str(tmp_path))

    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"error: {csv}: line 3: planned_end 'noon' is not an ISO 8601 time; nothing imported\n",
    )
