"""A full disk: SQLite stores and the files the SLO report and alarms write.

A small tmpfs is mounted for each test (root only; outside CI a test skips when mounting is
not permitted) and filled up with a file; deleting the file gives the space back.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from sagaway import StoreUnavailable
from tests.apps.stress import STEPS, build
from tests.conftest import require, wait_for
from tests.processes import ROOT, WorkerProcess, check_bodies

pytestmark = pytest.mark.slow


def _mount(path: Path, size: str) -> str | None:
    """Mount a tmpfs of `size` at `path`; None, or why it could not be done."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else done.stderr.strip() or "mount failed"


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 8 MB, unmounted afterwards."""
    where = tmp_path / "disk"
    problem = _mount(where, "8m")
    require(problem is None, f"cannot mount a tmpfs to fill up (needs root): {problem}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk` with a file; return it (delete it to free them)."""
    filler = disk / f"filler-{uuid.uuid4().hex[:6]}"
    with open(filler, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:  # the last few bytes
                f.write(b"\0" * 512)
    return filler


def integrity(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def test_sqlite_on_a_full_disk_says_why_stays_intact_and_resumes_when_space_returns(
    small_disk, tmp_path
):
    url = f"sqlite:///{small_disk}/sagaway.db"
    log = tmp_path / "bodies.log"
    client = build(url, str(log))
    workers = [
        WorkerProcess(url, log, lease=2.0, step_seconds=0.01, target="tests.apps.stress:app")
        for _ in range(2)
    ]
    try:
        runs = [client.start("five", i) for i in range(200)]
        wait_for(lambda: client.store.count_runs().get("succeeded", 0) >= 20, 60)
        filler = fill(small_disk)
        with pytest.raises(StoreUnavailable, match=r"disk is full.*SQLITE_FULL.*free space"):
            for i in range(10_000):  # the WAL may still have room for a few
                runs.append(client.start("five", 1000 + i))
        time.sleep(3.0)  # the workers keep failing meanwhile
        assert integrity(small_disk / "sagaway.db") == "ok"
        stuck = client.store.count_runs()
        filler.unlink()
        wait_for(
            lambda: client.store.count_runs() == {"succeeded": len(runs)},
            90,
            0.1,
            f"every run to end once the disk has room again (were {stuck})",
        )
    finally:
        outputs = [w.stop() for w in workers]
    try:
        assert integrity(small_disk / "sagaway.db") == "ok"
        check_bodies(client.store, runs, log, STEPS)
        for output in outputs:
            assert "Traceback" not in output, output
            lost = [line for line in output.splitlines() if "lost the database" in line]
            assert len(lost) <= 1, lost
    finally:
        client.close()


def run_cli(*args: str, stdout=subprocess.PIPE, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "sagaway.cli", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OPS_HOOK_TOKEN": "x"},
    )


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_slo_report_and_alarms_on_a_full_output_disk_fail_with_one_line_and_touch_no_input(
    small_disk, tmp_path
):
    from tests.alb_lines import line, load_generator
    from tests.test_alarms_e2e import CONFIG, write_incident_log
    from tests.test_slo_report import SPEC

    inputs = tmp_path / "inputs"
    gen = load_generator()
    gen.generate(str(inputs / "alb"), 2000, gen.parse_time("2024-05-01T00:00Z"), 2.0, nodes=1)
    (inputs / "alb" / "extra.log").write_text(line("2024-05-01T01:00:00.000000Z") + "\nbad\n")
    (inputs / "slo.yaml").write_text(SPEC)
    write_incident_log(inputs / "app.log")
    (inputs / "alarms.yaml").write_text(CONFIG.format(url="http://127.0.0.1:9/unused"))
    before = digests(inputs)
    report = small_disk / "report.html"
    report.write_text("the report of yesterday")
    fill(small_disk)
    slo = ["slo", "report", "--config", str(inputs / "slo.yaml"), "--alb", str(inputs / "alb")]
    quarantine = ["--quarantine", str(tmp_path / "q.jsonl")]
    replay = ["alarms", "replay", "--config", str(inputs / "alarms.yaml")]
    replay += ["--logs", str(inputs / "app.log")]
    outcomes = []
    outcomes.append(run_cli(*slo, *quarantine, "--html", str(report)))
    with open(small_disk / "out.json", "w") as out:
        outcomes.append(run_cli(*slo, *quarantine, "--json", stdout=out))
    outcomes.append(run_cli(*slo, "--quarantine", str(small_disk / "q.jsonl")))
    rules = small_disk / "rules.yaml"
    outcomes.append(run_cli("slo", "rules", "--config", str(inputs / "slo.yaml"), "-o", str(rules)))
    outcomes.append(run_cli(*replay, "--rejects", str(small_disk / "rejects.jsonl")))
    with open(small_disk / "replay.json", "w") as out:
        outcomes.append(run_cli(*replay, "--json", stdout=out))
    for outcome in outcomes:
        assert outcome.returncode in (1, 2), (outcome.args, outcome.stderr)
        lines = outcome.stderr.splitlines()
        assert len(lines) == 1 and "No space left on device" in lines[0], (outcome.args, lines)
    assert report.read_text() == "the report of yesterday"
    assert not rules.exists()
    assert digests(inputs) == before
