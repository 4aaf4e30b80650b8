"""The fault-injection suite: exactness under crashes, restarts and bad input.

On its own Kafka broker and Redis server (a :class:`~churnstream.infra.LocalStack` on free
ports, in a temporary directory, because it restarts both), with a worker, the API and a
champion model, it sends ``events`` simulated events through Kafka, with ``malformed``
bad messages of ten kinds spread among them, and meanwhile, at random points of the
worker's progress (seeded):

* SIGKILLs the worker ``kills`` times, restarting it each time after a short random pause;
* restarts Redis once (SIGTERM, so it writes its append-only file, then start again);
* restarts the Kafka broker once (clean shutdown, then start again).

A worker that exits by itself is restarted too, reported (its log is kept) and fails the
run. An API poller measures the availability of ``GET /health`` and
``GET /customers/{id}/risk`` throughout.

When every partition is drained the suite checks, and exits non-zero unless all hold:

1. ``churnstream verify`` finds no mismatched, missing or extra customer;
2. every valid event was counted exactly once (``events_counted`` equals ``events``) and
   every simulated customer was compared;
3. the dead-letter topic holds exactly the malformed messages — per kind, and byte for
   byte — counting each source (topic, partition, offset) once: dead letters are sent at
   least once, so a batch re-applied after a kill may send some twice (reported);
4. the producer delivered everything, every planned fault happened, and the worker never
   exited by itself (Redis and Kafka restarts are ridden out).

Results go to ``bench/results/faults.json`` (``faults_reduced.json`` at the reduced size).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, child_env, write_result
from bench.faults.malformed import KINDS, malformed
from bench.faults.probes import (
    ApiPoller,
    Progress,
    end_offsets,
    outboxes_published,
    read_dead_letters,
)
from bench.faults.processes import ChildProcess, api_process, restart_service, worker_process
from churnstream.infra import LocalStack
from core.kafka_client import ensure_topics
from core.producer import EventProducer
from core.redis_client import connect_redis
from core.registry import ModelRegistry
from core.settings import Settings
from core.topics import Topics
from offline.simulator import SimulationConfig, simulate

log = logging.getLogger("bench.faults")

EVENTS_PER_CUSTOMER_DAY = 7.0  # the simulator's average, to size the population
SIM_DAYS = 30


@dataclass(frozen=True)
class Plan:
    events: int
    kills: int
    malformed: int
    seed: int = 7
    engine: str = "batch"
    partitions: int = 8
    size: str = "custom"


SIZES = {
    "full": Plan(events=1_000_000, kills=5, malformed=50_000, size="full"),
    "reduced": Plan(events=100_000, kills=2, malformed=5_000, size="reduced"),
}


@dataclass
class Fault:
    kind: str  # "kill" | "redis" | "kafka"
    at: float  # fraction of all messages applied when it fires
    fired_at_s: float | None = None  # seconds after the first event was sent
    applied_before: int | None = None
    seconds: float | None = None  # worker back healthy / service down time
    pause_s: float | None = None


@dataclass
class Sent:
    """What the producer thread sent (shared with the main thread)."""

    events: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    malformed_values: list[bytes] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)
    crashed: BaseException | None = None


def schedule(plan: Plan, rng: random.Random) -> list[Fault]:
    """Kills and the two restarts at random progress points in [0.08, 0.9], at least
    0.6 / (faults + 1) apart, in firing order."""
    kinds = ["kill"] * plan.kills + ["redis", "kafka"]
    gap = 0.6 / (len(kinds) + 1)
    while True:
        points = sorted(rng.uniform(0.08, 0.9) for _ in kinds)
        if all(b - a >= gap for a, b in pairwise(points)):
            break
    rng.shuffle(kinds)
    return [Fault(kind, round(at, 4)) for kind, at in zip(kinds, points, strict=True)]


def simulation(plan: Plan) -> SimulationConfig:
    """A population that yields a little more than ``plan.events`` events in SIM_DAYS
    days ending two days ago (Kafka must not see future times)."""
    customers = max(10, round(plan.events * 1.15 / (EVENTS_PER_CUSTOMER_DAY * SIM_DAYS)))
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=SIM_DAYS + 2)
    return SimulationConfig(customers=customers, days=SIM_DAYS, start=start, seed=plan.seed)


def produce(settings: Settings, plan: Plan, sent: Sent) -> None:
    """Send ``plan.events`` simulated events with ``plan.malformed`` bad messages spread
    evenly among them (the ten kinds in turn)."""
    started = time.monotonic()
    topics = Topics.from_settings(settings)
    every = plan.events // plan.malformed if plan.malformed else 0
    seen: set[str] = set()
    try:
        # Broker restarts take seconds: let librdkafka retry for up to 15 minutes.
        producer = EventProducer(
            settings, create_topics=False, extra_config={"message.timeout.ms": 900_000}
        )
        events = islice(simulate(simulation(plan)), plan.events)
        for i, event in enumerate(events, start=1):
            producer.send(event)
            if event.customer_id not in seen:
                seen.add(event.customer_id)
                sent.customers.append(event.customer_id)
            sent.events = i
            bad_count = len(sent.malformed_values)
            if every and i % every == 0 and bad_count < plan.malformed:
                kind = KINDS[bad_count % len(KINDS)]
                bad = malformed(
                    kind, bad_count, event.customer_id, event.event_time, settings.max_event_bytes
                )
                producer.send_record(topics.for_kind(bad.topic_kind), bad.key, bad.value)
                sent.malformed[kind] += 1
                sent.malformed_values.append(bad.value)
        remaining = producer.flush(timeout=900)
        stats = producer.stats
        sent.delivered, sent.failed = stats.delivered, stats.failed + remaining
        sent.errors = list(stats.errors)
    except BaseException as exc:  # reported by the main thread
        sent.crashed = exc
    finally:
        sent.seconds = time.monotonic() - started
        sent.done.set()


class Supervisor:
    """Keeps the worker running: restarts it after a kill, or when it exits by itself
    (which is reported, with the error lines of its log, and fails the suite)."""

    def __init__(self, worker: ChildProcess) -> None:
        self.worker = worker
        self.unplanned_exits: list[dict[str, Any]] = []

    def check(self, started: float) -> None:
        if self.worker.running:
            return
        code = self.worker.process.returncode if self.worker.process is not None else None
        log.warning("worker exited by itself code=%s; restarting", code)
        kept = self.worker.log_path.with_name(f"worker-exit-{len(self.unplanned_exits) + 1}.log")
        shutil.copyfile(self.worker.log_path, kept)
        text = self.worker.log_path.read_text(errors="replace").splitlines()
        errors = [line for line in text if "Crashed reason" in line or "CRITICAL" in line]
        self.unplanned_exits.append(
            {
                "at_s": round(time.monotonic() - started, 1),
                "exit_code": code,
                "errors": errors[-10:],
                "log": str(kept),
            }
        )
        self.worker.start()


def wait_for(
    condition: Any, supervisor: Supervisor, started: float, timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        supervisor.check(started)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f}s")
        time.sleep(0.1)


def fire(
    fault: Fault,
    stack: LocalStack,
    supervisor: Supervisor,
    rng: random.Random,
    started: float,
) -> None:
    fault.fired_at_s = round(time.monotonic() - started, 2)
    log.info("fault kind=%s at=%.3f", fault.kind, fault.at)
    if fault.kind == "kill":
        supervisor.worker.kill()
        fault.pause_s = round(rng.uniform(0.0, 2.0), 2)
        time.sleep(fault.pause_s)
        fault.seconds = round(supervisor.worker.start(), 2)  # back healthy
    else:
        fault.seconds = round(restart_service(stack, fault.kind), 2)  # down, then ready


def run_verify(settings: Settings) -> tuple[int, dict[str, Any], float, int]:
    """`churnstream verify --json` as a subprocess: exit code, report, seconds, peak RSS
    in KiB."""
    code = (
        "import resource, sys\n"
        "from churnstream.cli import app\n"
        "try:\n"
        "    app(['verify', '--json', '-q'])\n"
        "finally:\n"
        "    sys.stderr.write('maxrss_kb=%d\\n' % "
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=child_env(settings),
        cwd=REPO_ROOT,
        timeout=3600,
    )
    seconds = time.monotonic() - started
    rss = 0
    for line in done.stderr.splitlines():
        if line.startswith("maxrss_kb="):
            rss = int(line.split("=", 1)[1])
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = {"error": done.stderr[-2000:]}
    return done.returncode, report, seconds, rss


def check_dead_letters(settings: Settings, sent: Sent) -> dict[str, Any]:
    letters = read_dead_letters(settings)
    by_source: dict[tuple[str, int, int], Any] = {}
    for letter in letters:
        by_source.setdefault(
            (letter.source_topic, letter.source_partition, letter.source_offset), letter
        )
    distinct = list(by_source.values())
    found = Counter(letter.code for letter in distinct)
    values_match = Counter(letter.value for letter in distinct) == Counter(sent.malformed_values)
    return {
        "records": len(letters),
        "distinct_sources": len(distinct),
        "redelivered": len(letters) - len(distinct),
        "expected_by_kind": dict(sorted(sent.malformed.items())),
        "found_by_kind": dict(sorted(found.items())),
        "values_match": values_match,
        "exact": values_match and found == sent.malformed,
    }


def run(plan: Plan, keep: bool = False) -> dict[str, Any]:
    """Run the suite; return the result document (``passed`` says whether all checks held)."""
    from bench.cpu import free_port
    from bench.worker_support import champion_model

    rng = random.Random(plan.seed)
    faults = schedule(plan, rng)
    total = plan.events + plan.malformed
    work = Path(tempfile.mkdtemp(prefix="churnstream-faults-"))
    log.info("fault suite plan=%s work=%s schedule=%s", plan, work, faults)
    defaults = Settings()
    stack = LocalStack(
        run_dir=work / "stack",
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        redis_port=free_port(),
        kafka_libs_dir=defaults.kafka_libs_dir,
        kafka_heap="512m",
    )
    settings = Settings(
        kafka_bootstrap_servers=stack.bootstrap_servers,
        redis_url=stack.redis_url,
        topic_prefix="",
        topic_partitions=plan.partitions,
        redis_key_prefix="churn",
        consumer_group="churnstream-worker",
        run_dir=work / "run",
        model_dir=work / "models",
        archive_dir=work / "archive",
        worker_web_port=free_port(),
        worker_engine=plan.engine,  # type: ignore[arg-type]
        worker_session_timeout_seconds=6.0,
        max_event_bytes=4096,
        log_level="INFO",
    )
    logs = work / "logs"
    logs.mkdir()
    api_port = free_port()
    worker = worker_process(settings, logs)
    api = api_process(settings, api_port, logs)
    supervisor = Supervisor(worker)
    poller = ApiPoller(f"http://127.0.0.1:{api_port}", lambda: sent.customers, seed=plan.seed)
    sent = Sent()
    timings: dict[str, float] = {}
    result: dict[str, Any] = {}
    passed = False
    started = time.monotonic()
    try:
        stack.up(timeout=240)
        timings["stack_up_s"] = round(time.monotonic() - started, 1)
        ensure_topics(settings)
        registry = ModelRegistry(settings, connect_redis(settings))
        registry.promote(
            registry.register(champion_model(), metrics={}, training={"source": "faults"}).version
        )
        timings["worker_start_s"] = round(worker.start(), 1)
        timings["api_start_s"] = round(api.start(), 1)
        poller.start()
        progress = Progress(settings)
        begun = time.monotonic()
        producer = threading.Thread(target=produce, args=(settings, plan, sent), name="producer")
        producer.start()
        for fault in faults:
            wait_for(
                lambda f=fault: (progress.applied() or 0) >= f.at * total or sent.crashed,
                supervisor, begun, 3600, f"progress {fault.at:.0%} before the {fault.kind}",
            )  # fmt: skip
            if sent.crashed:
                break
            fault.applied_before = progress.applied()
            fire(fault, stack, supervisor, rng, begun)
        wait_for(sent.done.is_set, supervisor, begun, 3600, "all events sent")
        if sent.crashed:
            raise RuntimeError(f"the producer failed: {sent.crashed!r}") from sent.crashed
        ends = end_offsets(settings)
        wait_for(
            lambda: all(progress.fences()[tp] >= end - 1 for tp, end in ends.items()),
            supervisor, begun, 3600, "every partition drained",
        )  # fmt: skip
        wait_for(
            lambda: outboxes_published(settings),
            supervisor, begun, 3600, "every partition's output records published",
        )  # fmt: skip
        timings["stream_s"] = round(time.monotonic() - begun, 1)
        poller.stop()
        worker.stop()

        code, report, verify_s, verify_rss = run_verify(settings)
        timings["verify_s"] = round(verify_s, 1)
        dlq = check_dead_letters(settings, sent)
        customers = len(sent.customers)
        checks = {
            "verify exits 0": code == 0,
            "0 mismatched customers": report.get("mismatched") == 0,
            "0 missing customers": report.get("missing") == 0,
            "0 extra customers": report.get("extra") == 0,
            "every valid event counted once": report.get("events_counted") == plan.events,
            "every customer compared": report.get("customers_compared") == customers,
            "DLQ holds exactly the malformed messages": dlq["exact"],
            "producer delivered everything": sent.failed == 0
            and sent.delivered == plan.events + plan.malformed,
            "every planned fault fired": all(f.fired_at_s is not None for f in faults),
            "the worker never exited by itself": not supervisor.unplanned_exits,
        }
        passed = all(checks.values())
        health, risk = poller.health, poller.risk
        polls = health.polls + risk.polls
        result = {
            "passed": passed,
            "checks": checks,
            "plan": asdict(plan),
            "customers": customers,
            "faults": [asdict(f) for f in faults],
            "unplanned_worker_exits": supervisor.unplanned_exits,
            "worker_starts": worker.starts,
            "timings": timings,
            "events_per_second_through_faults": round(total / timings["stream_s"]),
            "producer": {
                "sent_events": sent.events,
                "sent_malformed": len(sent.malformed_values),
                "delivered": sent.delivered,
                "failed": sent.failed,
                "errors": sent.errors,
                "seconds": round(sent.seconds, 1),
            },
            "dead_letters": dlq,
            "api": {
                "availability": round((health.ok + risk.ok) / polls, 6) if polls else 0.0,
                "health": health.as_dict(),
                "risk": risk.as_dict(),
            },
            "verify": {
                "exit_code": code,
                "seconds": round(verify_s, 1),
                "peak_rss_mib": round(verify_rss / 1024, 1),
                "report": report,
            },
        }
        return result
    finally:
        poller.stop()
        for child in (worker, api):
            child.stop()
        stack.down()
        if not result:
            log.error("fault suite aborted; worker log tail:\n%s", worker.log_tail())
        if keep or not passed:
            log.info("work directory kept: %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def write(plan: Plan, result: dict[str, Any], command: str) -> Path:
    """Write the result via :func:`bench.common.write_result`."""
    name = "faults" if plan.size == "full" else f"faults_{plan.size}"
    report = result["verify"]["report"]
    figures = {
        f"{name}_passed": result["passed"],
        f"{name}_events": plan.events,
        f"{name}_worker_kills": plan.kills,
        f"{name}_mismatched": report.get("mismatched"),
        f"{name}_missing": report.get("missing"),
        f"{name}_extra": report.get("extra"),
        f"{name}_dlq_exact": result["dead_letters"]["exact"],
        f"{name}_api_availability": result["api"]["availability"],
        f"{name}_events_per_second": result["events_per_second_through_faults"],
    }
    return write_result(name, figures, {**result, "command": command})
