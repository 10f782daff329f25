"""`coldtrace schema`: print the wire contract's JSON Schema."""

from __future__ import annotations

import argparse
import json

from coldtrace.contract import json_schema
from coldtrace.settings import Settings


def cmd_schema(settings: Settings, args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("schema", help="print the wire contract's JSON Schema")
    p.set_defaults(func=cmd_schema, generate_secrets=False)
