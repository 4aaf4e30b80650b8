"""The ``churnstream demo`` command: brings the local stack up, runs the demo, and stops
what it started (also on Ctrl-C)."""

from __future__ import annotations

import gc
import signal
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text


def demo(
    duration: float | None = typer.Option(
        None,
        "--duration",
        min=1,
        help="Stop after this many seconds of live events (default: until Ctrl-C).",
    ),
    customers: int = typer.Option(
        500, min=1, help="Simulated customers (some sign up later, during the live events)."
    ),
    days: int = typer.Option(
        30, min=1, help="Days of simulated history, loaded first (a backfill) up to the present."
    ),
    rate: float = typer.Option(
        300.0, min=0, help="Live events per second after the backfill (0: as fast as possible)."
    ),
    seed: int = typer.Option(42, help="Simulation seed."),
    worker: bool = typer.Option(
        True,
        "--worker/--no-worker",
        help="Run a worker, the API and the monitor (default), or only stream the events "
        "(for your own `churnstream worker`).",
    ),
    train_customers: int = typer.Option(
        600, min=50, help="Simulated customers of the starter model (when there is no champion)."
    ),
    train_days: int = typer.Option(
        60, min=50, help="Simulated days of the starter model (when there is no champion)."
    ),
    data: str = typer.Option(
        "simulated",
        "--data",
        help="'simulated' (simulated customers: history, then live) or 'online-retail' "
        "(backfill the real UCI Online Retail data: import, train, replay, then serve).",
    ),
    data_file: Path = typer.Option(
        Path("online_retail.parquet"),
        "--data-file",
        help="The Online Retail file (CSV or Parquet) for --data online-retail.",
    ),
    api_port: int | None = typer.Option(
        None,
        min=1,
        max=65535,
        help="Port of the API and dashboard (default: CHURN_API_PORT, 8000).",
    ),
    redis_cluster: bool = typer.Option(
        False,
        "--redis-cluster",
        help="Keep the online state on a local Redis Cluster of three masters (ports "
        "CHURN_REDIS_CLUSTER_PORT and the next two) instead of one Redis server.",
    ),
    drift_every: float = typer.Option(
        60.0,
        min=10,
        help="Seconds between drift reports (the first comes when the live events start).",
    ),
    retrain_on_drift: bool = typer.Option(
        False,
        "--retrain-on-drift",
        help="Let the monitor retrain when it finds drift. Off by default: the live events "
        "run much faster than real time, so their features drift by design.",
    ),
) -> None:
    """Run churnstream locally on simulated customers: Kafka + Redis, their history loaded
    first, then live events, scored by a worker, served by the API and its dashboard, and
    watched by the drift monitor.

    With --data online-retail: backfill a fresh system from the real UCI Online Retail data
    (import, train, replay through Kafka, worker caught up) and serve its API and dashboard.
    """
    # Imported here so that the rest of the CLI does not pay for the demo's dependencies.
    from churnstream.demo.errors import DemoError
    from churnstream.demo.retail import serve_online_retail
    from churnstream.demo.services import DemoServices
    from churnstream.demo.simulated import SimulatedDemo, run_simulated
    from churnstream.infra import InfraError, LocalStack
    from core.kafka_client import ensure_topics
    from core.settings import get_settings

    if data not in ("simulated", "online-retail"):
        raise typer.BadParameter("expected 'simulated' or 'online-retail'", param_hint="--data")
    from serving.config import get_api_settings

    port = api_port or get_api_settings().port
    console = Console()
    settings = get_settings()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the demo as Ctrl-C does
    stack = LocalStack.from_settings(settings, with_redis_cluster=redis_cluster)
    already_running = stack.status().all_running
    redis_kind = "a Redis Cluster" if redis_cluster else "Redis"
    console.print(f"[bold]churnstream demo[/] — starting local Kafka and {redis_kind}…")
    try:
        stack.up()
    except InfraError as exc:
        console.print(f"[red]could not start the local stack:[/] {exc}")
        raise typer.Exit(1) from None
    local = settings.model_copy(
        update={
            "kafka_bootstrap_servers": stack.bootstrap_servers,
            "redis_url": stack.redis_cluster_url if redis_cluster else stack.redis_url,
            "redis_password": None,
            "run_dir": stack.run_dir,
        }
    )
    services = DemoServices()
    failed = False
    try:
        if data == "online-retail":
            serve_online_retail(console, local, data_file, port, duration)
            return
        ensure_topics(local)
        options = SimulatedDemo(
            customers=customers, days=days, rate=rate or None, seed=seed, duration=duration,
            worker=worker, train_customers=train_customers, train_days=train_days,
            api_port=port, drift_every=drift_every, retrain_on_drift=retrain_on_drift,
        )  # fmt: skip
        run_simulated(console, local, options, services)
    except KeyboardInterrupt:  # e.g. while training, or a second Ctrl-C while flushing
        console.print("stopping…")
        for line in services.stop():
            console.print(line, highlight=False)
    except DemoError as exc:
        console.print(Text(str(exc), style="red"))
        failed = True
    finally:
        # Another Ctrl-C must not cut the clean-up short (each step has a time limit).
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            # Free the Kafka clients now (the producer's sits in a reference cycle): after the
            # broker stops, a live client only logs reconnection errors.
            gc.collect()
            child = services.worker
            if child is not None and child.started:
                console.print(child.stop_and_say(), highlight=False)
            if already_running:
                console.print("the local stack was already running before the demo: left up")
            else:
                stack.down()
                console.print("local Kafka and Redis stopped")
        finally:
            signal.signal(signal.SIGINT, previous)
    if failed:
        raise typer.Exit(1)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)
