"""The collector of documented commands reads what a reader would copy."""

from __future__ import annotations

from doc_commands import commands_in_markdown

TEXT = """Intro with `python -m evframe.run task=flow
seed=3` wrapped onto the next line, and `make run`.

```bash
python -m evframe.run a=1 b=2   # a comment
python -m evframe.run --multirun x=1,2 \\
    y=3                         # continued
echo python -m evframe.run not=this
```
"""


def test_code_blocks_and_inline_spans_are_collected_with_continuations_and_without_comments() -> None:
    commands = commands_in_markdown(TEXT, "doc.md")
    assert [(c.line, c.args) for c in commands] == [
        (1, ("task=flow", "seed=3")),
        (5, ("a=1", "b=2")),
        (6, ("--multirun", "x=1,2", "y=3")),
    ]
    assert commands[2].value("x") == "1,2" and commands[2].value("task") is None
    assert commands[0].text == "python -m evframe.run task=flow seed=3"
