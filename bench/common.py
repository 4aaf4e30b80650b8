"""Shared pieces of the benchmarks: where results go, the machine, the services."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from churnstream.infra.processes import churnstream_argv
from core.settings import Settings, get_settings
from core.settings_env import settings_environment

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
CLI = churnstream_argv()  # `churnstream`, run by this interpreter
RESULTS_DIR = BENCH_DIR / "results"
DATA_DIR = BENCH_DIR / "data"
SUMMARY = RESULTS_DIR / "summary.json"

# The figures `summary.json` must hold once every benchmark has run (its "missing" list
# names the ones still absent).
REQUIRED_FIGURES = (
    "producer_eps", "producer_raw_eps", "replay_eps", "worker_eps", "worker_naive_eps",
    "e2e_p50_ms", "e2e_p99_ms", "api_p50_ms", "api_p99_ms", "api_rps", "train_seconds",
    "drift_seconds", "redis_bytes_per_customer",
)  # fmt: skip


def child_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``churnstream`` subprocess: this repository first on the import
    path, every setting of ``settings`` in its variable, then ``extra``."""
    paths = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    base = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    return settings_environment(settings, extra, base=base)


def how_run(name: str) -> dict[str, str]:
    """How this benchmark was run: the ``make`` command that runs it alone and this
    process's own command line (for the result's details)."""
    return {
        "command": f"make bench BENCH_ARGS='--only {name}'",
        "invocation": " ".join([sys.executable, "-m", "bench.run", *sys.argv[1:]]),
    }


def percentiles_ms(
    samples_s: Sequence[float], digits: int = 3, prefix: str = ""
) -> dict[str, float]:
    """p50, p90, p99, max and mean of ``samples_s`` (seconds) in milliseconds, rounded to
    ``digits``, keyed ``<prefix>p50_ms`` and so on."""
    values = np.asarray(samples_s) * 1000
    figures = {
        "p50": np.percentile(values, 50),
        "p90": np.percentile(values, 90),
        "p99": np.percentile(values, 99),
        "max": values.max(),
        "mean": values.mean(),
    }
    return {f"{prefix}{name}_ms": round(float(value), digits) for name, value in figures.items()}


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model and library versions of this run."""
    mem_kb = 0
    cpu = platform.processor()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = [
        "confluent-kafka", "faust-streaming", "redis", "msgspec", "numpy", "pandas",
        "pyarrow", "scikit-learn", "river", "evidently", "fastapi", "uvicorn",
    ]  # fmt: skip
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in packages},
    }


def _version(name: str) -> str:
    try:
        return version(name)
    except Exception:
        return "absent"


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_result(name: str, figures: dict[str, Any], details: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` (with the revision, the time and the machine of this
    run) and merge ``figures`` into ``results/summary.json``.

    The summary's figures come from several runs, on whatever machine each ran: its
    ``runs`` says, per benchmark, at which revision, when and on which CPU its figures
    were taken (read back from each ``<name>.json``); the top-level ``machine``,
    ``revision`` and ``updated_at`` are those of the newest run."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    path = RESULTS_DIR / f"{name}.json"
    this_machine = machine()
    document = {
        "benchmark": name,
        "at": stamp,
        "revision": git_revision(),
        "machine": this_machine,
        **figures,
        **details,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    summary: dict[str, Any] = json.loads(SUMMARY.read_text()) if SUMMARY.exists() else {}
    summary.setdefault("figures", {}).update(figures)
    summary.setdefault("commands", {})[name] = details.get("command", "")
    summary["machine"] = this_machine
    summary["revision"] = git_revision()
    summary["updated_at"] = stamp
    summary["runs"] = runs_of(RESULTS_DIR)
    summary["missing"] = [key for key in REQUIRED_FIGURES if key not in summary["figures"]]
    SUMMARY.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return path


def runs_of(results_dir: Path) -> dict[str, dict[str, Any]]:
    """Per benchmark result in ``results_dir``: the revision, time and CPU of its run (the
    CPU is None for a result written before results recorded their machine)."""
    runs: dict[str, dict[str, Any]] = {}
    for result in sorted(results_dir.glob("*.json")):
        if result == results_dir / SUMMARY.name:
            continue
        document = json.loads(result.read_text())
        runs[result.stem] = {
            "revision": document.get("revision"),
            "at": document.get("at"),
            "cpu": (document.get("machine") or {}).get("cpu"),
        }
    return runs


@dataclass(frozen=True)
class BenchServices:
    settings: Settings
    started_here: bool


@contextmanager
def services() -> Iterator[BenchServices]:
    """Kafka + Redis for a benchmark: the configured ones when ``KAFKA_BOOTSTRAP_SERVERS``
    is set, else the local stack (started if needed, and stopped again if started here)."""
    settings = get_settings()
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield BenchServices(settings, started_here=False)
        return
    from churnstream.infra import LocalStack

    stack = LocalStack.from_settings(settings)
    was_running = all(service.running for service in stack.status().services)
    stack.up()
    local = settings.model_copy(
        update={"kafka_bootstrap_servers": stack.bootstrap_servers, "redis_url": stack.redis_url}
    )
    try:
        yield BenchServices(local, started_here=not was_running)
    finally:
        if not was_running:
            stack.down()
