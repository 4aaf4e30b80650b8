"""Files other processes read while they are written: replaced atomically, read whole.

A writer writes a temporary file next to the target (a dot name, so globs of the real
files skip it), flushes it to disk and renames it over the target, so a reader sees the old
file or the new one, never a part.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Replace ``path`` with what ``write(temporary_path)`` writes (see the module docstring);
    on error the target is left as it was and the temporary file is removed."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write(temp)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def read_json_objects(path: Path) -> list[dict[str, Any]]:
    """The objects of the JSON array in ``path`` (other items skipped); [] when the file
    does not exist. Raises ``ValueError`` naming the file when it is not a JSON array."""
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(document, list):
        raise ValueError(f"{path}: expected a JSON array")
    return [item for item in document if isinstance(item, dict)]
