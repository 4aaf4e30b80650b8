"""Worker benchmarks: throughput, the floor, the naive baseline, the batch logic alone,
latency, memory. The phases live in ``bench/worker_*.py``; this module runs them.

Every figure is measured against the real Kafka broker and Redis server of
:func:`bench.common.services`, with fresh topic / key prefixes and consumer groups, which
are deleted again at the end. The phases, in order:

1. ``worker_eps`` — ``churnstream worker`` as a subprocess (the real Faust app; default
   settings except the isolated names, the web port and the model directory), with a
   champion model registered and promoted first, consumes ``events`` simulated events
   produced beforehand. The clock starts when the first applied batch shows up in Redis
   (a partition fence moves; the events that batch already applied are subtracted) and
   stops when every fence has reached the end of its partition. Run on 20,000 simulated
   customers (the headline: median of ``rounds`` workers, each with a fresh consumer
   group and key prefix on the same topics), on 2,000 customers (``worker_eps_skewed``:
   ~100 events per customer, fewer customers per batch) and, when the default engine is
   not Faust's, on the 20,000 again with ``CHURN_WORKER_ENGINE=faust``
   (``worker_eps_faust_engine``).
   Then ``worker_eps_cluster_1``, ``_2`` and ``_4``: 1, 2 and 4 workers in one group on a
   Redis Cluster of three masters, on the uniform input (:mod:`bench.worker_cluster_bench`;
   ``with_cluster=False`` leaves it out).
   Then ``worker_floor_eps``: a bare consume + decode loop over the same topics
   (:mod:`bench.worker_floor`), ``rounds`` times.
2. ``e2e_p50_ms`` / ``e2e_p99_ms`` (and ``e2e_p99_ms_at_10k``) — the same worker, caught
   up, while events are produced at ``e2e_rate`` (then ``e2e_rate_high``) per second for
   ``e2e_seconds``, ``e2e_rounds`` times each (the round with the median p99 reported):
   every ``sample_every``-th event goes to a customer of its own (warmed up beforehand,
   so only that event is in flight for them) and a thread polls those customers'
   ``last_event_time`` score field with one pipelined ``HGET`` round every ~2 ms;
   latency is from just before ``producer.send`` to the end of the first poll that sees
   the event applied and scored. Then once more (details only) with a worker restarted
   with ``CHURN_BATCH_WITHIN_MS=short_within_ms``.
3. ``worker_batch_eps`` — :class:`stream.batch.BatchProcessor` alone, fed the same
   messages (read back from Kafka first) in batches of the worker's batch size against
   real Redis (band changes and dead letters published through the outbox, behind the
   next batch as the worker does); then a cProfile'd pass; then one timed pass per input
   (uniform and skewed) with each stage wrapped in a ``perf_counter`` timer: µs per event
   for each stage, next to the floor's.
4. ``worker_naive_eps`` — a per-event loop on the same messages: a plain confluent-kafka
   ``Consumer.poll()`` per message, ``EventValidator.decode``, one ``EVALSHA`` that
   ``HINCRBY``s that customer's day hash and reads its counters back, one scikit-learn
   ``LogisticRegression.predict_proba``. It runs on the first ``naive_events`` messages.
5. ``redis_bytes_per_customer`` — 2,000 customers x 90 days of simulated history applied
   through the BatchProcessor, then ``MEMORY USAGE … SAMPLES 0`` of 200 customer hashes
   plus each customer's share of the two sorted sets.

With ``py_spy`` (a py-spy binary), one more worker run on fresh topics is sampled with
``py-spy record --idle --threads -f raw``; per thread, the busiest lines and the share
of each stage of the batch go into the details.
"""

from __future__ import annotations

import cProfile
import logging
import os
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import services, write_result
from bench.cpu import machine_busy_seconds, redis_cpu_seconds
from bench.worker_baselines import memory_per_customer, naive_rate
from bench.worker_floor import floor_rate
from bench.worker_latency import _latency_round, _median_round, e2e_latency, engine_of
from bench.worker_profiles import (
    batch_processor_rate,
    profile_summary,
    profiled_worker_run,
    stage_times,
)
from bench.worker_support import (
    _FENCE_POLL_S,
    PARTITIONS_OF,
    Input,
    WorkerProcess,
    WorkerRun,
    champion_model,
    delete_topics,
    drop_keys,
    isolated,
    produce_lines,
    promote_champion,
    read_messages,
    skewed_input,
    uniform_input,
    wait_all_applied,
    wait_first_batch,
)
from core.features import FEATURE_NAMES
from core.kafka_client import input_end_offsets
from core.keys import Keys
from core.model import LinearModel
from core.redis_client import connect_redis
from core.settings import Settings
from core.store import FeatureStore

