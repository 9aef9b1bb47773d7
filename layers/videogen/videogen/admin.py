"""Operator commands for a deployed (or local) stack.

    python -m videogen.admin grant --user USER --credits N --grant-id G [--stack videogen-dev | --table T]
    python -m videogen.admin balance --user USER [--stack ... | --table ...]

The table comes from ``--table``, else ``TABLE_NAME``, else the ``JobsTableName``
output of ``--stack``. Grants are idempotent by ``--grant-id``: running the same
command twice grants once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import boto3

from videogen import wiring
from videogen.domain.errors import DomainError
from videogen.services.credits import grant_credits


def table_name(args: argparse.Namespace) -> str:
    if args.table:
        return str(args.table)
    if os.environ.get("TABLE_NAME") and not args.stack:
        return os.environ["TABLE_NAME"]
    if not args.stack:
        raise SystemExit("give --table, set TABLE_NAME, or give --stack to read the stack's outputs")
    stack = boto3.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
    for out in stack.get("Outputs", []):
        if out["OutputKey"] == "JobsTableName":
            return str(out["OutputValue"])
    raise SystemExit(f"stack {args.stack} has no JobsTableName output")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m videogen.admin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stack", help="CloudFormation stack name (reads its JobsTableName output)")
    parser.add_argument("--table", help="DynamoDB table name")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grant", help="grant credits to a user, once per grant id")
    g.add_argument("--user", required=True)
    g.add_argument("--credits", required=True, type=int)
    g.add_argument("--grant-id", required=True)
    b = sub.add_parser("balance", help="show a user's balance and ledger totals")
    b.add_argument("--user", required=True)
    args = parser.parse_args(argv)

    store = wiring.store_for(table_name(args))
    try:
        if args.command == "grant":
            applied = grant_credits(store, user_id=args.user, credits=args.credits, grant_id=args.grant_id)
            out = {
                "user": args.user,
                "grant_id": args.grant_id,
                "applied": applied,
                "balance": store.get_balance(args.user).balance,
            }
        else:
            out = {
                "user": args.user,
                "balance": store.get_balance(args.user).balance,
                "ledger_totals": store.ledger_totals(args.user),
            }
    except DomainError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
