"""One measurement in a fresh Python process: `script --child ARGS` prints its result as
the last line of JSON; a child that fails stops the benchmark with what it printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_child(script: str, *args: str) -> dict:
    """Run `script --child *args` in a new interpreter; return its last JSON line."""
    out = subprocess.run(
        [sys.executable, script, "--child", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"benchmark child {args} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(lines[-1])
