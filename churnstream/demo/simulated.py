"""``churnstream demo`` on simulated customers: backfill their history, then go live.

In order (see :mod:`churnstream.demo.history` for why the history goes first):

1. a champion model (kept, or a starter model trained on other simulated customers);
2. the worker starts (in the background, while the history is simulated and sent);
3. the history up to the present is sent to Kafka as fast as it goes, and the demo waits
   until the worker has applied all of it (its offset fences reach the topics' ends);
4. the API with its dashboard starts, then the monitor (a drift report at once, then
   every ``--drift-every`` seconds), and the live events stream at ``--rate`` until
   ``--duration`` or Ctrl-C.

The API starts only once the history is applied: until then the scores in Redis are those
of half-loaded customers (see :mod:`churnstream.demo.history`).

The caller stops the worker; the API and the monitor are stopped here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from churnstream.demo.backfill import wait_caught_up
from churnstream.demo.errors import DemoError
from churnstream.demo.history import send_history, split_at_present
from churnstream.demo.risk_board import RiskBoard, print_scored
from churnstream.demo.services import ApiChild, DemoServices, MonitorChild
from churnstream.demo.starter_model import ensure_champion
from churnstream.demo.streaming import stream
from churnstream.demo.worker_child import WorkerChild, wait_for_worker
from churnstream.infra.processes import port_open
from core.events import Event
from core.settings import Settings, env_var_name

TRAIN_SEED_OFFSET = 1000  # the starter model trains on other customers than the stream's
API_READY_SECONDS = 90.0


@dataclass(frozen=True)
class SimulatedDemo:
    """The options of ``churnstream demo`` for simulated customers."""

    customers: int
    days: int
    rate: float | None
    seed: int
    duration: float | None
    worker: bool
    train_customers: int
    train_days: int
    api_port: int
    drift_every: float
    retrain_on_drift: bool


def run_simulated(
    console: Console, settings: Settings, options: SimulatedDemo, services: DemoServices
) -> None:
    """Run the demo (see the module docstring); ``services`` tells the caller what runs."""
    run_dir = Path(settings.run_dir)
    if options.worker:
        _check_ports(settings, options.api_port)
        ensure_champion(
            console,
            settings,
            options.train_customers,
            options.train_days,
            options.seed + TRAIN_SEED_OFFSET,
        )
        services.worker = WorkerChild(settings, run_dir / "worker.log")
        services.worker.spawn()
    try:
        live = _backfill_then_serve(console, settings, options, services)
        board = RiskBoard(settings, services.worker)
        try:
            pace = f"{options.rate:g} events/s" if options.rate else "as fast as possible"
            console.print(f"live: streaming the customers' events at {pace}", highlight=False)
            stream(console, settings, board, services, live, options.rate, options.duration)
            if services.worker is not None:
                services.worker.stop()
            print_scored(console, board)
        finally:
            board.close()
    finally:
        for line in services.stop():
            console.print(line, highlight=False)


def _backfill_then_serve(
    console: Console, settings: Settings, options: SimulatedDemo, services: DemoServices
) -> Iterator[Event]:
    """Send the history; with a worker, wait until it has applied the history, then start
    the API and the monitor. Return the live events (simulated time order, not stamped)."""
    present = datetime.now(UTC)
    with console.status("simulating the customers' history…"):
        simulated = split_at_present(options.customers, options.days, options.seed, present)
    start = simulated.config.start
    console.print(
        f"backfill: {len(simulated.history):,} events of {simulated.history_customers:,} "
        f"customers, {start:%Y-%m-%d} to the present ({present:%Y-%m-%d %H:%M} UTC), "
        "sent as fast as Kafka takes them",
        highlight=False,
    )
    started = time.monotonic()
    with console.status("sending the history to Kafka…"):
        delivered, failed = send_history(settings, simulated.history)
    console.print(
        f"backfill: {delivered:,} events delivered, {failed:,} failed in "
        f"{time.monotonic() - started:.1f} s",
        highlight=False,
    )
    worker = services.worker
    if worker is None:
        return simulated.live
    wait_for_worker(console, worker)
    with console.status("backfill: the worker is applying the history…"):
        applied = wait_caught_up(settings, worker)
    console.print(
        f"backfill done: the worker has applied the history ({applied:,} messages) "
        f"{time.monotonic() - started:.1f} s after the sending began",
        highlight=False,
    )
    run_dir = Path(settings.run_dir)
    api = services.api = ApiChild(settings, options.api_port, run_dir / "api.log")
    api.spawn()
    services.reports_dir = Path(settings.reports_dir)
    services.monitor = MonitorChild(
        settings, run_dir / "monitor.log", options.drift_every, options.retrain_on_drift
    )
    services.monitor.spawn()  # its first drift report sees the whole history
    with console.status(f"starting the API (log: {api.log_path})…"):
        api.wait_ready(API_READY_SECONDS)
    console.print(
        f"[bold]dashboard:[/] {api.url}/   [bold]API docs:[/] {api.url}/docs   "
        f"[bold]drift reports:[/] {api.url}/reports/drift (monitor log: "
        f"{services.monitor.log_path})",
        highlight=False,
    )
    return simulated.live


def _check_ports(settings: Settings, api_port: int) -> None:
    """:class:`DemoError` naming the setting when a port the demo needs is taken."""
    wanted = {
        "worker_web_port": settings.worker_web_port,
        "monitor_metrics_port": settings.monitor_metrics_port,
    }
    for name, port in wanted.items():
        if port and port_open("127.0.0.1", port):
            raise DemoError(
                f"port {port} is already in use: set {env_var_name(name)} to a free port"
            )
    if port_open("127.0.0.1", api_port):
        raise DemoError(f"port {api_port} is already in use: pass another with --api-port")
