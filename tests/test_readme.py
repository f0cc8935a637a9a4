"""The README's tour runs as written, and its CLI lines work on what it leaves behind."""

import json
import re
import subprocess
import sys

from tests.processes import ROOT


def tour_code() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"## A tour of the API\n\n```python\n(.*?)```", readme, re.S)
    assert match, "README.md lost its '## A tour of the API' python block"
    return match.group(1)


def test_the_readme_tour_runs_as_written(tmp_path):
    (tmp_path / "tour.py").write_text(tour_code())
    out = subprocess.run(
        [sys.executable, "tour.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "'parcel': 'parcel-o-1'" in lines[0] and "'email': 'a@example.com'" in lines[0]
    assert lines[1] == "compensated card declined"
    listing = subprocess.run(
        [sys.executable, "-m", "sagaway.cli", "runs", "list", "--db", "shop.db", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert listing.returncode == 0, listing.stderr
    assert sorted(r["status"] for r in json.loads(listing.stdout)) == [
        "compensated",
        "succeeded",
    ]
