"""The documentation site builds with --strict (a broken link, anchor or reference fails), with
no network, and holds the pages that are generated: the API reference of every public package,
the command line reference from the parsers, the table of extras, README and CHANGELOG."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sagaway.cli import build_parser
from tests.packaging import USER_EXTRAS, public_packages
from tests.processes import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # a busy machine builds slowly


def offline() -> list[str]:
    """A command prefix that runs a command without any network, or [] when this machine
    cannot make one (then the build runs with the network it has)."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [*offline(), *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stderr
    return out


def text_of(page: Path) -> str:
    """The visible text of a built page, tags and entities removed."""
    html = page.read_text(encoding="utf-8")
    html = html[html.find("<article") : html.find("</article>")]
    text = re.sub(r"<[^>]+>", " ", html)
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#39;", "'")):
        text = text.replace(entity, char)
    return re.sub(r"\s+", " ", text.replace("&amp;", "&"))


def test_every_public_package_has_an_api_reference_page_with_its_exports(site):
    for package in public_packages():
        page = text_of(site / "reference" / package / "index.html")
        for name in __import__(package, fromlist=["__all__"]).__all__:
            if not name.startswith("_"):
                assert name in page, f"{package}.{name} is missing from its reference page"
    index = text_of(site / "reference" / "index.html")
    assert all(package in index for package in public_packages())


def test_the_command_line_page_is_every_parsers_help(site):
    page = text_of(site / "cli" / "index.html")
    parser = build_parser()
    (commands,) = [a for a in parser._actions if hasattr(a, "choices") and a.choices]
    for name, sub in commands.choices.items():
        usage = " ".join(sub.format_usage().split())
        assert usage.split(" [")[0] in page, f"sagaway {name} is missing"
        for action in sub._actions:
            for option in action.option_strings:
                assert option in page


def test_the_table_of_extras_lists_each_extra_with_its_pip_command(site):
    page = text_of(site / "getting-started" / "index.html")
    for extra, about in USER_EXTRAS.items():
        brings = about["brings"].replace("`", "")  # rendered as code, without the backticks
        assert f"pip install 'sagaway[{extra}]'" in page and brings in page


def test_readme_and_changelog_are_pages_with_links_that_work_in_the_site(site):
    home = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="engine/"' in home and 'href="docs/' not in home
    assert "A tour of the API" in text_of(site / "index.html")
    assert "Unreleased" in text_of(site / "changelog" / "index.html")


def test_no_page_loads_anything_from_elsewhere(site):
    # The site works offline: no font, script or style sheet from another host.
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        remote = re.findall(r'<(?:link|script)[^>]+(?:href|src)="(?:https?:)?//[^"]+"', html)
        assert not remote, f"{page.relative_to(site)} loads {remote}"
