"""The CLI starts without its heavy dependencies, and every --help reads as paragraphs."""

from __future__ import annotations

import importlib
import itertools
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import churnstream.commands
from churnstream.cli import app
from churnstream.help_text import as_paragraphs

HEAVY = ("pandas", "pyarrow", "faust", "sklearn", "evidently", "river", "uvicorn", "fastapi")


def _modules_after(statement: str) -> set[str]:
    probe = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_importing_the_cli_loads_no_heavy_dependency() -> None:
    loaded = _modules_after("import churnstream.cli")
    assert not {name for name in loaded if name.split(".")[0] in HEAVY}


def test_the_probe_sees_heavy_imports() -> None:
    """The check above can fail: a module that does import pandas is seen."""
    loaded = _modules_after("import core.archive")
    assert "pandas" in loaded


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*path, name))


ALL_COMMANDS = list(_command_paths(typer.main.get_command(app)))


def _description(output: str) -> list[str]:
    """The help text between the usage line and the first panel, one entry per line."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Usage:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("╭"))
    return [line.strip() for line in lines[start + 1 : end]]


def _broken_lines(lines: list[str]) -> list[str]:
    """Lines followed by another line of the same paragraph (a list item excepted)."""
    return [
        line
        for line, following in itertools.pairwise(lines)
        if line and following and not following.startswith(("- ", "* "))
    ]


def test_every_command_is_checked() -> None:
    assert ("models", "list") in ALL_COMMANDS
    assert ("drift",) in ALL_COMMANDS
    assert len(ALL_COMMANDS) > 25


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "churnstream")
def test_help_paragraphs_are_not_broken_mid_line(path: tuple[str, ...]) -> None:
    # A terminal this wide wraps nothing, so every line break left is the help text's own.
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    description = _description(result.output)
    assert any(description), result.output
    assert _broken_lines(description) == []


def test_a_docstring_wrapped_in_the_source_would_be_caught() -> None:
    wrapped = ["Compare live features with the", "reference sample.", "", "Second."]
    assert _broken_lines(wrapped) == ["Compare live features with the"]
    assert _broken_lines(as_paragraphs("\n".join(wrapped)).splitlines()) == []


def test_list_items_and_no_rewrap_blocks_keep_their_lines() -> None:
    assert as_paragraphs("Modes:\n- fast\n- safe") == "Modes:\n- fast\n- safe"
    assert as_paragraphs("\b\nkeep\nthese") == "\b\nkeep\nthese"


COMMANDS_DIR = Path(churnstream.commands.__file__).parent
ROOT = COMMANDS_DIR.parents[1]
APPS = ("core", "stream", "serving", "offline", "monitoring")


def test_each_command_module_holds_the_mounted_command_it_is_named_for() -> None:
    mounted = {info.callback for info in app.registered_commands}
    groups = {info.typer_instance for info in app.registered_groups}
    stems = sorted(path.stem for path in COMMANDS_DIR.glob("*_command.py"))
    assert len(stems) >= 16
    for stem in stems:
        module = importlib.import_module(f"churnstream.commands.{stem}")
        command = getattr(module, stem, None)
        group = getattr(module, f"{stem.removesuffix('_command')}_app", None)
        assert command in mounted or group in groups, stem


def test_command_modules_share_no_name_with_another_module() -> None:
    names = Counter(
        path.stem for package in (*APPS, "churnstream") for path in (ROOT / package).rglob("*.py")
    )
    assert [p.stem for p in COMMANDS_DIR.glob("*.py") if names[p.stem] > 1] == ["__init__"]


def test_the_apps_hold_no_command_modules() -> None:
    modules = [path for package in APPS for path in (ROOT / package).rglob("*.py")]
    assert any(path.name == "redis_client.py" for path in modules)
    assert [path for path in modules if path.stem == "cli" or path.stem.endswith("_cli")] == []
