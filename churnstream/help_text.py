"""Help texts as paragraphs: docstrings are wrapped for the source file, not for the terminal.

Typer shows a command's docstring with its line breaks, so a sentence wrapped at 100 columns
in the source file would be broken mid-line on a wide terminal. :class:`ParagraphHelpGroup`,
the root app's group class, rewrites the help of itself and of every command below it once,
when the command tree is built: lines of one paragraph are joined, so the terminal wraps them.

Conventions: paragraphs are separated by a blank line; a line starting with ``- ``, ``* ``
or ``N. `` starts a list item and stays on its own line; a paragraph starting with click's
``\\b`` marker is kept as written.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from typer.core import TyperGroup

_LIST_ITEM = re.compile(r"^(?:[-*]|\d+\.)\s")
_NO_REWRAP = "\b"


def as_paragraphs(text: str) -> str:
    """``text`` (a docstring) with the line breaks inside each paragraph removed.

    >>> as_paragraphs("First line\\n    goes on.\\n\\n    Second\\n    paragraph.")
    'First line goes on.\\n\\nSecond paragraph.'
    >>> as_paragraphs("Kinds:\\n- one\\n  more\\n- two")
    'Kinds:\\n- one more\\n- two'
    """
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        if paragraph.startswith(_NO_REWRAP):
            paragraphs.append(paragraph)
            continue
        lines: list[str] = []
        for line in paragraph.splitlines():
            stripped = line.strip()
            if lines and stripped and not _LIST_ITEM.match(stripped):
                lines[-1] = f"{lines[-1]} {stripped}"
            elif stripped:
                lines.append(stripped)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def rewrap_help(command: Any) -> None:
    """Rewrite the help of a (click) command and, for a group, of every command below it."""
    if command.help:
        command.help = as_paragraphs(command.help)
    for sub in getattr(command, "commands", {}).values():
        rewrap_help(sub)


class ParagraphHelpGroup(TyperGroup):
    """The root group: every command's help reads as paragraphs (see :func:`as_paragraphs`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rewrap_help(self)
