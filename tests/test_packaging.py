"""What pyproject.toml declares holds together: one version, every extra described and in
`dev`, a missing extra named in one line, and a changelog for the version."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys

import sagaway
from tests.packaging import PYPROJECT, SAGAWAY, USER_EXTRAS, supported_pythons
from tests.processes import ROOT


def test_sagaway_version_prints_the_version_of_the_installed_package():
    out = subprocess.run(
        [sys.executable, "-m", "sagaway.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"sagaway {sagaway.__version__}\n"
    assert importlib.metadata.version("sagaway") == sagaway.__version__
    assert "version" in PYPROJECT["project"]["dynamic"]  # written once, in sagaway/__init__.py


def test_every_extra_is_described_for_users_or_kept_for_work_on_sagaway():
    declared = set(PYPROJECT["project"]["optional-dependencies"])
    described = set(USER_EXTRAS) | set(SAGAWAY["tooling-extras"])
    assert declared == described, (
        f"describe {sorted(declared - described)} under [tool.sagaway.extras.NAME] in "
        "pyproject.toml (docs/contributing.md says how)"
    )
    assert not set(USER_EXTRAS) & set(SAGAWAY["tooling-extras"])
    for extra, about in USER_EXTRAS.items():
        assert about.get("brings") and about.get("probe"), f"[tool.sagaway.extras.{extra}]"


def test_dev_installs_every_extra_so_that_make_test_tests_it():
    dev = PYPROJECT["project"]["optional-dependencies"]["dev"]
    included = set()
    for requirement in dev:
        match = re.fullmatch(r"sagaway\[([\w,\s-]+)\]", requirement)
        if match:
            included |= {extra.strip() for extra in match.group(1).split(",")}
    assert {*USER_EXTRAS, "docs"} <= included


def test_a_module_whose_extra_is_missing_names_the_pip_command_in_one_line():
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None  # as if the postgres extra were not installed\n"
        "import sagaway.store.postgres\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode == 1
    assert last.startswith("sagaway.errors.MissingExtra: PostgreSQL support needs")
    assert last.endswith("(no module named 'psycopg'): pip install 'sagaway[postgres]'")


def test_the_changelog_keeps_a_changelog_form_with_this_version():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.M)
    assert versions[0] == ("Unreleased", "")
    released = [v for v, date in versions[1:] if date]
    assert len(released) == len(versions) - 1, "every release has a date"
    assert sagaway.__version__ in [v for v, _ in versions]
    sections = set(re.findall(r"^### (\w+)$", text, re.M))
    assert sections <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_the_python_versions_claimed_start_at_requires_python():
    minimum = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert supported_pythons()[0] == minimum and len(supported_pythons()) >= 2
