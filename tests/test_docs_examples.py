"""Every example in the documentation runs, and every `sagaway` command line in it parses
(tests/docs_examples.py says which blocks are examples and how a page marks the others)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import pytest

from sagaway.cli import parse_args
from tests.docs_examples import (
    SHELLS,
    Block,
    Example,
    blocks,
    command_lines,
    documents,
    examples,
    problems,
    sagaway_calls,
)

EXAMPLES = examples()
SHELL_BLOCKS = [
    block
    for path in documents()
    for block in blocks(path)
    if block.lang in SHELLS and any(sagaway_calls(line) for line in command_lines(block))
]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.block.where for e in EXAMPLES])
def test_the_python_example_runs(example: Example, tmp_path):
    for name, text in example.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "example.py").write_text(example.script)
    out = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, f"{example.block.where} failed:\n{out.stderr}"


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[b.where for b in SHELL_BLOCKS])
def test_the_sagaway_commands_of_the_shell_block_parse(block: Block):
    for line in command_lines(block):
        for argv in sagaway_calls(line):
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    parse_args(argv)
                except SystemExit as exit:
                    assert exit.code == 0, f"{block.where}: sagaway {line!r}: {err.getvalue()}"


def test_every_note_above_a_block_is_one_the_tests_know():
    found = [p for path in documents() for block in blocks(path) for p in problems(block)]
    assert not found, "\n".join(found)


def test_the_docs_have_examples_and_commands_to_check():
    # A change to the block parser that finds nothing would pass every test above.
    assert len(EXAMPLES) >= 8 and len(SHELL_BLOCKS) >= 5


def test_a_shell_block_with_a_wrong_option_is_caught(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```console\n$ sagaway runs list --dbb shop.db\nsome output\n```\n")
    (block,) = blocks(page)
    (argv,) = [argv for line in command_lines(block) for argv in sagaway_calls(line)]
    with pytest.raises(SystemExit) as exit, contextlib.redirect_stderr(io.StringIO()):
        parse_args(argv)
    assert exit.value.code == 2


def test_notes_choose_what_runs_and_what_is_written_beside_it(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- file: conf.yaml -->\n```yaml\na: 1\n```\n"
        "```python\nx = 1\n```\n"
        "<!-- example: continued -->\n```python\nprint(x)\n```\n"
        "<!-- not an example: pseudo-code -->\n```python\n...schedule it\n```\n"
        "<!-- not an example: -->\n```python\npass\n```\n"
    )
    page_blocks = blocks(page)
    assert [problems(b) for b in page_blocks][:4] == [[], [], [], []]
    assert "say why not" in problems(page_blocks[4])[0]
    first, second = examples([page])
    assert first.files == {"conf.yaml": "a: 1\n"}
    assert first.script == "x = 1\n" and second.script == "x = 1\n\n\nprint(x)\n"
