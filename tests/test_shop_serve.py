"""`sagaway shop serve` as a real process: it starts the providers and a worker, serves the
checkout, and SIGTERM stops every child."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.shopkit import ROOT, wait_for


def _read_line(process: subprocess.Popen, prefix: str, timeout: float = 60) -> str:
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([process.stdout], [], [], 0.1)[0]:
            line = process.stdout.readline().decode()
            seen += line
            if line.startswith(prefix):
                return line
            if not line:
                break
    raise AssertionError(f"no line starting {prefix!r}: {seen}")


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.add(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


@pytest.mark.slow
def test_shop_serve_runs_a_checkout_and_sigterm_stops_every_child(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "sagaway.cli", "shop", "serve", "--db", str(tmp_path / "s.db"),
         "--port", "0", "--workers", "1", "--log-dir", str(tmp_path / "logs"),
         "--providers-dir", str(tmp_path / "providers")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        url = _read_line(process, "shop listening on ").split(" on ", 1)[1].strip()
        children = _children(process.pid)
        assert len(children) == 4  # three providers and one worker
        with httpx.Client(base_url=url, timeout=30) as http:
            checkout = http.post("/checkouts", json={"items": [{"sku": "cap", "qty": 1}]}).json()
            path = f"/checkouts/{checkout['id']}"
            http.put(f"{path}/customer", json={"email": "a@example.com", "address": "Main St 1"})
            http.post(f"{path}/confirm")
            bought = http.post(
                f"{path}/purchase", json={"card": "tok_visa"}, headers={"Idempotency-Key": "k"}
            )
            order = bought.json()["order"]
            placed = http.get(f"/orders/{order}", params={"wait": 20}).json()
            assert placed["status"] == "placed"
        log = tmp_path / "logs" / "access.log"
        assert log.read_text().count("\n") == 5  # each line is there before its answer
        assert {p.name for p in (tmp_path / "providers").iterdir()} >= {
            "payment.db",
            "inventory.db",
            "mail.db",
        }
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        wait_for(lambda: not any(os.path.exists(f"/proc/{c}") for c in children), 10, "children")
    finally:
        # Whatever failed, nothing it started outlives the test: the providers and workers
        # are in its process group.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
