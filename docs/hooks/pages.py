"""MkDocs hook: the pages of the site that are made rather than written.

- the home page is README.md and the changelog page CHANGELOG.md, their links made relative to
  docs/ (README.md links `docs/engine.md`; the site has `engine.md`);
- the API reference has one page per public package (pyproject.toml's
  `[tool.sagaway] public-packages`, those that exist), rendered by mkdocstrings from docstrings;
- the command line reference is every parser's `--help`, from `sagaway.cli.build_parser()`;
- `<!-- the table of extras -->` becomes a table of pyproject.toml's `[tool.sagaway.extras]`;
- a guide in docs/ that the nav of mkdocs.yml does not list joins its "Guides" section.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = "reference/index.md"
CLI = "cli.md"
GUIDES = "Guides"
EXTRAS_MARKER = "<!-- the table of extras -->"
# Files at the repository's root that are pages of the site, and the page each one is.
ROOT_PAGES = {"README.md": "index.md", "CHANGELOG.md": "changelog.md"}
HELP_WIDTH = 80  # argparse wraps help to $COLUMNS: one width, whatever the terminal building

log = logging.getLogger("mkdocs.hooks.pages")


def pyproject() -> dict[str, Any]:
    """pyproject.toml, parsed."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def public_packages() -> list[str]:
    """The public packages pyproject.toml declares, those that exist in this checkout."""
    found = []
    for name in pyproject()["tool"]["sagaway"]["public-packages"]:
        path = ROOT.joinpath(*name.split("."))
        if (path / "__init__.py").is_file() or path.with_suffix(".py").is_file():
            found.append(name)
    return found


def reference_page(package: str) -> str:
    """Where the API reference of `package` is in the site."""
    return f"reference/{package}.md"


# --- nav -------------------------------------------------------------------------------------
def on_config(config: MkDocsConfig) -> MkDocsConfig:
    nav = config.nav or []
    pages = [REFERENCE, *({name: reference_page(name)} for name in public_packages())]
    if not _replace(nav, REFERENCE, pages):
        log.warning("mkdocs.yml's nav has no %s: the API reference pages are not in it", REFERENCE)
    listed = set(_nav_paths(nav))
    guides = next((item[GUIDES] for item in nav if isinstance(item, dict) and GUIDES in item), None)
    for path in sorted(Path(config.docs_dir).glob("*.md")):
        if path.name not in listed and guides is not None:
            log.info("%s is not in mkdocs.yml's nav: listed under %s", path.name, GUIDES)
            guides.append({_title(path): path.name})
    return config


def _replace(nav: list[Any], path: str, pages: list[Any]) -> bool:
    """Turn the nav entry `{title: path}` into the section `{title: pages}`."""
    for index, item in enumerate(nav):
        if isinstance(item, dict):
            for title, value in item.items():
                if value == path:
                    nav[index] = {title: pages}
                    return True
                if isinstance(value, list) and _replace(value, path, pages):
                    return True
    return False


def _nav_paths(nav: list[Any]) -> Iterator[str]:
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            yield from _nav_paths(value)
        elif isinstance(value, str):
            yield value


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


# --- generated pages -------------------------------------------------------------------------
def on_files(files: Files, config: MkDocsConfig) -> Files:
    for source, page in ROOT_PAGES.items():
        text = relative_to_docs((ROOT / source).read_text(encoding="utf-8"))
        files.append(File.generated(config, page, content=text))
    packages = public_packages()
    files.append(File.generated(config, REFERENCE, content=reference_index(packages)))
    for name in packages:
        # The root heading is the page's title; members are sections of it.
        content = f"::: {name}\n    options:\n      heading_level: 1\n"
        files.append(File.generated(config, reference_page(name), content=content))
    files.append(File.generated(config, CLI, content=cli_reference()))
    return files


_LINK = re.compile(r"(\]\()([^)\s#]+)")


def relative_to_docs(markdown: str) -> str:
    """Links of a file at the repository's root, made relative to docs/."""

    def target(match: re.Match[str]) -> str:
        path = match.group(2)
        if path.startswith("docs/"):
            path = path.removeprefix("docs/")
        elif path in ROOT_PAGES:
            path = ROOT_PAGES[path]
        return match.group(1) + path

    return _LINK.sub(target, markdown)


def reference_index(packages: list[str]) -> str:
    """The API reference's first page: the public packages, each with its summary."""
    rows = []
    for name in packages:
        summary = " ".join((importlib.import_module(name).__doc__ or "").split("\n\n")[0].split())
        page = reference_page(name).removeprefix("reference/")
        rows.append(f"| [`{name}`]({page}) | {summary} |")
    return "\n".join(
        [
            "# API reference",
            "",
            "sagaway's public API is what these packages export (their `__all__`); the",
            "[stability policy](../stability.md) says how it may change. Everything else, modules",
            "whose name starts with `_` above all, may change in any release.",
            "",
            "| package | what it holds |",
            "|---|---|",
            *rows,
            "",
        ]
    )


@contextmanager
def _columns(width: int) -> Iterator[None]:
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def cli_reference() -> str:
    """Every command's `--help`, from the parsers the `sagaway` command uses."""
    from sagaway.cli import build_parser

    lines = [
        "# Command line",
        "",
        "Every command's `--help`, as `sagaway` prints it: this page is made from the command's",
        "own parsers when the site is built. Each command that reads or changes runs takes",
        "`--json` for machines; the [stability policy](stability.md) says what of it is stable.",
        "",
    ]
    with _columns(HELP_WIDTH):
        for words, parser in _commands(build_parser(), ["sagaway"]):
            lines += [f"{'#' * min(len(words) + 1, 6)} `{' '.join(words)}`", ""]
            lines += ["```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def _commands(
    parser: argparse.ArgumentParser, words: list[str]
) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    yield words, parser
    seen: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # an alias names the same parser again
                    seen.add(id(sub))
                    yield from _commands(sub, [*words, name])


# --- the table of extras ---------------------------------------------------------------------
def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if EXTRAS_MARKER in markdown:
        markdown = markdown.replace(EXTRAS_MARKER, extras_table())
    return markdown


def extras_table() -> str:
    """A table of the extras users install: name, what it brings, the pip command, packages."""
    project = pyproject()
    requires = project["project"]["optional-dependencies"]
    rows = ["| extra | what it brings | install with | packages |", "|---|---|---|---|"]
    for extra, about in project["tool"]["sagaway"]["extras"].items():
        packages = ", ".join(f"`{requirement}`" for requirement in requires[extra])
        command = f"`pip install 'sagaway[{extra}]'`"
        rows.append(f"| `{extra}` | {about['brings']} | {command} | {packages} |")
    return "\n".join(rows)
