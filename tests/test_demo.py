"""`sagaway demo` runs end to end and its invariants hold (a smaller crowd than make demo)."""

import re
import subprocess
import sys

import pytest

from tests.processes import ROOT

pytestmark = pytest.mark.slow


def test_the_demo_holds_its_invariants_through_an_outage_and_a_sigkill(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "sagaway.cli", "demo", "--customers", "80", "--dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "NO" not in out.stdout.split("invariants", 1)[1]
    assert re.search(r"worker processes SIGKILLed\s*│\s*1\s", out.stdout)
    assert "[ALARM] payments-degraded" in out.stdout
    assert (tmp_path / "sagaway.db").exists()
