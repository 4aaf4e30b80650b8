"""Drift benchmark: the drift job (``churnstream drift --once``) over 100,000 customers.

Against the real Redis of :func:`bench.common.services`, under an isolated key prefix
(``benchdrift<N>``) deleted again at the end:

1. **Load** ``customers`` customers in the store's own format, exactly as the API benchmark
   does (:func:`bench.api_bench.load_customers`: 20-30 day tiles each, scalars, a score,
   members of the ``risk`` and ``scored_at`` indexes, all scored within the last hour).
2. **Model** — the worker benchmark's ``LinearModel``, registered with a reference sample
   of 5,000 of those customers' features at load time plus its scores (what the trainer
   stores with a model), and promoted.
3. **drift_seconds** — :func:`monitoring.drift.run_drift` with the default settings, as
   ``churnstream drift --once`` runs it: sample ``CHURN_DRIFT_SAMPLE_SIZE`` (10,000) of the
   recently scored customers, read them from Redis, compute their features and scores,
   run Evidently (``DataDriftPreset`` + the score's ``ValueDrift``) against the reference,
   write the HTML + JSON and the index. ``drift_html_mb`` is the page's size (the limit is
   ``CHURN_DRIFT_HTML_MAX_BYTES``, 10 MB). The steps are timed separately too (a second
   sample read, then Evidently on it).
4. **drift_all_seconds** — the same job with the sample size raised to every customer
   (100,000 rows through Evidently), and its page size.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bench.api_load import TilePool, delete_prefix, load_customers
from bench.api_server import bench_model
from bench.common import how_run, services, write_result
from core.keys import Keys
from core.redis_client import connect_redis
from core.registry import ModelRegistry
from core.store import FeatureStore
from monitoring.compare import compare
from monitoring.drift import DriftOutcome, run_drift
from monitoring.sample import live_sample

log = logging.getLogger("bench.drift")

REFERENCE_ROWS = 5000
POOL = 2048


def _outcome(outcome: DriftOutcome) -> dict[str, Any]:
    summary, report = outcome.summary, outcome.report
    if summary is None or report is None:
        raise RuntimeError(f"the drift job wrote no report: {outcome.skipped}")
    return {
        "seconds": round(outcome.seconds, 2),
        "rows_current": summary.rows_current,
        "rows_reference": summary.rows_reference,
        "html_bytes": report.html_bytes,
        "json_bytes": report.json_path.stat().st_size,
        "drift_share": round(summary.drift_share, 4),
        "dataset_drift": summary.dataset_drift,
        "sample": outcome.sample,
    }


def run(customers: int = 100_000, seed: int = 7, all_customers: bool = True) -> dict[str, Any]:
    """Run the phases of the module docstring; write ``results/drift.json``."""
    rng = np.random.default_rng(seed)
    prefix = f"benchdrift{customers}"
    details: dict[str, Any] = {
        **how_run("drift"),
        "customers": customers,
        "redis_key_prefix": prefix,
    }
    figures: dict[str, Any] = {"drift_customers": customers}
    temp = Path(tempfile.mkdtemp(prefix="bench-drift-"))
    with services() as svc, contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, temp, True)
        settings = svc.settings.model_copy(
            update={
                "redis_key_prefix": prefix,
                "model_dir": temp / "models",
                "reports_dir": temp / "reports",
            }
        )
        client = connect_redis(settings)
        keys = Keys(prefix, settings.topic_partitions)
        delete_prefix(client, keys)  # an earlier run that died
        cleanup.callback(delete_prefix, client, keys, customers)
        model = bench_model(f"bench-drift-{uuid.uuid4().hex[:8]}")

        log.info("loading %d customers under %s:*", customers, prefix)
        now = time.time()
        report = load_customers(client, keys, customers, TilePool.build(rng, POOL), model, now,
                                rng)  # fmt: skip
        details["load_seconds"] = round(report.seconds, 1)

        store = FeatureStore(client, keys)
        reference = live_sample(
            store, model, since=0, as_of=now, size=REFERENCE_ROWS, seed=seed + 1
        ).frame
        registry = ModelRegistry(settings, client)
        registry.register(model, {}, {"source": "bench"}, reference=reference)
        registry.promote(model.version)
        details["reference_rows"] = len(reference)

        log.info("drift job, default settings (sample of %d)", settings.drift_sample_size)
        default = _outcome(run_drift(settings, client, seed=seed))
        details["default"] = {"drift_sample_size": settings.drift_sample_size, **default}
        figures["drift_seconds"] = default["seconds"]
        figures["drift_html_mb"] = round(default["html_bytes"] / 1e6, 2)

        started = time.perf_counter()
        live = live_sample(
            store,
            model,
            since=now - settings.drift_recent_seconds,
            as_of=time.time(),
            size=settings.drift_sample_size,
            seed=seed,
        )
        sample_s = time.perf_counter() - started
        started = time.perf_counter()
        compare(reference, live.frame, list(model.feature_names), settings.drift_share_threshold)
        details["steps"] = {
            "sample_read_and_features_seconds": round(sample_s, 2),
            "evidently_seconds": round(time.perf_counter() - started, 2),
            "rows": len(live.frame),
        }

        if all_customers:
            log.info("drift job over every customer (%d rows)", customers)
            every = settings.model_copy(update={"drift_sample_size": customers})
            full = _outcome(run_drift(every, client, seed=seed))
            details["all_customers"] = {"drift_sample_size": customers, **full}
            figures["drift_all_seconds"] = full["seconds"]
            figures["drift_all_html_mb"] = round(full["html_bytes"] / 1e6, 2)
        cleanup.close()
    path = write_result("drift", figures, details)
    return {**figures, "details": str(path)}
