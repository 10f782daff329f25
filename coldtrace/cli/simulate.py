"""`coldtrace simulate`: a simulated fleet, or a ground-truth scenario played against the
pipeline."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time

from coldtrace.cli.output import emit, progress_printer, table
from coldtrace.contract import MAX_READINGS_PER_BATCH
from coldtrace.settings import Settings

# Exit status of a run whose readings are not all acknowledged by ingest (kept for the next
# run); 1 is a scenario's mismatch, 2 a refusal to run, 130 an interrupted run (the shell's
# 128 + SIGINT).
PENDING_EXIT = 3
INTERRUPTED_EXIT = 130


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    """A simulated fleet whose vans keep each reading until ingest acknowledges it: a table of
    sent, acknowledged and pending per device; exit 0 when all were acknowledged, else
    PENDING_EXIT with one line saying where they are kept and what to do. Interrupted (Ctrl-C,
    SIGTERM): the state as far as it got is kept, one line says what is pending,
    INTERRUPTED_EXIT."""
    from coldtrace.devtools.services import LocalServices, device_password
    from simulators.fleet import device_id
    from simulators.publish import PublishFailed, simulate
    from simulators.state import SimState

    if args.scenario:
        return _simulate_scenario(settings, args)
    state_file = settings.run_dir / "simulator-state.json"
    prefix = args.prefix or "van"
    vans = {device_id(i, prefix) for i in range(args.vehicles)}
    LocalServices(settings).register_devices(
        sorted(vans | set(SimState.load(state_file).holding()))
    )
    # SIGTERM as Ctrl-C: the run saves its vans' outboxes on the way out
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        tallies = simulate(
            settings,
            lambda d: device_password(settings, d),
            vehicles=args.vehicles,
            readings=args.readings,
            interval_s=args.interval,
            speedup=args.speedup,
            per_batch=args.batch,
            seed=args.seed,
            prefix=prefix,
            state_file=state_file,
            ack_timeout_s=args.ack_timeout,
            progress=progress_printer("acknowledged") if not args.json else None,
        )
    except PublishFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        state = SimState.load(state_file)
        held = sum(h.readings for d in state.holding() for h in state.pending(d))
        print(
            f"interrupted: {held} reading{'s' if held != 1 else ''} not yet acknowledged by "
            f"ingest kept in {state_file}; the next `coldtrace simulate` sends them first",
            file=sys.stderr,
        )
        return INTERRUPTED_EXIT
    rows: list[dict[str, object]] = [
        {
            "device": t.device,
            "sent": t.sent,
            "carried_over": t.carried,
            "acknowledged": t.acked,
            "pending": t.pending,
        }
        for t in tallies
    ]
    emit(rows, args.json)
    pending = sum(t.pending for t in tallies)
    if not pending:
        return 0
    print(
        f"{pending} reading{'s' if pending != 1 else ''} not yet acknowledged by ingest within "
        f"{args.ack_timeout:g} s (is `coldtrace ingest` running?); kept in {state_file}; the "
        "next `coldtrace simulate` sends them first",
        file=sys.stderr,
    )
    return PENDING_EXIT


def _simulate_scenario(settings: Settings, args: argparse.Namespace) -> int:
    """`simulate --scenario NAME`: play it against the running pipeline, print expected
    against found; exit 1 on any mismatch."""
    import secrets
    from datetime import datetime

    from coldtrace.bootstrap import checked_profiles
    from coldtrace.deliveries.trace import iso
    from coldtrace.devtools.services import ServiceError, device_password
    from simulators import scenario as scenarios
    from simulators.runner import RunFailed, Runner

    try:
        sc = scenarios.load(args.scenario)
        start = None if args.start is None else datetime.fromisoformat(args.start)
    except scenarios.ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError:
        print(
            f"error: --start {args.start!r}: use ISO 8601, e.g. 2026-11-30T08:00Z", file=sys.stderr
        )
        return 2
    key = args.api_key or os.environ.get("COLDTRACE_API_KEY")
    if not key:
        print(
            "error: an admin API key is needed: --api-key KEY or COLDTRACE_API_KEY "
            "(`coldtrace keys create --role admin`)",
            file=sys.stderr,
        )
        return 2
    prefix = args.prefix or f"sim{secrets.token_hex(3)}"
    now_ms = int(time.time() * 1000)
    placed = scenarios.place(
        sc,
        prefix,
        checked_profiles(settings),
        now_ms,
        settings.close_grace_s * 1000,
        None if start is None else round(start.timestamp() * 1000),
    )
    if placed.epoch_ms + placed.duration_ms > now_ms:
        print(
            "error: --start: the scenario would end in the future; start it earlier",
            file=sys.stderr,
        )
        return 2
    missing = scenarios.missing_settings(placed, settings, now_ms)
    if missing:
        setting = " ".join(f"{n}='{v}'" for n, v in missing.items())
        print(
            f"error: scenario {sc.name} needs ingest and the API run with {setting} (and "
            f"this command with the same; the API judges certificates by them): restart both "
            f"so, then run again with --prefix {prefix} --start {iso(placed.epoch_ms)}",
            file=sys.stderr,
        )
        return 2

    def progress(line: str) -> None:
        if not args.json:
            print(f"    {line}", file=sys.stderr, flush=True)

    api = args.api or f"http://{settings.api_host}:{settings.api_port}"
    runner = Runner(settings, api, key, lambda d: device_password(settings, d), progress)
    try:
        report = runner.run(placed)
    except (RunFailed, ServiceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        runner.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(f"scenario {sc.name}: {sc.title}")
        print(f"devices {prefix}-*, t+0 = {report.start}\n")
        print(table([dataclasses.asdict(c) for c in report.checks]))
        bad = len(report.mismatches)
        print(f"\n{bad} mismatch{'es' if bad != 1 else ''}" if bad else "\nall as expected")
    return 1 if report.mismatches else 0


def _batch_size(text: str) -> int:
    """--batch: a batch the wire contract takes (a larger one failed building it, a
    traceback; 0 sent every reading in one message)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_READINGS_PER_BATCH:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give 1 to {MAX_READINGS_PER_BATCH} readings per message"
        )
    return n


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate", help="publish a simulated fleet's telemetry")
    p.add_argument("--vehicles", type=int, default=10)
    p.add_argument("--readings", type=int, default=60, help="readings per vehicle")
    p.add_argument(
        "--interval", type=float, default=60.0, help="simulated seconds between readings"
    )
    p.add_argument("--speedup", type=float, default=60.0, help="time compression; 0 = flat out")
    p.add_argument(
        "--batch",
        type=_batch_size,
        default=1,
        help=f"readings per MQTT message (1..{MAX_READINGS_PER_BATCH}, the wire contract's most)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--ack-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait after the last reading for ingest's acknowledgements; what is "
        f"not acknowledged by then is kept for the next run (exit {PENDING_EXIT})",
    )
    p.add_argument(
        "--scenario",
        metavar="NAME",
        help="play a ground-truth scenario (simulators/scenarios/NAME.yaml) against the running "
        "pipeline (ingest with its rules stage, the API) and compare with its expected outcome",
    )
    p.add_argument("--api", help="with --scenario: the API's URL (default from COLDTRACE_API_*)")
    p.add_argument("--api-key", help="with --scenario: an admin key (or COLDTRACE_API_KEY)")
    p.add_argument(
        "--prefix",
        help="device ids PREFIX-NN (default: van); with --scenario PREFIX-<van> (default: new)",
    )
    p.add_argument(
        "--start", help="with --scenario: its t+0 (ISO 8601; default: so that it ends now)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_simulate)
