"""The nightly-batch example of docs/engine.md runs as written."""

import re
import subprocess
import sys

from tests.processes import ROOT


def test_the_nightly_batch_example_runs_as_written(tmp_path):
    text = (ROOT / "docs" / "engine.md").read_text()
    match = re.search(r"## Fan-out inside a saga.*?```python\n(.*?)```", text, re.S)
    assert match, "docs/engine.md lost its fan-out example"
    (tmp_path / "nightly.py").write_text(match.group(1))
    out = subprocess.run(
        [sys.executable, "nightly.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    printed = "{'synced': 40, 'failed': 1, 'invoice': 'invoice for 160 rows'}"
    assert out.stdout == printed + "\n"
    assert printed in text  # the docs say what it prints
