"""`coldtrace analyze` on the field's logger files (../shared/fixtures/field, copied into
tests/fixtures/field so the suite stands alone): each gives the result the field README
states, asserted to the figure; and the kinds those files stand for, on files made here."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from coldtrace.cli import main

FIELD = Path(__file__).resolve().parent.parent / "fixtures" / "field"


def run(capsys: pytest.CaptureFixture[str], path: Path, *args: str, code: int = 0) -> dict:
    assert main(["analyze", "--json", "--profile", "chilled", *args, str(path)]) == code
    return json.loads(capsys.readouterr().out)


def figures(report: dict) -> list[tuple]:
    return [
        (
            p["probe"],
            p["min_c"],
            p["max_c"],
            p["mean_c"],
            p["in_range_min"],
            p["out_of_range_min"],
            p["in_range_pct"],
            p["mkt_c"],
        )
        for p in report["probes"]
    ]


def test_case_07_the_repeated_autumn_hour_is_the_second_pass(capsys) -> None:
    report = run(capsys, FIELD / "case-07-dst-fallback.csv", "--tz", "Europe/Paris", code=1)
    assert (report["first"], report["last"]) == (
        "2025-10-26T01:00:00+02:00",
        "2025-10-26T04:00:00+01:00",
    )
    # 6.5 C from 02:10 to 02:50 of the second pass (winter time): 01:10Z..02:00Z
    excursion = [b for b in report["breaches"] if b["rule"] == "excursion_high"]
    assert [
        (b["start"], b["end"], b["duration_min"], b["peak_c"], b["degree_minutes"])
        for b in excursion
    ] == [("2025-10-26T02:10:00+01:00", "2025-10-26T03:00:00+01:00", 50.0, 6.5, 125.0)]
    # 50 min above +4 C is also past the cumulative budget of 30 min (still within 24 h)
    assert [(b["rule"], b["start"], b["end"], b["through"]) for b in report["breaches"]] == [
        ("excursion_high", "2025-10-26T02:10:00+01:00", "2025-10-26T03:00:00+01:00", None),
        ("cumulative", "2025-10-26T02:50:00+01:00", None, "2025-10-26T04:00:00+01:00"),
    ]
    assert figures(report) == [("Température [°C]", 2.5, 6.5, 3.33, 190.0, 50.0, 79.17, 3.51)]
    assert (report["mkt_c"], report["verdict"], report["gaps"]) == (3.51, "not compliant", [])


@pytest.mark.parametrize(
    ("name", "args", "probe", "skipped"),
    [
        (
            "case-08-fahrenheit-header.csv",
            ("--tz", "Europe/Paris"),
            "Temperature (°F)",
            [],
        ),
        (
            "case-08b-hoboware-index-column-fahrenheit.csv",
            (),  # the header says GMT+02:00
            "Temp, °F (LGR S/N: 10000001)",
            [{"column": "#", "kind": "index"}],
        ),
    ],
    ids=["08", "08b-hoboware"],
)
def test_case_08_fahrenheit_is_converted(capsys, name, args, probe, skipped) -> None:
    report = run(capsys, FIELD / name, *args)
    assert (report["first"], report["last"]) == (
        "2026-07-14T07:40:00+02:00",
        "2026-07-14T08:35:00+02:00",
    )
    # 35.6..38.3 F is 2.0..3.5 C; mean over 55 min of holds
    assert figures(report) == [(probe, 2.0, 3.5, 2.77, 55.0, 0, 100.0, 2.79)]
    assert report["probes"][0]["unit"] == "F" and report["skipped"] == skipped
    assert (report["breaches"], report["verdict"]) == ([], "compliant")


def test_case_09_humidity_is_skipped_and_listed(capsys) -> None:
    report = run(capsys, FIELD / "case-09-rh-column.tsv", "--tz", "Europe/Paris")
    assert figures(report) == [("Temperature (*C) c:1", 2.8, 3.3, 3.04, 110.0, 0, 100.0, 3.04)]
    assert report["skipped"] == [{"column": "RH (%) c:2", "kind": "humidity"}]
    assert (report["breaches"], report["verdict"]) == ([], "compliant")


def test_case_10_utf16_unicode_text_reads_like_its_utf8_twin(capsys, tmp_path) -> None:
    path = FIELD / "case-10-utf16-excel-unicode-text.txt"
    report = run(capsys, path, "--tz", "Europe/Paris")
    assert figures(report) == [("Température [°C]", 3.0, 3.2, 3.1, 55.0, 0, 100.0, 3.1)]
    assert report["verdict"] == "compliant"
    assert report.pop("read_as") == {
        "encoding": "utf-16",
        "separator": "tab",
        "date_order": "dmy",
    }
    twin = tmp_path / "twin.csv"
    twin.write_bytes(path.read_bytes().decode("utf-16").encode("utf-8"))
    assert run(capsys, twin, "--tz", "Europe/Paris") == {
        **report,
        "read_as": {"encoding": "utf-8", "separator": "tab", "date_order": "dmy"},
    }


def test_case_11_a_trailing_separator_is_no_probe(capsys) -> None:
    report = run(capsys, FIELD / "case-11-trailing-delimiter.csv")  # header: GMT +02:00
    assert figures(report) == [("Temp (°C)", 3.0, 3.2, 3.1, 120.0, 0, 100.0, 3.1)]
    assert (report["breaches"], report["gaps"], report["verdict"]) == ([], [], "compliant")


def test_case_13_month_first_dates_are_inferred(capsys) -> None:
    report = run(capsys, FIELD / "case-13-us-month-first-dates.csv", "--tz", "Europe/Paris")
    # 07/08/2026 23:00 .. 07/09/2026 01:00 is 8 July 21:00Z to 9 July... 23:00Z: 2 h
    assert (report["first"], report["last"]) == (
        "2026-07-08T23:00:00+02:00",
        "2026-07-09T01:00:00+02:00",
    )
    assert figures(report) == [("Temperature (C)", 3.0, 3.2, 3.1, 120.0, 0, 100.0, 3.1)]
    assert (report["gaps"], report["verdict"]) == ([], "compliant")


def test_case_14_ds18b20_sentinels_are_probe_faults(capsys) -> None:
    report = run(capsys, FIELD / "case-14-ds18b20-85-power-on.csv")  # offsets in the times
    assert figures(report) == [("product_c", 2.9, 3.1, 3.02, 55.0, 0, 100.0, 3.02)]
    # 12 rows less 85.0 and -127.0, which are counted as faults, not left out unsaid
    assert (report["readings"], report["probes"][0]["readings"]) == (12, 10)
    assert report["probes"][0]["faults"] == 2
    assert (report["breaches"], report["verdict"]) == ([], "compliant")


def test_case_15_the_mean_is_weighted_by_time(capsys) -> None:
    report = run(capsys, FIELD / "case-15-uneven-interval-mean.csv")
    # 3.0 C for 225 min, 6.0 C for 10 min (the alarm's one-minute readings): 3.13, not 4.15;
    # the 15-min holds are the logger's interval, not data gaps
    assert figures(report) == [("product_c", 3.0, 6.0, 3.13, 225.0, 10.0, 95.74, 3.15)]
    assert (report["breaches"], report["gaps"], report["verdict"]) == ([], [], "compliant")


# -- the same kinds, beyond the field's files ------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "log.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def minutes(values: list[float], start: str = "2026-07-14T08:00:00+02:00") -> str:
    from datetime import datetime, timedelta

    t0 = datetime.fromisoformat(start)
    rows = [f"{(t0 + timedelta(minutes=i)).isoformat()},{v}" for i, v in enumerate(values)]
    return "timestamp,product_c\n" + "\n".join(rows) + "\n"


def test_an_open_breach_at_the_end_carries_its_peak_and_degree_minutes(capsys, tmp_path):
    # 3.0 for 10 min, then 5.0 rising 0.1 C a minute to 6.9 at the last reading
    values = [3.0] * 10 + [round(5.0 + 0.1 * k, 1) for k in range(20)]
    report = run(capsys, write(tmp_path, minutes(values)), code=1)
    excursion = report["breaches"][0]
    # no end: `through` says it was still out at the last reading (the table's END was blank)
    assert (excursion["rule"], excursion["start"], excursion["end"], excursion["through"]) == (
        "excursion_high",
        "2026-07-14T08:10:00+02:00",
        None,
        "2026-07-14T08:29:00+02:00",
    )
    # when it opened (08:25) the peak was 6.5 and 25.5 degree-minutes: now 6.9 and
    # 1.0 + 1.1 + ... + 2.8 (each held a minute; the last one holds no time yet)
    assert (excursion["peak_c"], excursion["degree_minutes"]) == (6.9, 36.1)


def test_a_gap_after_an_out_of_range_reading_is_a_data_gap(capsys, tmp_path) -> None:
    rows = minutes([3.0] * 10 + [6.0]).splitlines()
    after = minutes([3.0] * 11, start="2026-07-14T11:10:00+02:00").splitlines()[1:]
    report = run(capsys, write(tmp_path, "\n".join(rows + after) + "\n"), code=1)
    probe = report["probes"][0]
    # 08:00..08:10 and 11:10..11:20 in range; 6.0 at 08:10 then nothing for 3 h
    assert (probe["in_range_min"], probe["out_of_range_min"]) == (20.0, 0)
    assert report["gaps"] == [
        {
            "probe": "product_c",
            "start": "2026-07-14T08:10:00+02:00",
            "end": "2026-07-14T11:10:00+02:00",
            "minutes": 180.0,
        }
    ]
    assert (report["breaches"], report["verdict"]) == ([], "incomplete")


@pytest.mark.parametrize(
    ("header", "cell", "unit"),
    [
        ("Temp [°C]", "3.0", "C"),
        ("Temperatur (ºC)", "3,0", "C"),  # ordinal sign for a degree, decimal comma
        ("T1 degC", "3.0", "C"),
        ("Temperature (F)", "37.4", "F"),
        ("Temp *F", "37.4", "F"),
        ("Temperature Fahrenheit", "37.4", "F"),
        ("probe_k", "276.15", "K"),
        ("Température [K]", "276,15", "K"),
    ],
)
def test_units_in_vendors_spellings(capsys, tmp_path, header, cell, unit) -> None:
    sep = ";" if "," in cell else ","
    rows = "".join(f"14/07/2026 08:{m:02d}:00{sep}{cell}\n" for m in range(0, 30, 5))
    path = write(tmp_path, f"Date/Time{sep}{header}\n{rows}")
    report = run(capsys, path, "--tz", "Europe/Paris")
    assert [(p["unit"], p["min_c"], p["max_c"]) for p in report["probes"]] == [(unit, 3.0, 3.0)]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Temp (°R)", "column 'Temp (°R)': unknown unit '°R'"),
        ("Sonde", "column 'Sonde' states no unit: pass --unit C|F|K"),
    ],
)
def test_an_unknown_or_missing_unit_names_the_column(capsys, tmp_path, header, message):
    path = write(tmp_path, f"timestamp,{header}\n2026-07-14T08:00:00Z,3.0\n")
    assert main(["analyze", "--profile", "chilled", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_non_temperature_columns_are_skipped_and_listed(capsys, tmp_path) -> None:
    head = "Date Time (UTC),Temp (°C),Dew Pt (°C),RH (%),Batt (V),Logged,Door"
    rows = "".join(f"2026-07-14 08:{m:02d}:00,3.0,1.2,60,3.6,Logged,\n" for m in range(0, 30, 5))
    report = run(capsys, write(tmp_path, head + "\n" + rows))
    assert report["skipped"] == [
        {"column": "Dew Pt (°C)", "kind": "dew point"},
        {"column": "RH (%)", "kind": "humidity"},
        {"column": "Batt (V)", "kind": "battery"},
        {"column": "Logged", "kind": "event marker"},
        {"column": "Door", "kind": "event marker"},
    ]
    assert [p["probe"] for p in report["probes"]] == ["Temp (°C)"]


def test_preamble_and_footer_lines_are_not_data(capsys, tmp_path) -> None:
    rows = "".join(f"14/07/2026;08:{m:02d}:00;3,0\n" for m in range(0, 30, 5))
    text = "Logger;XT-2\nSerial;123\n\nDate;Heure;Temp [°C]\n" + rows + "\nMin;;3,0\nMax;;3,0\n"
    report = run(capsys, write(tmp_path, text), "--tz", "Europe/Paris")
    assert report["readings"] == 6 and report["footer_lines"] == [12, 13]
    # a line that is not data with data after it is an error, not a footer
    text = text.replace("08:10:00;3,0", "08:10:00;3,0;9;9")
    assert main(["analyze", "--profile", "chilled", "--tz", "UTC", str(write(tmp_path, text))]) == 2
    assert "line 7: 5 columns where the header (line 4) has 3" in capsys.readouterr().err


def test_undecidable_date_order_is_an_error_until_given(capsys, tmp_path) -> None:
    rows = "".join(f"07/08/2026 08:{m:02d}:00,3.0\n" for m in range(0, 30, 5))
    path = write(tmp_path, "Date Time,Temp (°C)\n" + rows)
    assert main(["analyze", "--profile", "chilled", "--tz", "UTC", str(path)]) == 2
    assert "pass --date-order dmy|mdy" in capsys.readouterr().err
    report = run(capsys, path, "--tz", "UTC", "--date-order", "dmy")
    assert report["first"] == "2026-08-07T08:00:00+00:00"
    report = run(capsys, path, "--tz", "UTC", "--date-order", "mdy")
    assert report["first"] == "2026-07-08T08:00:00+00:00"


def test_the_spring_gap_is_continuous_and_a_time_inside_it_is_an_error(capsys, tmp_path):
    # Europe/Paris, 2026-03-29: 02:00 local becomes 03:00
    rows = [f"29/03/2026 01:{m:02d}:00;3,0" for m in range(30, 60, 10)]
    rows += [f"29/03/2026 03:{m:02d}:00;3,0" for m in range(0, 30, 10)]
    path = write(tmp_path, "Date;Temp [°C]\n" + "\n".join(rows) + "\n")
    report = run(capsys, path, "--tz", "Europe/Paris")
    # 01:50+01:00 to 03:00+02:00 is 10 min, not 70: no data gap
    assert (report["gaps"], report["probes"][0]["in_range_min"]) == ([], 50.0)
    path = write(tmp_path, "Date;Temp [°C]\n29/03/2026 02:30:00;3,0\n")
    assert main(["analyze", "--profile", "chilled", "--tz", "Europe/Paris", str(path)]) == 2
    assert "line 2: 2026-03-29 02:30 does not exist in Europe/Paris" in capsys.readouterr().err


def test_exit_codes_are_in_the_help(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    out = capsys.readouterr().out
    assert "0  the file is compliant" in out and "2  unusable input" in out


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot_writes_a_chart_of_the_right_size(capsys, tmp_path, suffix) -> None:
    chart = tmp_path / f"chart{suffix}"
    report = run(
        capsys,
        FIELD / "case-07-dst-fallback.csv",
        "--tz",
        "Europe/Paris",
        "--plot",
        str(chart),
        code=1,
    )
    assert report["verdict"] == "not compliant"
    data = chart.read_bytes()
    if suffix == ".png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
        assert struct.unpack(">II", data[16:24]) == (1200, 600)
        assert data.endswith(b"IEND\xaeB`\x82")
    else:
        import xml.etree.ElementTree as ET

        svg = ET.fromstring(data)
        assert svg.tag == "{http://www.w3.org/2000/svg}svg"
        assert (svg.get("width"), svg.get("height")) == ("864pt", "432pt")  # 1200x600 px at 100 dpi


def test_plot_to_an_unknown_format_is_refused(capsys, tmp_path) -> None:
    path = FIELD / "case-11-trailing-delimiter.csv"
    assert (
        main(["analyze", "--profile", "chilled", "--plot", str(tmp_path / "c.gif"), str(path)]) == 2
    )
    assert "name a .png or .svg file" in capsys.readouterr().err


def test_nan_and_no_value_markers_are_readings_without_a_temperature(capsys, tmp_path) -> None:
    cells = ["3.0", "NaN", "3.1", "---", "3.0", "Err", "3.1", "85.0", "3.0"]
    rows = "".join(f"2026-07-14T08:{5 * i:02d}:00+02:00,{c}\n" for i, c in enumerate(cells))
    report = run(capsys, write(tmp_path, "timestamp,product_c\n" + rows))
    [probe] = report["probes"]
    assert (probe["readings"], probe["faults"], probe["min_c"], probe["max_c"]) == (5, 4, 3.0, 3.1)
    assert (report["gaps"], report["verdict"]) == ([], "compliant")  # 10-min holds at most


@pytest.mark.parametrize(
    ("preamble", "cell", "first"),
    [
        ("Time zone: Europe/Paris\n", "14-Jul-2026 08:00", "2026-07-14T08:00:00+02:00"),
        ("Fuseau horaire;UTC+01:00\n", "14 juil. 2026 08:00", "2026-07-14T08:00:00+01:00"),
        ("", "Jul 14, 2026 08:00:00 AM CEST", "2026-07-14T08:00:00+02:00"),
        ("", "14.07.2026 08:00 GMT+1", "2026-07-14T08:00:00+01:00"),
    ],
    ids=["preamble-iana", "preamble-offset-french-month", "named-month-cest", "gmt-offset"],
)
def test_zones_stated_in_the_preamble_or_the_times_and_named_months(
    capsys, tmp_path, preamble, cell, first
) -> None:
    sep = ";" if "," in cell else ","
    path = write(tmp_path, f"{preamble}Date{sep}Temp [°C]\n{cell}{sep}3.0 °C\n")
    report = run(capsys, path)  # no --tz: the file says where its times are
    assert report["first"] == first and report["probes"][0]["min_c"] == 3.0


def test_a_windows_zone_name_in_the_preamble_is_not_a_fixed_offset(capsys, tmp_path) -> None:
    text = "Time zone: (UTC+01:00) Brussels, Paris\nDate,Temp [°C]\n14/07/2026 08:00,3.0\n"
    assert main(["analyze", "--profile", "chilled", str(write(tmp_path, text))]) == 2
    assert "pass --tz" in capsys.readouterr().err


def test_units_on_a_line_of_their_own_under_the_header(capsys, tmp_path) -> None:
    text = "Datum;Zeit;T1;T2;Feuchte\n;;°C;°F;%RH\n14.07.2026;08:00:00;3,0;37,4;60\n"
    text += "14.07.2026;08:05:00;3,1;37,4;61\n"
    report = run(capsys, write(tmp_path, text), "--tz", "Europe/Berlin")
    assert [(p["probe"], p["unit"], p["max_c"]) for p in report["probes"]] == [
        ("T1 [°C]", "C", 3.1),
        ("T2 [°F]", "F", 3.0),
    ]
    assert report["skipped"] == [{"column": "Feuchte [%RH]", "kind": "humidity"}]


def test_a_header_followed_by_an_unreadable_time_says_so(capsys, tmp_path) -> None:
    path = write(tmp_path, "timestamp,t_c\n2026-13-45T00:00:00,3.0\n")
    assert main(["analyze", "--profile", "chilled", str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 1 looks like the header, but line 2's time '2026-13-45T00:00:00' cannot" in err


def test_two_columns_with_the_same_header_are_two_probes(capsys, tmp_path) -> None:
    rows = "".join(f"2026-07-14T08:{m:02d}:00Z,3.0,5.0\n" for m in range(0, 30, 5))
    report = run(capsys, write(tmp_path, "timestamp,T (°C),T (°C)\n" + rows), code=1)
    assert [(p["probe"], p["max_c"]) for p in report["probes"]] == [
        ("T (°C)", 3.0),
        ("T (°C) (column 3)", 5.0),
    ]


SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared is not beside the project")
@pytest.mark.parametrize("kind", ["field", "loggers"])
def test_the_copies_are_the_shared_files(kind: str) -> None:
    """The suite's copies are the shared fixtures as they are (the figures above are theirs)."""
    mine = FIELD.parent / kind
    for path in sorted(mine.iterdir()):
        assert path.read_bytes() == (SHARED / kind / path.name).read_bytes(), path.name