log = logging.getLogger("bench.worker")

log = logging.getLogger("bench.worker")

# --- 1. worker throughput ---------------------------------------------------------------


def worker_throughput(
    base: Settings,
    root: Path,
    stack: ExitStack,
    data: Input,
    model: LinearModel,
    tag: str,
    rounds: int = 1,
) -> WorkerRun:
    """Produce ``data`` once, then ``rounds`` times start a worker (a fresh consumer group
    and key prefix each time, so it reads everything again) and time it from its first
    applied batch to drained. Returns the last round, still running (``stack`` stops it),
    with the figures of the median round and every round's rate."""
    topics = isolated(base, tag, root)
    stack.callback(delete_topics, base, [topics.topic_prefix])
    produce_s = produce_lines(topics, data.lines)
    ends = input_end_offsets(topics)
    runs: list[WorkerRun] = []
    for _ in range(rounds):
        if runs:
            runs[-1].worker.stop()
        settings = isolated(base, tag, root).model_copy(
            update={"topic_prefix": topics.topic_prefix}
        )
        stack.callback(delete_topics, base, [], [settings.consumer_group])
        stack.callback(drop_keys, connect_redis(base), [settings.redis_key_prefix])
        promote_champion(settings, model)
        runs.append(_timed_worker(settings, root, stack, data, ends))
    median = sorted(runs, key=lambda r: r.figures["eps"])[len(runs) // 2]
    last = runs[-1]
    last.figures = {
        **median.figures,
        "eps_rounds": [r.figures["eps"] for r in runs],
        "produce_seconds": round(produce_s, 2),
    }
    return last


def _timed_worker(
    settings: Settings,
    root: Path,
    stack: ExitStack,
    data: Input,
    ends: dict[PARTITIONS_OF, int],
) -> WorkerRun:
    total = sum(ends.values())
    store = FeatureStore(connect_redis(settings), Keys.of(settings))
    rclient = connect_redis(settings)
    worker = WorkerProcess(settings, root / f"worker-{settings.redis_key_prefix}.log")
    stack.callback(worker.stop)
    log.info("worker start input=%s events=%d engine=%s", data.name, total, engine_of(settings))
    worker.start()
    # Wait for the first applied batch (a fence moves), then time until drained.
    applied0, _ = wait_first_batch(store, ends, worker.exited, worker.log_tail)
    t0 = time.perf_counter()
    cpu0, redis0, busy0 = worker.cpu_seconds(), redis_cpu_seconds(rclient), machine_busy_seconds()
    wait_all_applied(store, ends, worker.exited, worker.log_tail, timeout=600)
    t1 = time.perf_counter()
    cpu1, redis1, busy1 = worker.cpu_seconds(), redis_cpu_seconds(rclient), machine_busy_seconds()
    elapsed = t1 - t0
    metrics = worker.metrics()
    batches = metrics.get("churn_worker_batch_duration_seconds_count", 0.0)
    in_process = metrics.get("churn_worker_batch_duration_seconds_sum", 0.0)
    scored = metrics.get("churn_worker_scores_total", 0.0)
    figures = {
        "engine": engine_of(settings),
        "eps": round((total - applied0) / elapsed),
        "events": total,
        "timed_events": total - applied0,
        "seconds_first_batch_to_drained": round(elapsed, 3),
        "eps_from_healthy": round(total / (t1 - worker.healthy_at)),
        "seconds_spawn_to_healthy": round(worker.healthy_at - worker.started_at, 2),
        "seconds_healthy_to_first_batch_seen": round(t0 - worker.healthy_at, 2),
        "batches": int(batches),
        "mean_batch_events": round(metrics.get("churn_worker_batch_size_events_sum", 0) / batches)
        if batches
        else None,
        "mean_customers_scored_per_batch": round(scored / batches, 1) if batches else None,
        "band_changes_published": int(metrics.get("churn_worker_band_changes_total", 0)),
        "applied": int(metrics.get("churn_worker_events_applied_total", 0)),
        "share_of_worker_wall_time_in_BatchProcessor_process": round(in_process / elapsed, 3),
        "mean_ms_per_batch_in_process": round(1000 * in_process / batches, 2) if batches else None,
        "ms_in_process_per_customer_scored": round(1000 * in_process / scored, 3)
        if scored
        else None,
        "worker_cpu_cores_used": round((cpu1 - cpu0) / elapsed, 2),
        "redis_cpu_cores_used": round((redis1 - redis0) / elapsed, 2),
        "machine_cpu_cores_busy": round((busy1[0] - busy0[0]) / elapsed, 2),
        "input": data.stats(settings.batch_size),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }
    log.info("worker done input=%s eps=%s", data.name, figures["eps"])
    return WorkerRun(settings, worker, ends, figures)


# --- the benchmark ----------------------------------------------------------------------


def run(
    events: int = 200_000,
    naive_events: int = 20_000,
    faust_events: int = 60_000,
    rounds: int = 3,
    short_within_ms: int = 20,
    short_e2e_seconds: float = 15.0,
    e2e_rate: int = 2_000,
    e2e_rate_high: int = 10_000,
    e2e_seconds: float = 60.0,
    e2e_rounds: int = 3,
    sample_every: int = 20,
    py_spy: str | None = None,
    with_cluster: bool = True,
) -> dict[str, Any]:
    started = time.perf_counter()
    model = champion_model()
    uniform = uniform_input(events)
    skewed = skewed_input(events)
    with services() as svc, tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        base = svc.settings
        root = Path(tmp)
        batch = base.batch_size

        # 1 + 2: the worker on the uniform input, then latency with it caught up.
        main = worker_throughput(base, root, stack, uniform, model, "wuni", rounds=rounds)
        customers = sorted({e.customer_id for e in uniform.events})
        # The floor: a bare consume + decode loop on the same topics (median of rounds).
        floor_rounds = [
            round(floor_rate(main.settings, main.ends, batch)) for _ in range(max(rounds, 1))
        ]
        latency_rounds: dict[int, list[dict[str, Any]]] = {e2e_rate: [], e2e_rate_high: []}
        for rate in (e2e_rate, e2e_rate_high):
            for round_ in range(e2e_rounds):
                log.info("e2e latency rate=%d seconds=%.0f round=%d", rate, e2e_seconds, round_)
                latency_rounds[rate].append(
                    e2e_latency(main, customers, rate, e2e_seconds, sample_every)
                )
        latency = _median_round(latency_rounds[e2e_rate], "e2e_p99_ms")
        latency_high = _median_round(latency_rounds[e2e_rate_high], "e2e_p99_ms")
        main.worker.stop()
        # 2b: the same with a worker (restarted on the same topics and keys, its memory
        # warmed up again) that waits at most ``short_within_ms`` to fill a batch.
        short = main.settings.model_copy(update={"batch_within_ms": short_within_ms})
        short_worker = WorkerProcess(short, root / "worker-short-within.log")
        stack.callback(short_worker.stop)
        short_worker.start()
        log.info("e2e latency batch_within_ms=%d", short_within_ms)
        latency_short = e2e_latency(
            WorkerRun(short, short_worker, main.ends),
            customers,
            e2e_rate,
            short_e2e_seconds,
            sample_every,
            warm_customers=customers,
        )
        short_worker.stop()
        # 1b: the skewed input.
        skew = worker_throughput(base, root, stack, skewed, model, "wskw", rounds=rounds)
        skew.worker.stop()
        # 1c: the Faust agent engine on the start of the uniform input (it is much slower,
        # so fewer events keep the run short), when the default engine is another one.
        faust_run = None
        if engine_of(base) != "faust":
            faust_settings = base.model_copy(update={"worker_engine": "faust"})
            head = min(events, faust_events)
            faust_input = Input(
                "uniform",
                f"the first {head:,} events of the uniform input",
                uniform.events[:head],
            )
            faust_run = worker_throughput(faust_settings, root, stack, faust_input, model, "wfst")
            faust_run.worker.stop()
        # 1d: 1, 2 and 4 workers in one group on a Redis Cluster of three masters.
        cluster_figures: dict[str, int] = {}
        cluster_details: dict[str, Any] = {}
        if with_cluster:
            from bench.worker_cluster_bench import run_cluster

            cluster_figures, cluster_details = run_cluster(
                base, root, stack, uniform, model, rounds=rounds
            )

        # 3: the BatchProcessor alone on the uniform run's messages (the topics now also
        # hold the latency phase's events: only offsets below the first run's ends count).
        messages = read_messages(main.settings, main.ends)
        bp_settings = isolated(base, "bp", root).model_copy(
            update={"topic_prefix": main.settings.topic_prefix}
        )
        stack.callback(drop_keys, connect_redis(base), [bp_settings.redis_key_prefix])
        log.info("batch processor alone messages=%d", len(messages))
        bp_eps, bp_scored = batch_processor_rate(bp_settings, messages, model, batch)
        profiled = isolated(base, "bpprof", root).model_copy(
            update={"topic_prefix": main.settings.topic_prefix}
        )
        stack.callback(drop_keys, connect_redis(base), [profiled.redis_key_prefix])
        profile = cProfile.Profile()
        profile_events = min(len(messages), 60_000)
        prof_eps, _ = batch_processor_rate(
            profiled, messages[:profile_events], model, batch, profile
        )
        # Where the time goes, stage by stage (perf_counter timers, no profiler), on the
        # uniform and the skewed input.
        stages: dict[str, Any] = {}
        for tag, run_of in (("uniform", main), ("skewed", skew)):
            timed = isolated(base, f"bpst{tag[0]}", root).model_copy(
                update={"topic_prefix": run_of.settings.topic_prefix}
            )
            stack.callback(drop_keys, connect_redis(base), [timed.redis_key_prefix])
            stages[tag] = stage_times(
                timed, read_messages(run_of.settings, run_of.ends), model, batch
            )

        # 4: the naive loop, same messages (the first naive_events the consumer gets).
        naive_rounds: list[float] = []
        for _ in range(max(rounds, 1)):
            naive_prefix = f"bench-naive-{uuid.uuid4().hex[:8]}"
            stack.callback(drop_keys, connect_redis(base), [naive_prefix])
            log.info("naive loop events=%d", naive_events)
            eps, naive_done = naive_rate(main.settings, naive_prefix, naive_events, main.ends)
            naive_rounds.append(eps)
        naive_eps = float(np.median(naive_rounds))

        # 5: memory.
        mem_settings = isolated(base, "mem", root).model_copy(
            update={"topic_prefix": main.settings.topic_prefix}
        )
        stack.callback(drop_keys, connect_redis(base), [mem_settings.redis_key_prefix])
        log.info("memory build")
        memory = memory_per_customer(mem_settings, model)

        spy = None
        if py_spy:
            log.info("py-spy run")
            spy = profiled_worker_run(base, root, stack, uniform, model, py_spy)

        redis_version = connect_redis(base).info("server").get("redis_version")

    worker_eps = main.figures["eps"]
    figures = {
        "worker_eps": worker_eps,
        "worker_eps_skewed": skew.figures["eps"],
        **({"worker_eps_faust_engine": faust_run.figures["eps"]} if faust_run else {}),
        **cluster_figures,
        "worker_naive_eps": round(naive_eps),
        "worker_speedup_vs_naive": round(worker_eps / naive_eps, 1),
        "worker_batch_eps": round(bp_eps),
        "e2e_p50_ms": latency["e2e_p50_ms"],
        "e2e_p99_ms": latency["e2e_p99_ms"],
        "e2e_p99_ms_at_10k": latency_high["e2e_p99_ms"],
        "worker_floor_eps": int(np.median(floor_rounds)),
        "redis_bytes_per_customer": memory["redis_bytes_per_customer"],
    }
    details: dict[str, Any] = {
        "command": "make bench BENCH_ARGS='--only worker'",
        "exact_command": (
            ".venv/bin/python -m bench.run --only worker "
            f"--worker-events {events}" + (f" --worker-py-spy {py_spy}" if py_spy else "")
        ),
        "targets": {
            "worker_eps": ">= 50000",
            "worker_speedup_vs_naive": ">= 35",
            "worker_eps_skewed": ">= 80000",
            "e2e_p99_ms": "<= 100 (at 2,000 events/s)",
            "e2e_p99_ms_at_10k": "<= 250 (at 10,000 events/s)",
            "redis_bytes_per_customer": "<= 3000",
        },
        "floor": {
            "eps_rounds": floor_rounds,
            "method": "a bare confluent-kafka consume(batch_size) loop with a fresh consumer "
            "group over the uniform run's topics, each message decoded by msgspec into the "
            "typed event (bench.worker_floor); timed from the first message to the last; "
            "median of the rounds",
        },
        "worker_share_of_floor": round(worker_eps / max(np.median(floor_rounds), 1), 3),
        **({"cluster": cluster_details} if cluster_details else {}),
        "services": {
            "kafka": base.kafka_bootstrap_servers,
            "redis": base.redis_url,
            "redis_version": redis_version,
            "partitions_per_input_topic": base.topic_partitions,
        },
        "worker_settings": {
            "engine": engine_of(base),
            "batch_size": base.batch_size,
            "batch_within_ms": base.batch_within_ms,
            "note": "defaults; only topic/key prefixes, consumer group, web port, model and "
            "run dirs are isolated",
        },
        "model": {"version": model.version, "features": len(model.feature_names)},
        "worker": {
            "timing": "from the first applied batch seen in Redis (a fence moved; the "
            "events it applied are not counted) to every fence at its partition's end; "
            "eps_from_healthy counts all events from the moment /health answered. The "
            f"uniform input is timed {rounds} times (a fresh consumer group and key prefix "
            "each, same topics) and the median round reported; the others once. Fences are "
            f"polled every {_FENCE_POLL_S * 1000:g} ms.",
            "uniform": main.figures,
            "skewed": skew.figures,
            "uniform_faust_engine": faust_run.figures if faust_run else None,
        },
        "e2e_at_10k": {
            **latency_high,
            "rounds": [_latency_round(r) for r in latency_rounds[e2e_rate_high]],
            "method": "as e2e, at the higher rate; the median round by p99",
        },
        "e2e": {
            **latency,
            "rounds": [_latency_round(r) for r in latency_rounds[e2e_rate]],
            "method": "a worker caught up on the uniform run; Play events at the target rate "
            "(paced send by send) to random customers of that run; every sample_every-th "
            "event goes to a dedicated, warmed-up customer; a thread polls those customers' "
            "'last_event_time' score field (pipelined HGET, one round every ~2 ms); latency "
            "= first poll that sees the event's time minus the moment before send(). "
            "Resolution: the poll interval plus one round trip (~2-3 ms, overstating).",
        },
        "e2e_short_batch_within": {
            **latency_short,
            "batch_within_ms": short_within_ms,
            "method": "as e2e, for a worker restarted with CHURN_BATCH_WITHIN_MS="
            f"{short_within_ms} (everything else default) after one warm-up event for each "
            "customer of the uniform run; not a headline figure, it shows the setting's effect",
        },
        "batch_processor": {
            "eps": round(bp_eps),
            "events": len(messages),
            "batch_size": batch,
            "customers_scored": bp_scored,
            "input": "the uniform run's messages read back from Kafka in fetch order, fed "
            "to BatchProcessor.process with a fresh Redis key prefix (real Redis; band "
            "changes really published to Kafka)",
            "profile": {
                "events": profile_events,
                "eps_under_cprofile": round(prof_eps),
                **profile_summary(profile),
            },
            "stages": {
                **stages,
                "floor_us_per_event": round(1e6 / float(np.median(floor_rounds)), 2),
                "method": "one more pass of BatchProcessor.process over each input's "
                "messages (fresh key prefix) with each stage wrapped in a perf_counter "
                "timer (bench.worker_profiles.stage_times); nested stages also count in "
                "their parent; the floor is the bare consume + decode loop's time per event",
            },
        },
        "naive": {
            "eps": round(naive_eps),
            "eps_rounds": [round(e) for e in naive_rounds],
            "events": naive_done,
            "subset": f"the first {naive_done:,} messages a fresh consumer group polls from "
            f"the uniform run's topics (of {main.figures['events']:,})",
            "per_event": "Consumer.poll() -> EventValidator.decode -> one EVALSHA (HINCRBY "
            "the event's counters in the customer's day hash + HMGET that day's 21 counters) "
            "-> LogisticRegression.predict_proba on one row of "
            f"{len(FEATURE_NAMES)} features",
            "note": "generous to the naive loop: it reads back one day's counters, not the "
            "7/30/90-day windows the features need; timed from its first message",
        },
        "memory": memory,
        "py_spy_worker": spy,
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    write_result("worker", figures, details)
    return {**figures, **details}
