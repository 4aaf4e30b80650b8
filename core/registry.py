"""The model registry: immutable versioned artifacts on disk, the champion pointer in Redis.

Layout under ``CHURN_MODEL_DIR`` (``settings.model_dir``)::

    <model_dir>/<version>/model.json      the artifact (``LinearModel.to_json``), never edited
    <model_dir>/<version>/manifest.json   version, kind, sha256 of model.json, created_at,
                                          feature_names, metrics, training, status,
                                          reference_sha256
    <model_dir>/<version>/reference.parquet  optional: the reference sample for drift
                                          checks (one column per feature, plus ``score``)
    <model_dir>/<version>/model_card.md   optional: the model card (Markdown) for people

Conventions:

* A version is written exactly once. :meth:`ModelRegistry.register` writes both files into
  a temporary directory ``<model_dir>/.tmp-<version>-<random>`` (fsynced), then renames it
  to ``<model_dir>/<version>`` in one ``os.rename``: a crash leaves either nothing or a
  ``.tmp-*`` directory, which is never listed, loaded or promoted.
* Version names are 1-128 characters of ``A-Z a-z 0-9 . _ -`` starting with a letter, a
  digit or ``_`` (the trainer uses ``v20260105T101500-<6 hex>``).
* **The Redis pointer is the source of truth for which model is champion.** The key
  ``Keys.champion`` holds JSON ``{"version", "sha256", "promoted_at", "previous",
  "history"}``; it is replaced with a single ``SET`` (then the new version is published on
  ``Keys.model_events``), so readers see the old or the new
  champion, never a mix. ``previous`` is the version the pointer replaced and ``history``
  the earlier champions, most recent first (at most :data:`HISTORY_LENGTH`);
  :meth:`ModelRegistry.rollback` restores ``previous`` in one ``SET``.
* Manifest ``status`` (``candidate`` / ``champion`` / ``retired``) is updated after the
  pointer, for people reading the directory; :meth:`ModelRegistry.list` reports the status
  reconciled with the pointer, so a crash in between is harmless.
* Every load checks the artifact's sha256: against the manifest (:meth:`ModelRegistry.load`)
  or against the pointer (:meth:`ModelRegistry.load_champion`). Times are UTC ISO 8601.

The worker and the API poll :meth:`ModelRegistry.champion` every few seconds (or listen on
``model_events``) and reload when ``version`` changes.
"""

from __future__ import annotations

import builtins
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from core.keys import Keys
from core.model import LinearModel, artifact_sha256, load_model
from core.registry_records import (
    CARD_FILE,
    HISTORY_LENGTH,
    MANIFEST_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    TEMP_PREFIX,
    VERSION_PATTERN,
    ArtifactIntegrityError,
    ChampionPointer,
    ChampionState,
    ModelManifest,
    ModelNotFoundError,
    RegistryError,
    Status,
    check_reference,
    fsync_dir,
    unloadable_champion,
    utc_now_iso,
    write_synced,
)
from core.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "VERSION_PATTERN",
    "ArtifactIntegrityError",
    "ChampionPointer",
    "ChampionState",
    "ModelManifest",
    "ModelNotFoundError",
    "ModelRegistry",
    "RegistryError",
    "unloadable_champion",
    "utc_now_iso",
]


