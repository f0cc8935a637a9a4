"""The README's tour runs as written, and its CLI lines work on what it leaves behind."""

import json
import re
import shutil
import subprocess
import sys

from tests.processes import ROOT


def python_block(section: str) -> str:
    """The first python block of the README's section titled `section`."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"## {re.escape(section)}\n.*?```python\n(.*?)```", readme, re.S)
    assert match, f"README.md lost its {section!r} python block"
    return match.group(1)


def tour_code() -> str:
    return python_block("A tour of the API")


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


def test_the_readme_tour_does_nothing_when_a_worker_imports_it(tmp_path):
    # `sagaway worker shop:app` imports the file: the tour's `with app:` must not run then.
    (tmp_path / "shop.py").write_text(tour_code())
    out = subprocess.run(
        [sys.executable, "-c", "import shop; print(type(shop.app).__name__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "App\n"
    assert not (tmp_path / "shop.db").exists()  # no run was started, no store opened


def test_the_readme_resilience_snippet_runs_as_written(tmp_path):
    (tmp_path / "resilience.py").write_text(python_block("Resilience primitives"))
    out = subprocess.run(
        [sys.executable, "resilience.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "{'order': 'o-42', 'amount': 1999, 'status': 'captured'}\n"


def test_an_editable_install_prints_no_setuptools_warning_box(tmp_path):
    # `make demo` on a fresh clone installs sagaway editable; setuptools' box about a meta path
    # finder used to fill the screen before the demo. Installed from a copy: the checkout keeps
    # no build leftovers.
    source = tmp_path / "src"
    shutil.copytree(ROOT / "sagaway", source / "sagaway", ignore=shutil.ignore_patterns("*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    venv = tmp_path / "venv"  # a venv of its own: this one's sagaway is left alone
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    out = subprocess.run(
        [*pip, "install", "--quiet", "--no-deps", "--editable", str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "BuildBackendWarning" not in out.stderr and "Editable install" not in out.stderr
