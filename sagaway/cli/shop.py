"""`sagaway shop`: the reference shop. `shop serve` runs the HTTP service with its providers
(as child processes unless their URLs are given) and its worker processes; `shop sale` runs it
through a sale day (`sagaway.shop.sale`)."""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sagaway.cli import CliError, port_number, whole_number
from sagaway.cli.runs import add_db_option

PROVIDERS = ("payment", "inventory", "mail")


def register(commands: argparse._SubParsersAction) -> None:
    """Add `shop` and its actions."""
    group = commands.add_parser("shop", help="the reference shop: an HTTP checkout on sagaway")
    actions = group.add_subparsers(dest="shop_command", metavar="ACTION")
    actions.required = True
    serve = actions.add_parser(
        "serve",
        help="serve the shop with its providers and workers",
        description="Start the shop's providers (unless their URLs are given), N worker "
        "processes and the HTTP service; SIGTERM or Ctrl-C stops them all (docs/shop.md).",
    )
    add_db_option(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument(
        "--port", type=port_number, default=8000, help=f"port ({port_number.span}; 8000; 0: any)"
    )
    workers = whole_number(0, 64)
    serve.add_argument(
        "--workers", type=workers, default=1, help=f"worker processes ({workers.span}; 1)"
    )
    serve.add_argument("--log-dir", metavar="DIR", help="write DIR/access.log (ALB format)")
    serve.add_argument(
        "--providers-dir",
        metavar="DIR",
        default="shop-providers",
        help="where started providers keep their SQLite files (shop-providers)",
    )
    for kind in PROVIDERS:
        serve.add_argument(f"--{kind}-url", metavar="URL", help=f"a running {kind} provider")
    bound = whole_number(1, 100_000)
    shedding = serve.add_mutually_exclusive_group()
    shedding.add_argument(
        "--max-in-flight",
        type=bound,
        metavar="N",
        help=f"a fixed in-flight limit ({bound.span}; default: adaptive)",
    )
    shedding.add_argument("--no-shedding", action="store_true", help="never shed requests")
    serve.set_defaults(handler=serve_shop)
    from sagaway.cli.shop_sale import register_sale

    register_sale(actions)


def _start_provider(kind: str, folder: Path, children: list[subprocess.Popen]) -> str:
    """Start a provider on a free port; its URL once it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sagaway.shop.providers", kind, "--port", "0",
         "--db", str(folder / f"{kind}.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    children.append(process)
    assert process.stdout is not None
    output = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if select.select([process.stdout], [], [], 0.1)[0]:
            line = process.stdout.readline()
            output += line
            if line.startswith(b"listening on "):
                threading.Thread(target=process.stdout.read, daemon=True).start()
                return line.decode().split("listening on ", 1)[1].strip()
            if not line:
                break
    raise CliError(f"the {kind} provider did not start: {output.decode(errors='replace')}")


def _stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 10
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def serve_shop(args: argparse.Namespace) -> int:
    """Start everything, serve until a signal, stop everything."""
    try:
        import uvicorn

        from sagaway.shop.flows import ShopConfig, build_app
        from sagaway.shop.service import ShopSettings, create_shop
    except ImportError as exc:
        raise CliError(
            f"the shop needs the api extra ({exc}): pip install 'sagaway[shop]'"
        ) from None
    from sagaway.errors import SagawayError
    from sagaway.store import resolve_url

    db = resolve_url(args.db)
    children: list[subprocess.Popen] = []
    # SIGTERM stops uvicorn like Ctrl-C; before uvicorn runs, it stops the start-up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        urls = {k: getattr(args, f"{k}_url") for k in PROVIDERS}
        if not all(urls.values()):
            folder = Path(args.providers_dir)
            folder.mkdir(parents=True, exist_ok=True)
            for kind in PROVIDERS:
                urls[kind] = urls[kind] or _start_provider(kind, folder, children)
        env = {**os.environ, "SAGAWAY_DB": db}
        env.update({f"SAGAWAY_SHOP_{k.upper()}_URL": url for k, url in urls.items()})
        config = ShopConfig.from_env(env)
        settings = ShopSettings(
            max_in_flight=args.max_in_flight,
            shedding=not args.no_shedding,
            log_dir=args.log_dir,
            inventory_url=urls["inventory"],
        )
        app = build_app(_with_pool(db, settings.pool_size()), config)
        try:
            server_app = create_shop(app, settings)
        except SagawayError as exc:
            raise CliError(str(exc)) from None
        for _ in range(args.workers):
            children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "sagaway.cli",
                        "worker",
                        "sagaway.shop.flows:app",
                        "--quiet",
                    ],
                    env=env,
                )
            )
        server = uvicorn.Server(
            uvicorn.Config(
                server_app, host=args.host, port=args.port, log_level="warning", access_log=False
            )
        )
        threading.Thread(target=_announce, args=(server, args.host), daemon=True).start()
        server.run()
        app.close()
    except KeyboardInterrupt:
        pass
    finally:
        _stop(children)
    return 0


def _with_pool(url: str, size: int) -> str:
    """The service's store URL: on PostgreSQL its pool is sized from the in-flight bound,
    unless the URL says otherwise."""
    if url.split("://", 1)[0] not in ("postgres", "postgresql") or "pool_size=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}pool_size={size}"


def _announce(server: Any, host: str) -> None:
    """Print the start line once uvicorn listens."""
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    print(f"shop listening on http://{host}:{port}", flush=True)
