"""The ``churnstream monitor`` loop: where monitoring meets the trainer.

The loop (one process; several can run, the retrain queue and the cooldown are in
Redis):

* every ``CHURN_SCORE_SHIFT_BUCKET_SECONDS``: the scores written since the last bucket go
  to the ADWIN score-shift detector; an alert brings the next drift report forward; the
  customers-per-band gauges are refreshed;
* every ``CHURN_MONITOR_INTERVAL_SECONDS`` (and once at start): the drift report and the
  label join, each followed by its retraining trigger (:mod:`monitoring.jobs`), and the
  online challenger's update in shadow (:func:`offline.challenger.update_from_archive`);
* every couple of seconds: pending retrain requests (from the triggers, from
  ``POST /admin/retrain``, from ``churnstream retrain --queue``) are taken oldest first
  and run by :func:`offline.retrain.retrain`, which records the outcome.

Its metrics are served on ``CHURN_MONITOR_METRICS_PORT`` (``/metrics``). A failing job is
logged and retried at its next turn; the loop keeps going.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import redis

from core.decisions import RetrainRequest, pop_retrain_request
from core.keys import Keys
from core.registry import ModelRegistry
from core.settings import Settings
from core.store import FeatureStore
from monitoring.jobs import band_counts, drift_job, labels_job
from monitoring.score_shift import ScoreShiftDetector, bucket_scores
from offline.challenger import update_from_archive
from offline.retrain import RetrainOutcome, retrain

log = logging.getLogger(__name__)

REQUEST_POLL_SECONDS = 2.0

Retrainer = Callable[[Settings, redis.Redis, RetrainRequest], RetrainOutcome]


def _default_retrainer(
    settings: Settings, client: redis.Redis, request: RetrainRequest
) -> RetrainOutcome:
    return retrain(settings, client, request)


class MonitorLoop:
    """The monitor's schedule (see the module docstring). ``clock`` is epoch seconds."""

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        retrainer: Retrainer = _default_retrainer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.client = client
        self.keys = Keys.of(settings)
        self.store = FeatureStore(client, self.keys)
        self.registry = ModelRegistry(settings, client)
        self.retrainer = retrainer
        self.clock = clock
        self.detector = ScoreShiftDetector(settings.score_shift_delta)
        now = clock()
        self.bucket_start = now
        self.next_bucket = now + settings.score_shift_bucket_seconds
        self.next_jobs = now
        self.stopping = False

    def run_jobs(self) -> dict[str, Any]:
        """The drift report and the label join, each with its trigger (errors logged)."""
        result: dict[str, Any] = {}
        try:
            drift, decision = drift_job(self.settings, self.client)
            result["drift"] = drift.as_dict()
            result["drift_decision"] = asdict(decision) if decision else None
        except Exception as exc:
            log.exception("drift job failed")
            result["drift"] = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            labels = labels_job(self.settings, self.client)
            result["labels"] = {
                "snapshot": labels.snapshot,
                "periods": [asdict(p) for p in labels.periods],
                "decision": asdict(labels.decision) if labels.decision else None,
            }
        except Exception as exc:
            log.exception("label join failed")
            result["labels"] = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            updated = update_from_archive(self.settings, self.registry)
            if updated is not None:
                state, learned = updated
                summary = state.summary()
                result["challenger"] = {k: v for k, v in summary.items() if k != "history"}
                log.info(
                    "online challenger updated cutoffs_learned=%d new=%d challenger_roc_auc=%s "
                    "champion_roc_auc=%s",
                    summary["cutoffs_learned"], len(learned),
                    summary["challenger_roc_auc"], summary["champion_roc_auc"],
                )  # fmt: skip
        except Exception as exc:
            log.exception("online challenger update failed")
            result["challenger"] = {"error": f"{type(exc).__name__}: {exc}"}
        return result

    def score_bucket(self) -> None:
        """Feed the scores written since the last bucket to ADWIN; refresh band counts."""
        now = self.clock()
        scores = bucket_scores(self.store, self.bucket_start, now)
        self.bucket_start = now
        if self.detector.observe(scores, now) is not None:
            self.next_jobs = min(self.next_jobs, now)  # look closer now, not at the next turn
        model = self.registry.load_champion()
        if model is not None:
            band_counts(self.client, self.keys, model)

    def drain_requests(self) -> list[RetrainOutcome]:
        """Run every pending retrain request, oldest first."""
        done = []
        while not self.stopping:
            request = pop_retrain_request(self.client, self.keys)
            if request is None:
                break
            log.info(
                "retrain request taken trigger=%s requested_by=%s reason=%s",
                request.trigger,
                request.requested_by,
                request.reason,
            )
            done.append(self.retrainer(self.settings, self.client, request))
        return done

    def tick(self) -> None:
        """Whatever is due now."""
        now = self.clock()
        if now >= self.next_bucket:
            try:
                self.score_bucket()
            except Exception:
                log.exception("score-shift check failed")
            self.next_bucket = now + self.settings.score_shift_bucket_seconds
        if now >= self.next_jobs:
            self.run_jobs()
            self.next_jobs = self.clock() + self.settings.monitor_interval_seconds
        try:
            self.drain_requests()
        except Exception:
            log.exception("draining retrain requests failed")

    def run_forever(self) -> None:
        while not self.stopping:
            self.tick()
            wait = min(self.next_bucket, self.next_jobs) - self.clock()
            time.sleep(max(0.05, min(wait, REQUEST_POLL_SECONDS)))
