"""`coldtrace analyze`: judge a temperature-logger export against a profile."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from coldtrace.cli.output import table
from coldtrace.settings import Settings


def cmd_analyze(settings: Settings, args: argparse.Namespace) -> int:
    from alerts.analysis import analyze, as_json, parse_window
    from alerts.evaluation import COMPLIANT
    from alerts.logger_csv import LoggerFileError, decode_logger_file, read_logger_csv
    from alerts.logger_times import TimeError, parse_zone
    from coldtrace.bootstrap import checked_profiles
    from coldtrace.profiles import ProfileError, get_profile

    try:
        tz = None if args.tz is None else parse_zone(args.tz)
    except TimeError as exc:
        print(f"error: --tz: {exc}", file=sys.stderr)
        return 2
    try:
        profile = get_profile(checked_profiles(settings), args.profile)
        text, encoding = decode_logger_file(args.file.read_bytes())
        series = read_logger_csv(
            text, tz, date_order=args.date_order, unit=args.unit, skip=args.skip
        )
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (LoggerFileError, OSError) as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    try:
        windows = [parse_window(w, series.zone) for w in args.suppress]
    except ValueError as exc:
        print(f"error: --suppress {exc}", file=sys.stderr)
        return 2
    analysis = analyze(series, profile, windows)
    if args.plot is not None:
        # matplotlib's one-time notice that it built its font cache is no news to the user
        logging.getLogger("matplotlib").setLevel(logging.WARNING)
        from alerts.chart import ChartError, plot

        try:
            plot(analysis, args.plot)
        except ChartError as exc:
            print(f"error: --plot {exc}", file=sys.stderr)
            return 2
    report = as_json(analysis)
    separator = {"\t": "tab", ";": "semicolon", ",": "comma"}[series.delimiter]
    report["read_as"] = {
        "encoding": encoding,
        "separator": separator,
        "date_order": series.date_order,
    }
    code = 0 if analysis.evaluation.verdict == COMPLIANT else 1
    if args.json:
        print(json.dumps(report, indent=2))
        return code
    print(f"{args.file}: {report['readings']} readings, {report['first']} .. {report['last']}")
    print(
        f"read as {encoding}, {separator}-separated, dates {series.date_order}, "
        f"times in {report['zone']}"
    )
    print(f"profile {profile.id} ({profile.name})\n")
    print(table(report["probes"]))  # type: ignore[arg-type]
    if series.skipped:
        print("\nnot temperatures, skipped:")
        print(table(report["skipped"]))  # type: ignore[arg-type]
    if series.footer:
        print(f"\nlines {series.footer[0]}..{series.footer[1]} after the data: footer, ignored")
    print()
    print(table(report["breaches"]) if report["breaches"] else "no breach")  # type: ignore[arg-type]
    if report["gaps"]:
        print("\ndata gaps (no temperature for longer than the record vouches for):")
        print(table(report["gaps"]))  # type: ignore[arg-type]
    if args.plot is not None:
        print(f"\nchart: {args.plot}")
    print(f"\nMKT {report['mkt_c']} C; verdict: {str(report['verdict']).upper()}")
    return code


ANALYZE_EPILOG = """\
exit status:
  0  the file is compliant with the profile
  1  not compliant, or incomplete (data gaps, probe faults: the record cannot vouch for
     the whole trip)
  2  unusable input: the file, a column, a time or an option cannot be read (the message
     says which and what to pass)
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "analyze",
        help="judge a temperature-logger export (CSV/TSV, any vendor) against a profile",
        epilog=ANALYZE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--profile", required=True, help="profile id, e.g. chilled, pharma")
    p.add_argument(
        "--tz",
        default=None,
        help="zone of times without an offset when the header names none: an IANA name "
        "(Europe/Paris) or an offset (+01:00); required for such files",
    )
    p.add_argument(
        "--date-order",
        choices=["dmy", "mdy", "ymd"],
        default=None,
        help="order of day, month and year in dates like 07/08/2026, when the file cannot "
        "tell (a field above 12, or rows weeks apart otherwise, decides it)",
    )
    p.add_argument(
        "--unit",
        choices=["C", "F", "K"],
        default=None,
        help="unit of temperature columns whose header states none",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="COLUMN",
        help="a column (its header) that is not a temperature; repeatable",
    )
    p.add_argument(
        "--suppress",
        action="append",
        default=[],
        metavar="START/END",
        help="a defrost or loading window (ISO 8601): excursions inside are recorded, not "
        "counted (unless critical); repeatable",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE",
        help="write a chart of each probe against the profile's range, breaches shaded "
        "(.png or .svg)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_analyze, generate_secrets=False)
