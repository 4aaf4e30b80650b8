"""The ``churnstream demo`` command: brings the local stack up, runs the demo, and stops
what it started (also on Ctrl-C)."""

from __future__ import annotations

import gc
import signal
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

TRAIN_SEED_OFFSET = 1000  # the starter model trains on other customers than the stream's


def demo(
    duration: float | None = typer.Option(
        None, "--duration", min=1, help="Stop after this many seconds (default: until Ctrl-C)."
    ),
    customers: int = typer.Option(500, min=1, help="Simulated customers."),
    days: int = typer.Option(
        30, min=1, help="Days of history to simulate; the stream ends at the present."
    ),
    rate: float = typer.Option(300.0, min=0, help="Events per second (0: as fast as possible)."),
    seed: int = typer.Option(42, help="Simulation seed."),
    worker: bool = typer.Option(
        True,
        "--worker/--no-worker",
        help="Run a worker that scores the stream (default), or only stream the events "
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
        help="'simulated' (live simulated customers) or 'online-retail' (backfill the real "
        "UCI Online Retail data: import, train, replay, then serve the API and dashboard).",
    ),
    data_file: Path = typer.Option(
        Path("online_retail.parquet"),
        "--data-file",
        help="The Online Retail file (CSV or Parquet) for --data online-retail.",
    ),
    api_port: int = typer.Option(
        8000, min=1, max=65535, help="Port of the API and dashboard for --data online-retail."
    ),
) -> None:
    """Run churnstream locally: Kafka + Redis, a worker scoring live, simulated customers.

    With --data online-retail: backfill a fresh system from the real UCI Online Retail data
    (import, train, replay through Kafka, worker caught up) and serve its API and dashboard.
    """
    # Imported here so that the rest of the CLI does not pay for the demo's dependencies.
    from churnstream.demo.errors import DemoError
    from churnstream.demo.retail import serve_online_retail
    from churnstream.demo.risk_board import RiskBoard, print_scored
    from churnstream.demo.starter_model import ensure_champion
    from churnstream.demo.streaming import stream
    from churnstream.demo.worker_child import WorkerChild, start_worker
    from churnstream.infra import InfraError, LocalStack
    from core.kafka_client import ensure_topics
    from core.settings import get_settings

    if data not in ("simulated", "online-retail"):
        raise typer.BadParameter("expected 'simulated' or 'online-retail'", param_hint="--data")
    console = Console()
    settings = get_settings()
    stack = LocalStack.from_settings(settings)
    already_running = stack.status().all_running
    console.print("[bold]churnstream demo[/] — starting local Kafka and Redis…")
    try:
        stack.up()
    except InfraError as exc:
        console.print(f"[red]could not start the local stack:[/] {exc}")
        raise typer.Exit(1) from None
    local = settings.model_copy(
        update={
            "kafka_bootstrap_servers": stack.bootstrap_servers,
            "redis_url": stack.redis_url,
            "redis_password": None,
            "run_dir": stack.run_dir,
        }
    )
    child: WorkerChild | None = None
    board: RiskBoard | None = None
    failed = False
    try:
        if data == "online-retail":
            serve_online_retail(console, local, data_file, api_port, duration)
            return
        ensure_topics(local)
        if worker:
            ensure_champion(console, local, train_customers, train_days, seed + TRAIN_SEED_OFFSET)
            child = WorkerChild(local, stack.run_dir / "worker.log")
            start_worker(console, child)
        board = RiskBoard(local, child)
        stream(console, local, board, customers, days, rate or None, seed, duration)
        if child is not None:
            child.stop()
        print_scored(console, board)
    except KeyboardInterrupt:  # e.g. while training, or a second Ctrl-C while flushing
        console.print("stopping…")
    except DemoError as exc:
        console.print(Text(str(exc), style="red"))
        failed = True
    finally:
        # Another Ctrl-C must not cut the clean-up short (each step has a time limit).
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if board is not None:
                board.close()
            # Free the Kafka clients now (the producer's sits in a reference cycle): after the
            # broker stops, a live client only logs reconnection errors.
            gc.collect()
            if child is not None and child.started:
                child.stop()
                if child.exited_early is None:
                    console.print(f"worker stopped; its log: {child.log_path}", highlight=False)
                else:
                    console.print(
                        f"[red]the worker had exited (code {child.exited_early});[/] its log: "
                        f"{child.log_path}",
                        highlight=False,
                    )
            if already_running:
                console.print("the local stack was already running before the demo: left up")
            else:
                stack.down()
                console.print("local Kafka and Redis stopped")
        finally:
            signal.signal(signal.SIGINT, previous)
    if failed:
        raise typer.Exit(1)
