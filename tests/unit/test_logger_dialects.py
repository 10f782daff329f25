"""Property: the same readings written in every dialect the logger reader supports give the
same analysis (figures, breaches, gaps, verdict): separator, decimal comma, encoding, date
order, local times with and without offsets (across summer-time changes), C or F."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.analysis import analyze
from alerts.evaluation import Evaluation
from alerts.logger_csv import decode_logger_file, read_logger_csv
from coldtrace.profiles import get_profile, load_profiles

PARIS = ZoneInfo("Europe/Paris")
CHILLED = get_profile(load_profiles(None), "chilled")
# Starts around the two changes of Europe/Paris summer time, and a plain summer day.
STARTS = [
    datetime(2025, 10, 25, 23, 30, tzinfo=UTC),  # the autumn repeat at 00:00-01:00Z
    datetime(2026, 3, 29, 0, 20, tzinfo=UTC),  # the spring jump at 01:00Z
    datetime(2026, 7, 14, 5, 40, tzinfo=UTC),
]

readings = st.tuples(
    st.sampled_from(STARTS),
    st.lists(
        st.tuples(
            st.integers(1, 59),  # minutes since the previous reading (under the repeat's hour)
            st.one_of(st.none(), st.integers(-30, 90).map(lambda x: x / 10)),  # C, 0.1 C
        ),
        min_size=2,
        max_size=40,
    ),
)

DIALECTS = st.fixed_dictionaries(
    {
        "sep": st.sampled_from([",", ";", "\t"]),
        "comma": st.booleans(),
        "encoding": st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]),
        "time": st.sampled_from(["dmy", "mdy", "ymd", "iso-offset", "header-gmt", "epoch"]),
        "split": st.booleans(),  # date and time in two columns
        "unit": st.sampled_from(["C", "F"]),
        "trailing": st.booleans(),
        "given_order": st.booleans(),
    }
)


def write(start: datetime, rows: list[tuple[int, float | None]], d: dict) -> bytes:
    sep = d["sep"]
    comma = d["comma"] and sep != ","

    def value(c: float | None) -> str:
        if c is None:
            return ""
        v = round(c * 1.8 + 32, 2) if d["unit"] == "F" else c
        text = f"{v:.2f}"
        return text.replace(".", ",") if comma else text

    def when(t: datetime) -> list[str]:
        if d["time"] == "epoch":
            return [str(int(t.timestamp()))]
        if d["time"] == "iso-offset":
            return [t.astimezone(PARIS).isoformat()]
        wall = t.astimezone(timezone(timedelta(hours=2)) if d["time"] == "header-gmt" else PARIS)
        date = {"dmy": "%d/%m/%Y", "mdy": "%m/%d/%Y"}.get(d["time"], "%Y-%m-%d")
        parts = [wall.strftime(date), wall.strftime("%H:%M:%S")]
        return parts if d["split"] else [" ".join(parts)]

    unit = "°F" if d["unit"] == "F" else "°C"
    zone = ", GMT+02:00" if d["time"] == "header-gmt" else ""
    time_head = ["Date", "Time"] if d["split"] and d["time"] not in ("epoch", "iso-offset") else []
    header = [*(time_head or [f"Date Time{zone}"]), f"Temp ({unit})"]
    if zone and time_head:
        header[0] = f"Date{zone}"
    header = [f'"{h}"' if sep in h else h for h in header]
    lines = [sep.join(header) + (sep if d["trailing"] else "")]
    t = start
    for step, c in rows:
        t += timedelta(minutes=step)
        lines.append(sep.join([*when(t), value(c)]) + (sep if d["trailing"] else ""))
    return ("\r\n".join(lines) + "\r\n").encode(d["encoding"])


def judged(data: bytes, d: dict) -> Evaluation:
    text, _ = decode_logger_file(data)
    naive = d["time"] in ("dmy", "mdy", "ymd")
    order = d["time"] if naive and d["given_order"] else None
    series = read_logger_csv(text, PARIS if naive else None, date_order=order)  # type: ignore[arg-type]
    e = analyze(series, CHILLED).evaluation
    return replace(
        e,
        probes=[replace(p, probe="") for p in e.probes],
        breaches=[replace(b, probe="") for b in e.breaches],
        gaps=[replace(g, probe="") for g in e.gaps],
        reasons=[],
    )


REFERENCE = {
    "sep": ",",
    "comma": False,
    "encoding": "utf-8",
    "time": "iso-offset",
    "split": False,
    "unit": "C",
    "trailing": False,
    "given_order": False,
}


@settings(max_examples=300, deadline=None)
@given(readings, DIALECTS)
def test_every_dialect_gives_the_same_analysis(data: tuple, dialect: dict) -> None:
    start, rows = data
    rows[0] = (rows[0][0], 3.0)  # a temperature to judge, whatever else is missing
    # (every start's day is above 12, so a file's date order is decidable without being given)
    assert judged(write(start, rows, dialect), dialect) == judged(
        write(start, rows, REFERENCE), REFERENCE
    )
