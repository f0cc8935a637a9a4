"""`python -m sagaway.shop.providers {payment|inventory|mail} --port P --db PATH`."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from sagaway.shop.providers import KINDS, Inventory, Provider, serve


def _stock(text: str) -> dict[str, int]:
    try:
        pairs = [part.split("=", 1) for part in text.split(",") if part]
        return {sku.strip(): int(n) for sku, n in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write sku=units pairs separated by commas, e.g. mug=100,tee=50"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one provider until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m sagaway.shop.providers", description="Run one of the shop's providers."
    )
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--port", type=int, default=0, help="port (0: any free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--db", required=True, help="the provider's SQLite file")
    parser.add_argument(
        "--stock", type=_stock, help="inventory: units at the start, e.g. mug=100,tee=50"
    )
    args = parser.parse_args(argv)
    provider: Provider = (
        Inventory(args.db, args.stock) if args.kind == "inventory" else KINDS[args.kind](args.db)
    )
    server = serve(provider, args.port, args.host)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
