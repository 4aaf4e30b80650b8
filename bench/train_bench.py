"""Training benchmark: the raw Online Retail file to a registered model, timed.

The same code path as ``churnstream train --data online-retail FILE`` (without promotion):
import the file (541,909 invoice lines), fingerprint it, build the point-in-time dataset,
fit the logistic model, the RFM baseline and the gradient-boosting comparison, write the
model card, and register the model with its reference sample in a fresh registry
directory (a scratch Redis key prefix). ``train_seconds`` is the wall time of all of it;
the target is 60 s. The file is read from ``../shared/data/online_retail.parquet`` beside
the repository (or ``CHURN_ONLINE_RETAIL_FILE``); without it the benchmark says so and
records nothing.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, services, write_result

DEFAULT_FILE = BENCH_DIR.parent.parent / "shared" / "data" / "online_retail.parquet"
TARGET_SECONDS = 60.0


def data_file() -> Path:
    return Path(os.environ.get("CHURN_ONLINE_RETAIL_FILE", DEFAULT_FILE))


def run(path: Path | None = None, retention_days: int = 400) -> dict[str, Any]:
    from core.redis_client import connect_redis
    from core.registry import ModelRegistry
    from offline.model_card import render_model_card
    from offline.transactions import TransactionTrainingConfig, train_online_retail_file

    path = path or data_file()
    if not path.exists():
        message = f"skipped: the Online Retail file is absent ({path})"
        print(message)
        return {"skipped": message}
    phases: dict[str, float] = {}  # phase (its progress message) -> seconds
    current: list[tuple[str, float]] = []

    def progress(message: str) -> None:
        now = time.perf_counter()
        if current:
            name, began = current.pop()
            phases[name] = round(now - began, 2)
        current.append((message, now))

    with services() as svc, tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        settings = svc.settings.model_copy(
            update={
                "model_dir": Path(scratch) / "models",
                "redis_key_prefix": f"bench-train-{uuid.uuid4().hex[:8]}",
                "retention_days": retention_days,
            }
        )
        registry = ModelRegistry(settings, connect_redis(settings))
        started = time.perf_counter()
        config = TransactionTrainingConfig(retention_days=retention_days)
        result = train_online_retail_file(path, config, progress=progress)
        progress("write the model card and register")
        card = render_model_card(result)
        registry.register(
            result.model, result.metrics, result.training, reference=result.reference, card=card
        )
        seconds = time.perf_counter() - started
        progress("done")
        current.clear()
    metrics = result.metrics
    figures = {"train_seconds": round(seconds, 1)}
    details = {
        "input": str(path.name),
        "events": result.training["events"],
        "train_rows": result.training["train_rows"],
        "valid_rows": result.training["valid_rows"],
        "retention_days": retention_days,
        "phases_seconds": phases,
        "roc_auc": metrics["roc_auc"],
        "roc_auc_by_cutoff": metrics["roc_auc_by_cutoff"],
        "baseline_roc_auc": metrics["baseline"]["roc_auc"],
        "baseline_roc_auc_by_cutoff": metrics["baseline"]["roc_auc_by_cutoff"],
        "boosting_roc_auc": metrics.get("boosting", {}).get("roc_auc"),
        "target_train_seconds": TARGET_SECONDS,
        "command": "make bench BENCH_ARGS='--only train'",
    }
    write_result("train", figures, details)
    return {**figures, **details}