class ModelRegistry:
    """Registers, promotes, rolls back and loads models (see the module docstring)."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.root = Path(settings.model_dir)
        self.client = client
        self.keys = Keys.of(settings)
        self.retention_days = settings.retention_days

    # --- paths ---------------------------------------------------------------------------

    def path_of(self, version: str) -> Path:
        """The directory of ``version`` (it may not exist)."""
        if not VERSION_PATTERN.match(version):
            raise RegistryError(
                f"invalid model version {version!r}: use 1-128 of A-Z a-z 0-9 . _ - "
                "starting with a letter, digit or _"
            )
        return self.root / version

    def artifact_path(self, version: str) -> Path:
        return self.path_of(version) / MODEL_FILE

    def card_path(self, version: str) -> Path:
        """Where the model card of ``version`` is (it exists only if one was registered)."""
        return self.path_of(version) / CARD_FILE

    # --- writing -------------------------------------------------------------------------

    def register(
        self,
        model: LinearModel,
        metrics: dict[str, Any],
        training: dict[str, Any],
        reference: pd.DataFrame | None = None,
        card: str | None = None,
    ) -> ModelManifest:
        """Store ``model`` as a new ``candidate`` version (``model.version``), atomically.

        ``reference`` is the sample drift checks compare live features with: one column
        per feature of the model (and usually ``score``); it is stored as
        ``reference.parquet`` and its sha256 recorded in the manifest. ``card`` is the
        model card (Markdown), stored as ``model_card.md`` beside the artifact."""
        final = self.path_of(model.version)
        if final.exists():
            raise RegistryError(f"model version {model.version} is already registered")
        self.root.mkdir(parents=True, exist_ok=True)
        temp = self.root / f"{TEMP_PREFIX}{model.version}-{secrets.token_hex(4)}"
        temp.mkdir()
        try:
            write_synced(temp / MODEL_FILE, model.to_json())
            reference_sha256 = None
            if reference is not None:
                check_reference(reference, model.feature_names)
                reference.to_parquet(temp / REFERENCE_FILE, index=False)
                reference_sha256 = artifact_sha256(temp / REFERENCE_FILE)
            if card is not None:
                write_synced(temp / CARD_FILE, card)
            manifest = ModelManifest(
                version=model.version,
                kind=model.kind,
                sha256=artifact_sha256(temp / MODEL_FILE),
                created_at=utc_now_iso(),
                feature_names=tuple(model.feature_names),
                metrics=dict(metrics),
                training=dict(training),
                status="candidate",
                reference_sha256=reference_sha256,
            )
            write_synced(temp / MANIFEST_FILE, manifest.to_json())
            fsync_dir(temp)
            os.rename(temp, final)  # fails if another writer created the version meanwhile
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        fsync_dir(self.root)
        return manifest

    def promote(self, version: str) -> None:
        """Make ``version`` the champion: verify its artifact, then SET the pointer and
        PUBLISH the version in one transaction. Raises :class:`ModelNotFoundError` or
        :class:`ArtifactIntegrityError` (the champion is then unchanged)."""
        manifest = self.manifest(version)
        self._verify(manifest)

        def build(current: ChampionPointer | None) -> ChampionPointer:
            history: tuple[str, ...] = ()
            if current is not None and current.version != version:
                history = (current.version, *current.history)[:HISTORY_LENGTH]
            elif current is not None:  # promoting the champion again changes nothing
                history = current.history
            return ChampionPointer(
                version=version,
                sha256=manifest.sha256,
                promoted_at=utc_now_iso(),
                previous=history[0] if history else None,
                history=history,
            )

        old, _ = self._swap_pointer(build)
        self._update_statuses(version, old.version if old else None)

    def rollback(self) -> str:
        """Restore the previous champion (one SET + PUBLISH); return its version. Raises
        :class:`RegistryError` when there is no champion or no previous one."""

        def build(current: ChampionPointer | None) -> ChampionPointer:
            if current is None:
                raise RegistryError("there is no champion to roll back")
            if current.previous is None:
                raise RegistryError(f"champion {current.version} has no previous model")
            target = self.manifest(current.previous)
            self._verify(target)
            history = current.history[1:] if current.history else ()
            return ChampionPointer(
                version=target.version,
                sha256=target.sha256,
                promoted_at=utc_now_iso(),
                previous=history[0] if history else None,
                history=history,
            )

        old, new = self._swap_pointer(build)
        self._update_statuses(new.version, old.version if old else None)
        return new.version

    # --- reading -------------------------------------------------------------------------

    def champion(self) -> ChampionPointer | None:
        """The current champion pointer, or ``None`` before the first promotion."""
        raw = self.client.get(self.keys.champion)
        return None if raw is None else ChampionPointer.from_json(raw)

    def manifest(self, version: str) -> ModelManifest:
        """The manifest of ``version`` as stored (status not reconciled)."""
        path = self.path_of(version) / MANIFEST_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ModelNotFoundError(f"no model version {version} in {self.root}") from None
        return ModelManifest.from_json(text)

    def load(self, version: str) -> LinearModel:
        """The model of ``version``, after checking its sha256 against the manifest."""
        return self._load_checked(version, self.manifest(version).sha256)

    def load_champion(self) -> LinearModel | None:
        """The champion model (checked against the pointer's sha256), or ``None``."""
        pointer = self.champion()
        return None if pointer is None else self._load_checked(pointer.version, pointer.sha256)

    def champion_state(self) -> ChampionState:
        """The champion pointer with its model loaded, or why it cannot be loaded (never
        raises for an unloadable champion; Redis errors propagate)."""
        pointer = self.champion()
        if pointer is None:
            return ChampionState(None)
        try:
            return ChampionState(pointer, self._load_checked(pointer.version, pointer.sha256))
        except RegistryError as exc:
            return ChampionState(pointer, problem=unloadable_champion(pointer.version, exc))

    def reference_sample(self, version: str) -> pd.DataFrame | None:
        """The reference sample stored with ``version`` (checked against the manifest's
        sha256), or ``None`` when the version was registered without one."""
        manifest = self.manifest(version)
        if manifest.reference_sha256 is None:
            return None
        path = self.path_of(version) / REFERENCE_FILE
        if artifact_sha256(path) != manifest.reference_sha256:
            raise ArtifactIntegrityError(
                f"reference sample of model {version} refused: its sha256 does not match"
            )
        import pandas as pd  # only readers of reference samples pay for pandas

        return pd.read_parquet(path)

    def list(self) -> builtins.list[ModelManifest]:
        """Every registered version, oldest first, with status reconciled with the pointer:
        the pointer's version is ``champion``; a manifest that still says ``champion`` for
        another version is reported ``retired``. Temporary directories are skipped."""
        if not self.root.is_dir():
            return []
        pointer = self.champion()
        champion = pointer.version if pointer else None
        found = []
        for entry in self.root.iterdir():
            if entry.name.startswith(".") or not VERSION_PATTERN.match(entry.name):
                continue
            try:
                manifest = self.manifest(entry.name)
            except ModelNotFoundError:
                continue
            if manifest.version == champion:
                manifest = replace(manifest, status="champion")
            elif manifest.status == "champion":
                manifest = replace(manifest, status="retired")
            found.append(manifest)
        return sorted(found, key=lambda m: (m.created_at, m.version))

    # --- internals -----------------------------------------------------------------------

    def _verify(self, manifest: ModelManifest) -> None:
        self._load_checked(manifest.version, manifest.sha256)

    def _load_checked(self, version: str, sha256: str) -> LinearModel:
        path = self.artifact_path(version)
        if not path.is_file():
            raise ModelNotFoundError(f"no artifact for model version {version} at {path}")
        try:
            model = load_model(path, expected_sha256=sha256)
        except ValueError as exc:
            raise ArtifactIntegrityError(f"model {version} refused: {exc}") from None
        if model.version != version:
            raise ArtifactIntegrityError(
                f"model {version} refused: its artifact says version {model.version}"
            )
        return model

    def _swap_pointer(
        self, build: Callable[[ChampionPointer | None], ChampionPointer], attempts: int = 20
    ) -> tuple[ChampionPointer | None, ChampionPointer]:
        """Replace the pointer with ``build(current)`` in a WATCH/MULTI transaction (retried
        when another writer got in between); return (the replaced pointer, the new one)."""
        key = self.keys.champion
        for _ in range(attempts):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    current = None if raw is None else ChampionPointer.from_json(raw)
                    pointer = build(current)
                    pipe.multi()
                    pipe.set(key, pointer.to_json())
                    pipe.execute()
                except redis.WatchError:
                    continue
            # After the swap (a cluster runs no PUBLISH inside a transaction); readers
            # poll the pointer, so a lost notification only delays them.
            self.client.publish(self.keys.model_events, pointer.version)
            return current, pointer
        raise RegistryError("the champion pointer kept changing; try again")

    def _update_statuses(self, champion: str, replaced: str | None) -> None:
        """Best effort: mirror the pointer into the manifests (the pointer stays the truth)."""
        self._set_status(champion, "champion")
        if replaced is not None and replaced != champion:
            self._set_status(replaced, "retired")

    def _set_status(self, version: str, status: Status) -> None:
        try:
            manifest = self.manifest(version)
        except ModelNotFoundError:
            return
        if manifest.status == status:
            return
        directory = self.path_of(version)
        temp = directory / f"{TEMP_PREFIX}{MANIFEST_FILE}-{secrets.token_hex(4)}"
        write_synced(temp, replace(manifest, status=status).to_json())
        os.replace(temp, directory / MANIFEST_FILE)
        fsync_dir(directory)
