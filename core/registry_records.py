"""What the model registry writes and reads: the files of a version, ``manifest.json``
(:class:`ModelManifest`), the Redis champion pointer (:class:`ChampionPointer`), the
registry's errors and the durable file writes it is built on.

:mod:`core.registry` documents the layout and the conventions; this module holds the
records so that they can be read (e.g. by the API) without the registry's operations.
Times are UTC ISO 8601.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.model import LinearModel

if TYPE_CHECKING:
    import pandas as pd

Status = Literal["candidate", "champion", "retired"]

MODEL_FILE = "model.json"
MANIFEST_FILE = "manifest.json"
REFERENCE_FILE = "reference.parquet"
CARD_FILE = "model_card.md"
TEMP_PREFIX = ".tmp-"
HISTORY_LENGTH = 20
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def unloadable_champion(version: str, exc: Exception) -> str:
    """What to tell people when the champion the pointer names cannot be loaded (for
    example, its directory was deleted while the Redis pointer stayed)."""
    return (
        f"champion {version} cannot be loaded ({exc}); promote a version whose artifact is "
        "there (`churnstream models promote VERSION`) or train one (`churnstream train`)"
    )


@dataclass(frozen=True)
class ChampionState:
    """The champion pointer, its model when it loads, else ``problem``: why not.

    ``pointer is None``: no champion yet. ``model is None`` with a pointer: the champion is
    unloadable; the promotion gate then counts it as no champion and records ``problem``.
    """

    pointer: ChampionPointer | None
    model: LinearModel | None = None
    problem: str | None = None


class RegistryError(RuntimeError):
    """Something the registry refuses to do (the message says what and why)."""


class ModelNotFoundError(RegistryError, LookupError):
    """No registered model has that version."""


class ArtifactIntegrityError(RegistryError, ValueError):
    """An artifact's sha256 differs from the one recorded for it (tampered or corrupt)."""


def utc_now_iso() -> str:
    """The current UTC time as ISO 8601 with seconds and a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ModelManifest:
    """What the registry knows about one version (``manifest.json``).

    ``sha256`` is the hex digest of ``model.json``; ``created_at`` is UTC ISO 8601;
    ``metrics`` are validation metrics (e.g. ``roc_auc``); ``training`` describes the data
    (window, label, horizon, source).
    """

    version: str
    kind: str
    sha256: str
    created_at: str
    feature_names: tuple[str, ...]
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    status: Status = "candidate"
    reference_sha256: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelManifest:
        document = json.loads(text)
        document["feature_names"] = tuple(document["feature_names"])
        return cls(**document)


@dataclass(frozen=True)
class ChampionPointer:
    """The Redis champion pointer. ``promoted_at`` is UTC ISO 8601; ``previous`` is the
    champion this one replaced (``None`` for the first) and ``history`` the earlier
    champions, most recent first (``history[0] == previous``)."""

    version: str
    sha256: str
    promoted_at: str
    previous: str | None = None
    history: tuple[str, ...] = ()

    def to_json(self) -> str:
        document = asdict(self)
        document["history"] = list(self.history)
        return json.dumps(document, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ChampionPointer:
        document = json.loads(text)
        return cls(
            version=str(document["version"]),
            sha256=str(document["sha256"]),
            promoted_at=str(document.get("promoted_at", "")),
            previous=document.get("previous"),
            history=tuple(document.get("history") or ()),
        )


def check_reference(reference: pd.DataFrame, feature_names: tuple[str, ...]) -> None:
    missing = [name for name in feature_names if name not in reference.columns]
    if missing:
        raise ValueError(
            f"the reference sample lacks {len(missing)} of the model's features: "
            f"{', '.join(missing[:5])}"
        )
    if len(reference) == 0:
        raise ValueError("the reference sample has no rows")


def fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
