"""`sagaway tokens ...`: create, list and revoke the HTTP API's bearer tokens."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from sagaway.cli import CliError
from sagaway.cli.runs import _steer, add_db_option, add_json_option


def register(commands: argparse._SubParsersAction) -> None:
    tokens = commands.add_parser("tokens", help="create, list and revoke HTTP API tokens")
    sub = tokens.add_subparsers(dest="tokens_command", metavar="ACTION")
    sub.required = True

    create = sub.add_parser(
        "create",
        help="create a token; it is printed once, alone on the last line",
        description="Create an API token. Only its hash is stored: keep the printed token, "
        "it cannot be shown again. viewer reads; operator also signals, cancels, redrives "
        "and forks runs; admin also manages tokens.",
    )
    add_db_option(create)
    create.add_argument(
        "--role", required=True, choices=("viewer", "operator", "admin"), help="what it may do"
    )
    create.add_argument("--name", help="a name for people and the audit log")
    add_json_option(create)
    create.set_defaults(handler=create_token)

    listing = sub.add_parser("list", help="list tokens (never the tokens themselves)")
    add_db_option(listing)
    add_json_option(listing)
    listing.set_defaults(handler=list_tokens)

    revoke = sub.add_parser("revoke", help="revoke a token: it and its sessions stop at once")
    add_db_option(revoke)
    revoke.add_argument("token_id", metavar="ID", help="the token's id, from `tokens list`")
    add_json_option(revoke)
    revoke.set_defaults(handler=revoke_token)


def _with_store(args: argparse.Namespace, action: Any, read_only: bool = False) -> Any:
    return _steer(args, lambda app: action(app.store), read_only)


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _record(record: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "role": record.role,
        "created_at": record.created_at,
        "revoked_at": record.revoked_at,
    }


def create_token(args: argparse.Namespace) -> int:
    from sagaway.api.access import cli_actor, issue_token

    record, token = _with_store(
        args, lambda store: issue_token(store, args.role, args.name, cli_actor())
    )
    if args.json:
        print(json.dumps({**_record(record), "token": token}, ensure_ascii=False))
        return 0
    print(
        f"created {record.role} token {record.id} ({record.name}); keep it, it is not shown again:"
    )
    print(token)
    return 0


def list_tokens(args: argparse.Namespace) -> int:
    records = _with_store(args, lambda store: store.tokens(), read_only=True)
    if args.json:
        print(json.dumps([_record(r) for r in records], indent=2, ensure_ascii=False))
        return 0
    if not records:
        print("no tokens: create one with `sagaway tokens create --role viewer|operator|admin`")
        return 0
    print(f"{'id':<14}{'role':<10}{'created (UTC)':<21}{'revoked (UTC)':<21}name")
    for r in records:
        print(f"{r.id:<14}{r.role:<10}{_when(r.created_at):<21}{_when(r.revoked_at):<21}{r.name}")
    return 0


def revoke_token(args: argparse.Namespace) -> int:
    from sagaway.api.access import cli_actor
    from sagaway.api.access import revoke_token as revoke

    record = _with_store(args, lambda store: revoke(store, args.token_id, cli_actor()))
    if record is None:
        raise CliError(f"no token with id {args.token_id!r}: list them with `sagaway tokens list`")
    if args.json:
        print(json.dumps(_record(record), ensure_ascii=False))
    else:
        print(f"revoked token {record.id} ({record.name}); its sessions ended")
    return 0
