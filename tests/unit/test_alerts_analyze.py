"""`coldtrace analyze` on the two exports of the same chilled delivery (tests/fixtures/loggers,
copied from the shared fixtures): 07:40..10:39 Paris time (UTC+2), one reading a minute, two
probes; the door opened at a stop drives both above +4 C from 08:45 to 09:03 local."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coldtrace.cli import main

LOGGERS = Path(__file__).resolve().parent.parent / "fixtures" / "loggers"
FRENCH = LOGGERS / "chilled-delivery-door-excursion-fr-semicolon.csv"
ISO = LOGGERS / "chilled-delivery-door-excursion-iso.csv"


def analyze_json(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> dict:
    """The report; ``code``: the exit status expected (0 compliant, 1 not compliant or
    incomplete)."""
    assert main(["analyze", "--json", *args]) == code
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("path", [FRENCH, ISO], ids=["french", "iso"])
def test_door_excursion_is_one_breach_per_probe(capsys, path: Path) -> None:
    report = analyze_json(capsys, "--profile", "chilled", "--tz", "Europe/Paris", str(path), code=1)
    assert report["readings"] == 180
    assert (report["first"], report["last"]) == (
        "2026-07-14T07:40:00+02:00",
        "2026-07-14T10:39:00+02:00",
    )
    assert report["verdict"] == "not compliant"
    breaches = report["breaches"]
    assert len(breaches) == 2
    for b in breaches:
        # first reading above +4 C at 08:45 local; first back in range at 09:04 local
        # (front 3.9, rear 4.0), confirmed by 09:05 being 0.2 C inside the limit
        assert (b["start"], b["end"]) == ("2026-07-14T08:45:00+02:00", "2026-07-14T09:04:00+02:00")
        assert b["rule"] == "excursion_high" and b["severity"] == "major"
        assert b["duration_min"] == 19.0
        assert isinstance(b["mkt_c"], float) and b["verdict"] == "not compliant"
    front, rear = sorted(breaches, key=lambda b: b["peak_c"])
    assert (front["peak_c"], rear["peak_c"]) == (7.6, 7.8)
    # front: excess 0.3+0.7+1.1+1.5+1.9+2.3+2.8+3.2+3.6+3.6+3.2+2.9+2.5+2.1+1.7+1.4+1.0+0.6+0.2
    assert front["degree_minutes"] == 36.6
    assert isinstance(report["mkt_c"], float) and 2.5 < report["mkt_c"] < 4.0


def test_missing_value_is_not_a_reading(capsys) -> None:
    report = analyze_json(capsys, "--profile", "chilled", str(ISO), code=1)
    probes = {p["probe"]: p for p in report["probes"]}
    assert (probes["front_c"]["readings"], probes["rear_c"]["readings"]) == (179, 180)
    # 19 of 179 minutes above +4 C
    assert probes["front_c"]["out_of_range_min"] == 19.0
    assert probes["front_c"]["in_range_pct"] == round(100 * 160 / 179, 2)


def test_naive_local_times_follow_tz(capsys) -> None:
    report = analyze_json(capsys, "--profile", "chilled", "--tz", "UTC", str(FRENCH), code=1)
    assert report["first"] == "2026-07-14T07:40:00+00:00"
    report = analyze_json(capsys, "--profile", "chilled", "--tz", "+01:00", str(FRENCH), code=1)
    assert report["first"] == "2026-07-14T07:40:00+01:00"


def test_naive_local_times_without_tz_are_refused(capsys) -> None:
    """No silent default zone: a file of local times with no zone in its header needs --tz."""
    assert main(["analyze", "--profile", "chilled", str(FRENCH)]) == 2
    assert "pass --tz" in capsys.readouterr().err


def test_a_compliant_file(capsys, tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    rows = [f"{1784007600 + 60 * i},{3.0 + (i % 3) / 10}" for i in range(60)]
    path.write_text("time,product\n" + "\n".join(rows) + "\n")
    report = analyze_json(capsys, "--profile", "chilled", "--unit", "C", str(path))
    assert (report["readings"], report["breaches"], report["verdict"]) == (60, [], "compliant")


def test_table_output_shows_breaches_and_verdict(capsys) -> None:
    assert main(["analyze", "--profile", "chilled", "--tz", "Europe/Paris", str(FRENCH)]) == 1
    out = capsys.readouterr().out
    assert "2026-07-14T08:45:00+02:00" in out and "NOT COMPLIANT" in out
    assert "Température avant [°C]" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "timestamp,a\n2026-07-14T07:40:00Z,3.0\nyesterday,3.1\n2026-07-14T07:42:00Z,3.0\n",
            "line 3: cannot read the time",
        ),
        ("timestamp,a\n2026-07-14T07:40:00Z,3.0\n2026-07-14T07:41:00Z,warm\n", "line 3: 'warm'"),
        ("timestamp,a,b\n2026-07-14T07:40:00Z,3.0\n", "line 2: 2 columns"),
        ("temperature\n3.0\n", "no header line found"),
    ],
)
def test_bad_files_get_an_error_naming_the_line(capsys, tmp_path, content, message) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["analyze", "--profile", "chilled", "--unit", "C", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_unknown_profile_lists_the_known_ones(capsys) -> None:
    assert main(["analyze", "--profile", "chiled", str(ISO)]) == 2
    assert "known profiles: chilled, cook-chill" in capsys.readouterr().err


def test_user_profiles_file_adds_a_profile(capsys, tmp_path, monkeypatch) -> None:
    user = tmp_path / "profiles.toml"
    user.write_text('version = 1\n[profiles.lax]\nname = "Lax"\nhigh_c = 8.0\n')
    monkeypatch.setenv("COLDTRACE_ALERTS_PROFILES_FILE", str(user))
    report = analyze_json(capsys, "--profile", "lax", str(ISO))
    assert report["verdict"] == "compliant"


def test_a_configured_defrost_window_suppresses_the_excursion(capsys) -> None:
    # local times (Europe/Paris) around the door excursion of 08:45..09:03
    window = "2026-07-14T08:40/2026-07-14T09:10"
    report = analyze_json(
        capsys, "--profile", "chilled", "--tz", "Europe/Paris", "--suppress", window, str(FRENCH)
    )
    assert report["verdict"] == "compliant"
    assert [(b["suppressed"], b["verdict"]) for b in report["breaches"]] == [
        (True, "suppressed"),
        (True, "suppressed"),
    ]
    # a window that ends before the excursion does: it alarms
    early = "2026-07-14T08:40/2026-07-14T08:50"
    report = analyze_json(
        capsys,
        "--profile",
        "chilled",
        "--tz",
        "Europe/Paris",
        "--suppress",
        early,
        str(FRENCH),
        code=1,
    )
    assert report["verdict"] == "not compliant"


def test_a_bad_suppression_window_is_refused(capsys) -> None:
    assert main(["analyze", "--profile", "chilled", "--suppress", "08:00", str(ISO)]) == 2
    assert "--suppress '08:00': use START/END" in capsys.readouterr().err


def test_impossible_values_are_probe_faults_as_in_the_live_stage(capsys, tmp_path: Path) -> None:
    # one reading a minute; the probe reads -127 (DS18B20 disconnected) for minutes 20..31
    rows = [
        f"{1784007600 + 60 * i},{-127.0 if 20 <= i < 32 else 3.0 + (i % 3) / 10}" for i in range(60)
    ]
    path = tmp_path / "disconnected.csv"
    path.write_text("time,product\n" + "\n".join(rows) + "\n")
    report = analyze_json(capsys, "--profile", "chilled", "--unit", "C", str(path), code=1)
    [probe] = report["probes"]
    assert (probe["readings"], probe["min_c"]) == (48, 3.0)  # -127 is no temperature
    assert [(b["rule"], b["start"], b["end"], b["verdict"]) for b in report["breaches"]] == [
        ("probe_fault", "2026-07-14T06:00:00+00:00", "2026-07-14T06:12:00+00:00", "probe fault")
    ]
    # no temperature from minute 19 to 32: 13 min, longer than the 10 the profile allows
    assert report["gaps"] == [
        {
            "probe": "product",
            "start": "2026-07-14T05:59:00+00:00",
            "end": "2026-07-14T06:12:00+00:00",
            "minutes": 13.0,
        }
    ]
    assert report["verdict"] == "incomplete"
