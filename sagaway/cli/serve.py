"""`sagaway serve`: the operations HTTP API and dashboard for a store."""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
from typing import Any

from sagaway.cli import CliError, port_number
from sagaway.cli.runs import add_db_option


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API and dashboard for a store",
        description="Serve the operations API (/api/v1) and dashboard (/) for the runs of a "
        "store, while workers run in other processes. Requests need a token (`sagaway tokens "
        "create`); on an address other than loopback the server refuses to start while no "
        "token exists. Put it behind a reverse proxy with TLS (docs/api.md).",
    )
    add_db_option(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument(
        "--port", type=port_number, default=8080, help=f"port ({port_number.span}; 8080)"
    )
    serve.add_argument("--slo", metavar="FILE", help="a slo.yaml for the SLO views")
    serve.add_argument(
        "--alb-logs",
        metavar="PATH",
        action="append",
        help="ALB access log file or folder for the SLO views (repeat for several)",
    )
    serve.add_argument(
        "--alarms",
        metavar="FILE",
        help="an alarms.yaml whose engine-metric alarms the alarm views evaluate",
    )
    serve.add_argument(
        "--secure-cookies",
        action="store_true",
        help="mark session cookies Secure (set it when a TLS proxy is in front)",
    )
    serve.add_argument("--json", action="store_true", help="print the start line as JSON")
    serve.set_defaults(handler=serve_api)


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback
                for info in socket.getaddrinfo(host, None)
            )
        except OSError:
            return False


def serve_api(args: argparse.Namespace) -> int:
    from sagaway import App
    from sagaway.api.settings import ApiSettings
    from sagaway.errors import SagawayError
    from sagaway.store import open_store

    if bool(args.slo) != bool(args.alb_logs):
        raise CliError("--slo and --alb-logs go together: the SLO views need both")
    try:
        import uvicorn

        from sagaway.api import create_app
    except ImportError:
        raise CliError("serving needs FastAPI and uvicorn: pip install 'sagaway[api]'") from None
    try:
        store = open_store(args.db, create=False)
    except SagawayError as exc:
        raise CliError(str(exc)) from None
    tokens = [t for t in store.tokens() if t.revoked_at is None]
    if not tokens and not is_loopback(args.host):
        store.close()
        raise CliError(
            f"refusing to listen on {args.host}, which is not loopback, while no token exists: "
            "create one first with `sagaway tokens create --role admin`"
        )
    app = App(store=store, record_metrics=False)
    settings = ApiSettings(
        slo_spec=args.slo,
        alb_logs=tuple(args.alb_logs or ()),
        alarms=args.alarms,
        secure_cookies=args.secure_cookies,
    )
    try:
        server = create_app(app, settings)
    except (SagawayError, OSError) as exc:
        app.close()
        raise CliError(str(exc)) from None
    start: dict[str, Any] = {
        "url": f"http://{args.host}:{args.port}/",
        "store": store.description,
        "tokens": len(tokens),
    }
    if args.json:
        print(json.dumps(start), flush=True)
    else:
        print(f"serving the dashboard at {start['url']} for {start['store']}", flush=True)
        if not tokens:
            print(
                "no token exists yet: create one with `sagaway tokens create --role operator` "
                "to sign in",
                flush=True,
            )
    try:
        uvicorn.run(server, host=args.host, port=args.port, log_level="info")
    finally:
        app.close()
    return 0
