"""Rule evaluation throughput: readings per second for evaluation alone, on one core.

Generates one probe's readings (30 s apart, around +3 C with excursions every few hours and
a door opening at each stop) and measures, per profile:

  rules     the profile's RuleSet.run over the readings in batches of 50, rule by rule (the
            pure rules, nothing else)
  engine    ProbeEngine.add in in-order batches of 50 (dedup, sorted merge, the state kept
            per reading for late data, the change view): what the live stage does per probe

Profiles: `chilled` (one-sided excursion high and low, cumulative, probe fault, stuck) and
`pharma` (all rules on, MKT included), plus `deep-frozen` with loading suppression by the
door. The target (issue 3) is at least 200,000 readings/s per core for evaluation alone.

    .venv/bin/python benchmarks/rules_throughput.py [--readings 200000] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import time

from alerts.engine import ProbeEngine
from alerts.rules import MINUTE_MS, ProbeRules, RuleSet, Sample
from coldtrace.profiles import load_profiles

T0 = 1_784_007_600_000


def readings(n: int, base: float, seed: int = 1) -> list[Sample]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        minute = i / 2
        excursion = 3.0 if (minute % 240) < 25 else 0.0  # 25 min warm every 4 h
        wobble = 0.5 * math.sin(minute / 30) + rnd.gauss(0, 0.1)
        door = (minute % 90) < 4  # a stop every 1.5 h with the door open 4 min
        out.append(Sample(T0 + i * MINUTE_MS // 2, i, round(base + excursion + wobble, 2), door))
    return out


def time_rules(rules: RuleSet, samples: list[Sample], batch: int = 50) -> float:
    state = rules.initial()
    start = time.perf_counter()
    for i in range(0, len(samples), batch):
        state, _, _ = rules.run(state, samples[i : i + batch], [])
    return len(samples) / (time.perf_counter() - start)


def time_engine(rules: RuleSet, samples: list[Sample], batch: int = 50) -> float:
    engine = ProbeEngine(rules, horizon_ms=48 * 60 * MINUTE_MS)
    start = time.perf_counter()
    for i in range(0, len(samples), batch):
        engine.add(samples[i : i + batch])
    return len(samples) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    profiles = load_profiles()
    results = []
    for pid, base in (("chilled", 3.0), ("pharma", 5.0), ("deep-frozen", -20.0)):
        samples = readings(args.readings, base)
        rules = ProbeRules(profiles[pid])
        rule_rates = [time_rules(rules, samples) for _ in range(args.runs)]
        engine_rates = [time_engine(rules, samples) for _ in range(args.runs)]
        results.append(
            {
                "profile": pid,
                "rules": [r.name for r in rules.rules],
                "rules_per_s": round(statistics.median(rule_rates)),
                "rules_best_per_s": round(max(rule_rates)),
                "engine_per_s": round(statistics.median(engine_rates)),
                "engine_best_per_s": round(max(engine_rates)),
            }
        )
    report = {
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "readings": args.readings,
        "runs": args.runs,
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"python {report['python']}, {args.readings} readings, {args.runs} runs (median/best)")
    for r in results:
        print(
            f"{r['profile']:12} rules {r['rules_per_s']:>9,} / {r['rules_best_per_s']:>9,}/s"
            f"   engine {r['engine_per_s']:>9,} / {r['engine_best_per_s']:>9,}/s"
            f"   ({', '.join(r['rules'])})"
        )


if __name__ == "__main__":
    main()
