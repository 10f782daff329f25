"""`coldtrace keys`: API keys (create, shown once; list; revoke)."""

from __future__ import annotations

import argparse
import sys

from coldtrace.cli.args import row_id
from coldtrace.cli.operator import operator_store
from coldtrace.cli.output import emit
from coldtrace.settings import Settings


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    from coldtrace.api.keys import Role, create_key, list_keys, revoke_key
    from coldtrace.deliveries.store import Conflict, NotFound

    store = operator_store(settings)
    try:
        if args.action == "create":
            new = create_key(store, Role(args.role), args.customer, args.label)
            store.session.commit()
            row: dict[str, object] = {
                "id": new.id,
                "role": new.role.value,
                "customer": new.customer_id,
                "key": new.key,
            }
            emit([row], args.json)
            if not args.json:
                print(
                    "\nthe key is shown only now: store it; coldtrace keeps only its hash",
                    file=sys.stderr,
                )
        elif args.action == "revoke":
            revoke_key(store, args.id)
            store.session.commit()
            print(f"key {args.id} revoked")
        else:
            rows: list[dict[str, object]] = [
                {
                    "id": k.id,
                    "prefix": k.prefix,
                    "role": k.role,
                    "customer": k.customer_id,
                    "label": k.label,
                    "revoked": k.revoked_ms is not None,
                }
                for k in list_keys(store.session)
            ]
            emit(rows, args.json)
    except (Conflict, NotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("keys", help="API keys: create (shown once), list, revoke")
    keys = p.add_subparsers(dest="action", required=True)
    k = keys.add_parser("create")
    k.add_argument("--role", required=True, choices=["admin", "quality", "dispatcher", "customer"])
    k.add_argument("--customer", help="the customer a customer key is bound to")
    k.add_argument("--label", help="who or what uses the key")
    k.add_argument("--json", action="store_true")
    k = keys.add_parser("list")
    k.add_argument("--json", action="store_true")
    k = keys.add_parser("revoke")
    k.add_argument("id", type=row_id, help="its id (`coldtrace keys list`)")
    p.set_defaults(func=cmd_keys)
