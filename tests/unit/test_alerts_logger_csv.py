"""Logger exports in the shapes loggers write them, and the profiles file a user adds."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts.logger_csv import LoggerFileError, decode_logger_file, read_logger_csv
from coldtrace.profiles import ProfileError, load_profiles

PARIS = ZoneInfo("Europe/Paris")
T0 = 1_784_007_600_000  # 2026-07-14T05:40:00Z = 07:40 in Paris


@pytest.mark.parametrize(
    "text",
    [
        "time\tprobe\n1784007600000\t2.5\n1784007660000\t2.6\n",  # tab, epoch ms
        "Datum;Sonde\n14.07.2026 07:40;2,5\n14.07.2026 07:41;2,6\n",  # one date-time column
        "timestamp,probe\n2026-07-14T05:40:00Z,2.5\n2026-07-14T05:41:00Z,2.6\n",  # Z suffix
        "\ufeffdate,probe\n2026-07-14 07:40:00,2.5\n2026-07-14 07:41:00,2.6\n",  # BOM, naive
    ],
    ids=["tab-epoch-ms", "german-dots", "iso-z", "bom-naive-local"],
)
def test_shapes_of_exports(text: str) -> None:
    series = read_logger_csv(decode_logger_file(text.encode())[0], PARIS, unit="C")
    assert series.times == [T0, T0 + 60_000]
    assert list(series.values.values()) == [[2.5, 2.6]]


def test_cp1252_export_is_read() -> None:
    data = "Date;Heure;Temp\xe9rature [\xb0C]\n14/07/2026;07:40:00;2,5\n".encode("cp1252")
    text, encoding = decode_logger_file(data)
    series = read_logger_csv(text, PARIS)
    assert encoding == "cp1252"
    assert series.probes == ["Température [°C]"] and series.times == [T0]


def test_a_file_with_only_a_header_is_refused() -> None:
    with pytest.raises(LoggerFileError, match=r"no readings after the header \(line 1\)"):
        read_logger_csv("timestamp,probe\n", PARIS, unit="C")


def test_user_profile_errors_name_the_file_profile_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "mine.toml"
    bad.write_text('version = 1\n[profiles.lab]\nname = "Lab"\nlow_c = 8.0\nhigh_c = 2.0\n')
    with pytest.raises(ProfileError, match=r"mine.toml: profile 'lab', profile: .*below high_c"):
        load_profiles(bad)
    bad.write_text('version = 1\n[profiles.lab]\nname = "Lab"\nhigh_c = 8.0\ndelay_min = -1\n')
    with pytest.raises(ProfileError, match=r"profile 'lab', delay_min: "):
        load_profiles(bad)
    bad.write_text('[profiles.lab]\nname = "Lab"\nhigh_c = 8.0\n')
    with pytest.raises(ProfileError, match="needs `version = 1`"):
        load_profiles(bad)


def test_a_user_profile_replaces_a_shipped_one(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text('version = 1\n[profiles.chilled]\nname = "Chilled, ours"\nhigh_c = 5.0\n')
    profiles = load_profiles(mine)
    assert profiles["chilled"].high_c == 5.0 and "pharma" in profiles


def test_skipping_a_column_the_file_does_not_have_is_refused() -> None:
    text = "Date;Temp (°C);Battery\n2026-07-14T08:00:00+02:00;3,0;98\n"
    with pytest.raises(LoggerFileError) as refused:
        read_logger_csv(text, skip=["Temp (C)"])
    assert str(refused.value) == (
        "--skip 'Temp (C)': no such column (the columns: 'Date', 'Temp (°C)', 'Battery')"
    )
    assert read_logger_csv(text, skip=["Battery"]).skipped == [("Battery", "skipped by --skip")]
