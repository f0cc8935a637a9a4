"""The code blocks of the documentation, as tests/test_docs_examples.py runs and checks them.

Every ```python block of README.md, CHANGELOG.md and docs/ is an example: the suite runs it as a
script in a fresh directory. An HTML comment on the line right above a block changes that:

- `<!-- example: continued -->` runs the block after the page's previous example, in one
  script (for a block that goes on with what the one before declared);
- `<!-- not an example: REASON -->` leaves a python block alone (a signature with its defaults,
  pseudo-code, a server that is not here); the reason is required;
- `<!-- file: NAME -->`, above a block of any language, writes the block to NAME in the
  directory where the page's examples run.

Every `sagaway ...` command line in a ```sh or ```console block (in a console block, the lines
after `$ `) is parsed by the command's own parsers.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.processes import ROOT

CONTINUED = "example: continued"
NOT_AN_EXAMPLE = "not an example:"
FILE = "file:"
SHELLS = {"sh", "shell", "bash", "console"}
_NOTE = re.compile(r"^<!--\s*(.*?)\s*-->$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it opens, its language, its code and the note above it."""

    path: Path
    line: int
    lang: str
    code: str
    note: str

    @property
    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"


def documents() -> list[Path]:
    """The Markdown files whose blocks are tested: README.md, CHANGELOG.md, docs/."""
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md"]
    pages += sorted(p for p in (ROOT / "docs").rglob("*.md") if "hooks" not in p.parts)
    return [page for page in pages if page.exists()]


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, in order."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.lstrip().startswith("```"):
            indent = len(line) - len(line.lstrip())  # a block inside a list item is indented
            note_match = _NOTE.match(lines[index - 1].strip()) if index else None
            end = index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            words = line.strip()[3:].split()
            found.append(
                Block(
                    path=path,
                    line=index + 1,
                    lang=words[0] if words else "",
                    code="".join(f"{text[indent:]}\n" for text in lines[index + 1 : end]),
                    note=note_match.group(1) if note_match else "",
                )
            )
            index = end
        index += 1
    return found


@dataclass(frozen=True)
class Example:
    """A python block to run: the script (with the blocks it continues) and the files beside it."""

    block: Block
    script: str
    files: dict[str, str]


def examples(paths: list[Path] | None = None) -> list[Example]:
    """Every python block that is an example, across `paths` (default: the documents)."""
    found: list[Example] = []
    for path in documents() if paths is None else paths:
        page = blocks(path)
        files = {b.note[len(FILE) :].strip(): b.code for b in page if b.note.startswith(FILE)}
        previous = ""
        for block in page:
            if block.lang != "python" or block.note.startswith(NOT_AN_EXAMPLE):
                continue
            script = f"{previous}\n\n{block.code}" if block.note == CONTINUED else block.code
            found.append(Example(block, script, files))
            previous = script
    return found


def problems(block: Block) -> list[str]:
    """What is wrong with the note above a block, if anything."""
    note = block.note
    if not note or note == CONTINUED or (note.startswith(FILE) and note[len(FILE) :].strip()):
        return []
    if note.startswith(NOT_AN_EXAMPLE) and block.lang == "python":
        return [] if note[len(NOT_AN_EXAMPLE) :].strip() else [f"{block.where}: say why not"]
    return [
        f"{block.where}: unknown note {note!r}: write '{CONTINUED}', "
        f"'{NOT_AN_EXAMPLE} REASON' (python blocks) or '{FILE} NAME'"
    ]


def command_lines(block: Block) -> list[str]:
    """The shell command lines of a sh/console block: continuations joined, console output and
    here-document bodies left out."""
    lines: list[str] = []
    pending = ""
    heredoc = None
    for raw in block.code.splitlines():
        if heredoc is not None:
            heredoc = None if raw.strip() == heredoc else heredoc
            continue
        line = raw
        if block.lang == "console" and not pending:
            if not line.startswith("$ "):
                continue  # what the command printed
            line = line[2:]
        line = pending + line
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1] + " "
            continue
        pending = ""
        opened = re.search(r"<<-?\s*['\"]?(\w+)", line)
        heredoc = opened.group(1) if opened else None
        lines.append(line)
    return lines


def sagaway_calls(line: str) -> list[list[str]]:
    """The arguments of each `sagaway` command in a shell command line (pipes, lists and
    redirections split it; leading `VAR=value` assignments are skipped)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    calls: list[list[str]] = []
    words: list[str] = []
    for token in [*lexer, ";"]:
        if token in (">", ">>", "<") and words and words[-1].isdigit():
            words.pop()  # `2> errors.txt`: the 2 is the redirection's, not an argument
        if token and set(token) <= set(";&|()<>"):
            while words and re.match(r"^\w+=", words[0]):
                words = words[1:]
            if words and Path(words[0]).name == "sagaway":
                calls.append(words[1:])
            words = []
        else:
            words.append(token)
    return calls
