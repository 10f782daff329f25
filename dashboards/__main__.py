"""``python -m dashboards``: (re)write dashboards/grafana/ from dashboards/definitions.py;
``--check``: exit 1 naming the files that are not what the definitions render."""

from __future__ import annotations

import argparse
import sys

from dashboards import files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = files.stale()
        for p in stale:
            sys.stderr.write(f"dashboards/grafana/{p} is stale: run python -m dashboards\n")
        return 1 if stale else 0
    for p in files.write():
        sys.stdout.write(f"wrote dashboards/grafana/{p}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
