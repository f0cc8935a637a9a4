"""The soak: `make soak` (30 minutes; `--minutes N` for another length).

Three `sagaway worker` processes run the shop of tests/apps/soakshop.py on a PostgreSQL server
of the soak's own while a driver starts checkouts (one in ten refused at the last step, so
compensated) and a chaos thread, every few seconds, SIGKILLs a worker (and starts another),
SIGSTOPs one for a while, restarts the database (fast or immediate) or kills database
connections. At the end everything is healed, every run must end and every message be
handled, and the ledger of effects is reconciled:

    runs started = runs ended; charges = orders + refunds; messages published = handled

counting effects by idempotency key, as a provider honouring the keys would. Prints the
figures as JSON (and writes them to --out) and exits 1 if anything does not reconcile.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from sagaway import StoreUnavailable
from tests.apps.soakshop import build
from tests.pgserver import PostgresServer
from tests.processes import WorkerProcess

LEASE = 3.0


class Soak:
    def __init__(self, minutes: float, rate: float, root: Path) -> None:
        self.minutes, self.rate, self.root = minutes, rate, root
        self.server = PostgresServer(Path(tempfile.mkdtemp(prefix="sagaway-soak-pg-")))
        self.server.start()
        self.url = self.server.url()
        self.ledger = root / "ledger.log"
        os.environ["SAGAWAY_TEST_LOG"] = str(self.ledger)
        self.client = build(self.url)
        self.workers: list[WorkerProcess] = []
        self.stopped: set[int] = set()
        self.orders: dict[str, bool] = {}  # order -> refused at the last step
        self.faults: collections.Counter = collections.Counter()
        self.recoveries: list[float] = []
        self.stop = threading.Event()
        self.rng = random.Random(16)

    def worker(self) -> WorkerProcess:
        return WorkerProcess(
            self.url,
            self.ledger,
            lease=LEASE,
            concurrency=8,
            target="tests.apps.soakshop:app",
        )

    # --- load --------------------------------------------------------------------------------
    def start_order(self, n: int) -> None:
        order = f"o-{n}"
        fail = self.rng.random() < 0.1
        self.orders[order] = fail
        while True:  # the key makes a retried start the same run
            try:
                self.client.start("checkout", order, 100 + n % 50, fail, key=order)
                return
            except StoreUnavailable:
                time.sleep(0.5)

    def produce(self) -> None:
        n = 0
        while not self.stop.is_set():
            self.start_order(n)
            n += 1
            self.stop.wait(1.0 / self.rate)

    # --- faults ------------------------------------------------------------------------------
    def ended(self) -> int:
        try:
            counts = self.client.store.count_runs()
        except StoreUnavailable:
            return -1
        return sum(v for k, v in counts.items() if k in ("succeeded", "compensated", "failed"))

    def measure_recovery(self, since: float) -> None:
        """Seconds from a fault's start until runs end again."""
        before = self.ended()
        while not self.stop.is_set() and time.monotonic() - since < 120:
            if self.ended() > before >= 0:
                self.recoveries.append(time.monotonic() - since)
                return
            time.sleep(0.1)

    def chaos(self) -> None:
        while not self.stop.wait(self.rng.uniform(5, 15)):
            fault = self.rng.choice(["kill", "pause", "restart", "connections"])
            self.faults[fault] += 1
            since = time.monotonic()
            if fault == "kill":
                victim = self.rng.randrange(len(self.workers))
                self.workers[victim].kill()
                self.workers[victim].stop()
                self.workers[victim] = self.worker()
            elif fault == "pause":
                victim = self.workers[self.rng.randrange(len(self.workers))]
                victim.signal(signal.SIGSTOP)
                self.stop.wait(self.rng.uniform(2, 8))
                victim.signal(signal.SIGCONT)
            elif fault == "restart":
                mode = self.rng.choice(["fast", "immediate"])
                self.faults[f"restart-{mode}"] += 1
                self.server.restart(mode, down=self.rng.uniform(0.5, 3))
            else:
                for pid, _ in self.rng.sample(self.server.backends(), k=3):
                    self.server.terminate(pid)
            self.measure_recovery(since)

    # --- the whole -----------------------------------------------------------------------------
    def run(self) -> dict:
        self.workers = [self.worker() for _ in range(3)]
        threads = [threading.Thread(target=t, daemon=True) for t in (self.produce, self.chaos)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        try:
            self.stop.wait(self.minutes * 60)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(60)
        total = len(self.orders)
        deadline = time.monotonic() + 300
        while self.ended() < total or len(self.ledger_keys("mail")) < self.expected_orders():
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        outputs = [w.stop() for w in self.workers]
        return self.reconcile(total, time.monotonic() - started, outputs)

    def expected_orders(self) -> int:
        return sum(not fail for fail in self.orders.values())

    def ledger_keys(self, kind: str) -> dict[str, set[str]]:
        """order -> the idempotency keys of its effects of `kind`."""
        found: dict[str, set[str]] = collections.defaultdict(set)
        if self.ledger.exists():
            for line in self.ledger.read_text().splitlines():
                what, order, key, _ = line.split()
                if what == kind:
                    found[order].add(key)
        return found

    def reconcile(self, total: int, seconds: float, outputs: list[str]) -> dict:
        counts = self.client.store.count_runs()
        lines = self.ledger.read_text().splitlines()
        effects = collections.Counter(line.split()[0] for line in lines)
        keys = {k: self.ledger_keys(k) for k in ("charge", "order", "refund", "mail", "reserve")}
        distinct = {k: sum(len(v) for v in found.values()) for k, found in keys.items()}
        published = sum(t.messages for t in self.client.store.topics())
        problems = []
        ended = sum(v for k, v in counts.items() if k in ("succeeded", "compensated", "failed"))
        if ended != total:
            problems.append(f"runs started {total} != ended {ended} ({counts})")
        if distinct["charge"] != distinct["order"] + distinct["refund"]:
            problems.append("charges != orders + refunds")
        if published != len(keys["mail"]):
            problems.append(f"messages published {published} != handled {len(keys['mail'])}")
        for kind, found in keys.items():  # one effect per order and kind, never two keys
            doubled = [order for order, ks in found.items() if len(ks) > 1]
            if doubled:
                problems.append(f"{kind}: {len(doubled)} orders with two keys: {doubled[:5]}")
        for order, fail in self.orders.items():
            placed = order in keys["order"]
            if placed == fail or placed != (order in keys["mail"]):
                problems.append(f"order {order}: refused={fail} placed={placed}")
                break
        recoveries = sorted(self.recoveries) or [0.0]
        return {
            "minutes": round(seconds / 60, 1),
            "runs": total,
            "statuses": counts,
            "faults": dict(self.faults),
            "effects_by_key": distinct,
            "effects_run_again": {k: effects[k] - distinct.get(k, 0) for k in distinct},
            "messages_published": published,
            "messages_handled": len(keys["mail"]),
            "lost": 0 if not problems else None,
            "duplicated": sum(1 for found in keys.values() for ks in found.values() if len(ks) > 1),
            "recovery_seconds": {
                "median": round(recoveries[len(recoveries) // 2], 2),
                "max": round(recoveries[-1], 2),
            },
            "tracebacks": sum(o.count("Traceback") for o in outputs),
            "problems": problems,
        }

    def close(self) -> None:
        self.client.close()
        self.server.destroy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=10.0, help="checkouts started per second")
    parser.add_argument("--out", default="soak.json", help="where to write the figures")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sagaway-soak-"))
    soak = Soak(args.minutes, args.rate, root)
    try:
        figures = soak.run()
    finally:
        soak.close()
    text = json.dumps(figures, indent=2)
    print(text)
    Path(args.out).write_text(text + "\n")
    return 1 if figures["problems"] or figures["tracebacks"] else 0


if __name__ == "__main__":
    sys.exit(main())
