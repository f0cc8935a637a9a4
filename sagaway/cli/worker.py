"""`sagaway worker module:app`: run a worker process for an App until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from typing import Any

from sagaway.cli import CliError, seconds, whole_number

CONCURRENCY = whole_number(1, 4096)
LEASE = seconds(86_400)  # a day


def register(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser(
        "worker",
        help="run a worker process executing the runs of an App",
        description="Import MODULE, take its App named ATTR, and execute its runs until "
        "SIGTERM or Ctrl-C; executing runs are handed back at their next step boundary.",
    )
    worker.add_argument("target", metavar="MODULE:ATTR", help="e.g. shop.checkout:app")
    worker.add_argument(
        "--concurrency",
        type=CONCURRENCY,
        help=f"runs executed at once ({CONCURRENCY.span}; default: the App's)",
    )
    worker.add_argument(
        "--lease", type=LEASE, help=f"lease seconds ({LEASE.span}; default: the App's)"
    )
    worker.add_argument("--quiet", action="store_true", help="log warnings only")
    worker.set_defaults(handler=run_worker)


def load_app(target: str) -> Any:
    """The App named by `module:attr` (the current directory is importable)."""
    from sagaway import App

    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise CliError(f"{target!r} is not MODULE:ATTR, e.g. shop.checkout:app")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if (
            isinstance(exc, ModuleNotFoundError)
            and missing
            and (module_name == missing or module_name.startswith(missing + "."))
        ):
            raise CliError(
                f"cannot import {module_name!r} ({exc}): run from the directory that contains "
                "it or add it to PYTHONPATH"
            ) from None
        raise CliError(
            f"importing {module_name!r} failed: {exc} (install what it needs in this environment)"
        ) from None
    app: Any = module
    for part in attr.split("."):
        app = getattr(app, part, None)
    if not isinstance(app, App):
        raise CliError(f"{module_name}.{attr} is not a sagaway App (found {type(app).__name__})")
    return app


def run_worker(args: argparse.Namespace) -> int:
    from sagaway.errors import SagawayError

    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = load_app(args.target)
    if args.lease:
        app.lease = args.lease
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        worker = app.launch(concurrency=args.concurrency)
    except SagawayError as exc:
        raise CliError(str(exc)) from None
    log = logging.getLogger("sagaway")
    log.info(
        "worker %s started: %s, %d sagas, %d consumers, %d schedules, concurrency %d",
        worker.owner,
        app.store.description,
        len(app.sagas),
        len(app._messaging.consumers),
        len(app.schedules),
        worker.concurrency,
    )
    # Wake now and then: a signal the kernel hands to another thread would otherwise leave
    # the main thread asleep in an untimed wait, and SIGTERM would go unheard.
    while not stop.wait(0.5):
        pass
    log.info("stopping: handing back executing runs")
    app.close()
    return 0
